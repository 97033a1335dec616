"""The rule file's models (pydantic): destinations, package, upload, notify, users, a client's rules.

Every field is validated when a rule file loads (``load.py``); paths are relative to the rule
file's folder; secrets are references (``${ACME_PASSWORD}``, ``${secret:NAME}``), never values.
The field types they are built of (templates, secret references, the strict base model) are in
``fields.py``.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from ..netguard import address_refusal, ip_literal, private_hint
from ..transport import ssh_policy
from .fields import DirTemplate, FileTemplate, SecretReference, _Model, _relative_to_rule_file

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_DEFAULT_PORTS = {"ftp": 21, "ftps": 21, "ftps+implicit": 990, "sftp": 22}


class _DestinationBase(_Model):
    name: str = Field(pattern=_NAME)
    url: str
    password: SecretReference | None = None
    remote_dir: DirTemplate | None = None  # type: ignore[valid-type]
    #: ``portable``: names a Windows server can store too; ``posix``: the server is POSIX-only
    names: Literal["portable", "posix"] = "portable"
    max_connections: int = Field(default=2, ge=1, le=64)
    timeout: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _url_has_no_password(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.password is not None:
            raise ValueError(
                "the URL holds a password: remove it and use the password field with a reference "
                "like ${ACME_DMS_PASSWORD}"
            )
        if not parts.hostname:
            raise ValueError("the URL has no host name")
        if not parts.username:
            raise ValueError("the URL has no user name: write it as scheme://user@host/path")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"the URL has an invalid port: {exc}") from exc
        if parts.query or parts.fragment:
            raise ValueError("the URL cannot have a query (?...) or fragment (#...)")
        decoded = unquote(parts.path) + unquote(parts.username)
        if any(ord(c) < 32 or ord(c) == 127 for c in decoded):
            raise ValueError("the URL's user or path holds control characters (such as %0d%0a)")
        return value

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower()

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or _DEFAULT_PORTS[self.scheme]

    @property
    def username(self) -> str:
        return unquote(urlsplit(self.url).username or "")

    @property
    def base_path(self) -> str:
        """The remote folder the URL names: for FTP relative to the login folder (like curl);
        for SFTP absolute, or relative to the home folder when it starts with ``/~``."""
        path = unquote(urlsplit(self.url).path)
        if self.scheme == "sftp":
            if path in ("/~", "/~/") or path.startswith("/~/"):
                return path[3:].strip("/")
            return path.rstrip("/") or ("/" if path else "")
        if path.startswith("//"):
            return "/" + path.strip("/")
        return path.strip("/")


class FTPDestination(_DestinationBase):
    """An FTP, explicit FTPS (``ftps://``) or implicit FTPS (``ftps+implicit://``) server."""

    allow_plain_ftp: bool = False
    ca_file: Path | None = None
    passive: bool = True
    #: a client certificate for servers that require one (mutual TLS): the PEM certificate, and its
    #: private key as a file (``client_key_file``) or from the secrets store (``client_key:
    #: ${secret:acme-ftps-key}``), with ``client_key_passphrase`` when the key is encrypted
    client_cert: Path | None = None
    client_key_file: Path | None = None
    client_key: SecretReference | None = None
    client_key_passphrase: SecretReference | None = None

    _ca_relative = field_validator("ca_file", "client_cert", "client_key_file")(_relative_to_rule_file)

    @model_validator(mode="after")
    def _plain_ftp_needs_opt_in(self) -> FTPDestination:
        if self.scheme == "ftp" and not self.allow_plain_ftp:
            raise ValueError(
                "plain ftp:// sends the password and the photos unencrypted; use ftps:// if the server "
                "supports TLS, or set allow_plain_ftp: true on this destination to accept the risk"
            )
        for name in ("ca_file", "client_cert", "client_key_file", "client_key", "client_key_passphrase"):
            if self.scheme == "ftp" and getattr(self, name) is not None:
                raise ValueError(f"{name} is for ftps:// URLs; plain ftp:// has no TLS")
        if self.client_key_file is not None and self.client_key is not None:
            raise ValueError("give client_key_file or client_key, not both")
        keyed = self.client_key_file or self.client_key or self.client_key_passphrase
        if self.client_cert is None and keyed is not None:
            raise ValueError("a client key needs its certificate: add client_cert (the PEM certificate file)")
        if self.password is None:
            raise ValueError("FTP destinations need a password reference, e.g. password: ${ACME_FTP_PASSWORD}")
        return self


_HOST_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|ssh-dss)\s+([A-Za-z0-9+/=]+)(\s.*)?$")


def _check_host_key(line: str) -> str:
    match = _HOST_KEY.match(line.strip())
    if not match:
        raise ValueError(
            "host_key must be an OpenSSH public key line such as 'ssh-ed25519 AAAAC3Nz...' (as printed by ssh-keyscan)"
        )
    try:
        base64.b64decode(match.group(3), validate=True)
    except binascii.Error as exc:
        raise ValueError("host_key's key data is not valid base64") from exc
    return line.strip()


class SFTPDestination(_DestinationBase):
    """An SFTP server; its host key is always verified."""

    host_key: list[str] | None = None
    known_hosts: Path | None = None
    key_file: Path | None = None
    #: the private key itself, from the secrets store: ``private_key: ${secret:acme-sftp-key}``
    private_key: SecretReference | None = None
    key_passphrase: SecretReference | None = None
    #: old SSH algorithms this server needs, offered after the modern ones: ``[aes128-cbc, hmac-sha1]``
    ssh_legacy_algorithms: list[str] = []

    _paths_relative = field_validator("known_hosts", "key_file")(_relative_to_rule_file)

    @field_validator("ssh_legacy_algorithms")
    @classmethod
    def _known_legacy_algorithms(cls, value: list[str]) -> list[str]:
        return ssh_policy.check_legacy_names(value)

    @field_validator("host_key", mode="before")
    @classmethod
    def _one_or_many_keys(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("host_key")
    @classmethod
    def _valid_keys(cls, value: list[str] | None) -> list[str] | None:
        return [_check_host_key(line) for line in value] if value is not None else None

    @model_validator(mode="after")
    def _verified_and_authenticated(self, info: ValidationInfo) -> SFTPDestination:
        # test-connection loads rules with unpinned keys allowed: it connects only to show the key
        probing = (info.context or {}).get("allow_unpinned_host_keys", False)
        if not self.host_key and self.known_hosts is None and not probing:
            raise ValueError(
                "SFTP server keys are always verified: pin the server key with host_key: 'ssh-ed25519 "
                "AAAA...' (ssh-keyscan -p PORT HOST shows it; confirm it with the server's operator) or "
                "name a known_hosts file"
            )
        if self.password is None and self.key_file is None and self.private_key is None:
            raise ValueError("SFTP destinations need a password reference, a key_file or a private_key reference")
        if self.key_file is not None and self.private_key is not None:
            raise ValueError("give key_file or private_key, not both")
        return self


def _destination_kind(value: Any) -> str | None:
    url = value.get("url") if isinstance(value, dict) else getattr(value, "url", None)
    if not isinstance(url, str):
        # a missing or non-text url: the FTP model reports it as "url: Field required" and the like
        return "ftp" if isinstance(value, dict) else None
    if "://" not in url:
        return None
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sftp":
        return "sftp"
    if scheme in ("ftp", "ftps", "ftps+implicit"):
        return "ftp"
    return None


Destination = Annotated[
    Annotated[FTPDestination, Tag("ftp")] | Annotated[SFTPDestination, Tag("sftp")],
    Discriminator(
        _destination_kind,
        custom_error_type="unsupported_url_scheme",
        custom_error_message="url must start with ftp://, ftps://, ftps+implicit:// or sftp://",
    ),
]


def _unique_names(destinations: list[Any]) -> list[Any]:
    """Refuse two destinations of one list with the same name (the name keys the ledger)."""
    seen: dict[str, int] = {}
    for index, destination in enumerate(destinations):
        if destination.name in seen:
            raise ValueError(
                f"the name {destination.name!r} is used twice, by [{seen[destination.name]}] and [{index}]"
            )
        seen[destination.name] = index
    return destinations


#: a list of destinations whose names are unique (the name keys the ledger)
Destinations = Annotated[list[Destination], AfterValidator(_unique_names)]

DEFAULT_METADATA_FIELDS = ("id", "vin", "stock_number", "make", "model", "year", "user.name", "processed_at")


class MetadataSpec(_Model):
    """The JSON file delivered with the images."""

    name: FileTemplate = "{{ vin }}.json"  # type: ignore[valid-type]
    fields: list[str] = Field(default_factory=lambda: list(DEFAULT_METADATA_FIELDS), min_length=1)

    @field_validator("fields")
    @classmethod
    def _field_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not _FIELD_PATH.fullmatch(path):
                raise ValueError(f"{path!r} is not a field path like vin or user.name")
        for path in value:
            if value.count(path) > 1:
                raise ValueError(f"{path!r} is listed twice")
            # "vin" and "vin.x" (or "user" and "user.name") cannot both be written to one JSON document
            parents = [p for p in value if path.startswith(p + ".")]
            if parents:
                raise ValueError(f"{path!r} is inside {parents[0]!r}, which is listed too: keep one of them")
        return value


class PackageSpec(_Model):
    """How a record becomes files: one zip archive, or loose files."""

    format: Literal["zip", "files"] = "zip"
    archive_name: FileTemplate = "{{ vin }}.zip"  # type: ignore[valid-type]
    image_name: FileTemplate = "{{ vin | lower }}_{{ '%02d' | format(n) }}.{{ ext }}"  # type: ignore[valid-type]
    metadata: MetadataSpec | None = Field(default_factory=MetadataSpec)
    done_marker: FileTemplate | None = None  # type: ignore[valid-type]


class UploadSpec(_Model):
    """How files are written on the server."""

    atomic: bool = True
    if_exists: Literal["overwrite", "skip", "fail"] = "overwrite"
    #: extra attempts after a transient failure before a delivery is parked as failed;
    #: None: the global setting (``--retries``)
    retries: int | None = Field(default=None, ge=0, le=1000)


#: the events a webhook can receive
NotifyEvent = Literal["vehicle.delivered", "vehicle.failed"]


class NotifySpec(_Model):
    """A client's webhook: a signed JSON POST when a vehicle is delivered or finally fails."""

    url: str
    #: the Standard Webhooks signing secret (``whsec_...``), a reference: ``${secret:acme-webhook}``
    secret: SecretReference
    events: list[NotifyEvent] = Field(default_factory=lambda: ["vehicle.delivered", "vehicle.failed"], min_length=1)
    #: accept private, loopback and link-local addresses (refused by default: SSRF)
    allow_private: bool = False
    #: trust this CA for the endpoint's certificate (default: the system CAs)
    ca_file: Path | None = None
    #: seconds for connecting and for each read of the answer
    timeout: float = Field(default=10.0, gt=0, le=120)

    _ca_relative = field_validator("ca_file")(_relative_to_rule_file)

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme.lower() != "https":
            raise ValueError("must be an https:// URL: webhooks carry vehicle data and are never sent in clear")
        if parts.username is not None or parts.password is not None:
            raise ValueError("the URL holds a user name or password: the webhook is authenticated by its signature")
        if not parts.hostname:
            raise ValueError("the URL has no host name")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"the URL has an invalid port: {exc}") from exc
        if parts.fragment:
            raise ValueError("the URL cannot have a fragment (#...)")
        if any(ord(c) < 33 or ord(c) == 127 for c in value):
            raise ValueError("the URL holds spaces or control characters")
        return value

    @field_validator("events")
    @classmethod
    def _events_once(cls, value: list[str]) -> list[str]:
        for event in value:
            if value.count(event) > 1:
                raise ValueError(f"{event!r} is listed twice")
        return value

    @model_validator(mode="after")
    def _no_private_literal(self) -> NotifySpec:
        address = ip_literal(self.host)
        reason = address_refusal(address) if address is not None else None
        if reason is not None and not self.allow_private:
            raise ValueError(
                f"url: {self.host} is a {reason} address: webhooks to private, loopback, link-local and "
                f"reserved addresses are refused (they could reach internal services); {private_hint()}"
            )
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 443


class UserRules(_Model):
    """A user's own destinations: they replace the client's for that user's vehicles."""

    destinations: Destinations = Field(min_length=1)


class ClientRules(_Model):
    """One client's rule file."""

    client_id: str = Field(pattern=_NAME)
    destinations: Destinations = Field(default_factory=list)
    package: PackageSpec = Field(default_factory=PackageSpec)
    upload: UploadSpec = Field(default_factory=UploadSpec)
    users: dict[str, UserRules] = Field(default_factory=dict)
    #: a webhook told about every delivered or failed vehicle of the client
    notify: NotifySpec | None = None

    @model_validator(mode="after")
    def _someone_served(self) -> ClientRules:
        if not self.destinations and not self.users:
            raise ValueError("no destinations: give at least one client-level or user-level destination")
        return self
