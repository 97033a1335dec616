"""Rule files: one YAML file per client, validated with pydantic, and routing (user beats client)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import ConfigError, RecordError, RuleError
from ..naming import NameTemplate
from ..netguard import address_refusal, ip_literal, private_hint
from ..record import Record
from ..secret import SecretRef, parse_ref
from ..template_check import template_issues
from ..transport import ssh_policy

RULE_SUFFIXES = (".yaml", ".yml")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_DEFAULT_PORTS = {"ftp": 21, "ftps": 21, "ftps+implicit": 990, "sftp": 22}


def _template(kind: Literal["file", "dir"]) -> Any:
    def validate(value: Any) -> NameTemplate:
        if isinstance(value, NameTemplate):
            return value
        if not isinstance(value, str):
            raise ValueError("must be a template string")
        return NameTemplate(value, kind)

    return Annotated[NameTemplate, PlainValidator(validate), PlainSerializer(str)]


def _secret_ref(value: Any) -> SecretRef:
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a reference like ${ACME_DMS_PASSWORD}")
    return parse_ref(value)


FileTemplate = _template("file")
DirTemplate = _template("dir")
SecretReference = Annotated[SecretRef, PlainValidator(_secret_ref), PlainSerializer(str)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _relative_to_rule_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """Paths in a rule file are relative to the rule file's folder."""
    if value is None or value.is_absolute():
        return value
    base = (info.context or {}).get("base_dir")
    return Path(base) / value if base else value


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

    _ca_relative = field_validator("ca_file")(_relative_to_rule_file)

    @model_validator(mode="after")
    def _plain_ftp_needs_opt_in(self) -> FTPDestination:
        if self.scheme == "ftp" and not self.allow_plain_ftp:
            raise ValueError(
                "plain ftp:// sends the password and the photos unencrypted; use ftps:// if the server "
                "supports TLS, or set allow_plain_ftp: true on this destination to accept the risk"
            )
        if self.scheme == "ftp" and self.ca_file is not None:
            raise ValueError("ca_file is for ftps:// URLs; plain ftp:// has no TLS")
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


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys (a second ``password:`` silently winning is a trap)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        previous = loc[i - 1] if i else None
        if isinstance(item, str) and item in ("ftp", "sftp") and isinstance(previous, int):
            continue  # the union tag pydantic adds after a destination's index
        parts.append(f"[{item}]" if isinstance(item, int) else ("." if parts else "") + item)
    return "".join(parts)


def _field(error: Any) -> str | None:
    field = _format_loc(error["loc"])
    if error["type"] == "unsupported_url_scheme":
        field += ".url"  # the tagged union reports the scheme at the destination itself
    return field or None


def _reason(error: Any, document: Any) -> str:
    if error["type"] == "extra_forbidden":
        from ..rule_hints import unknown_key_reason

        return unknown_key_reason(ClientRules, tuple(error["loc"]), document)
    return str(error["msg"]).removeprefix("Value error, ")


def load_rule_file(path: Path) -> ClientRules:
    """Load and validate one rule file; raises ``ConfigError`` holding every problem found."""
    errors = read_rule_file(path)
    if isinstance(errors, ClientRules):
        return errors
    raise RuleFileError(errors)


class RuleFileError(ConfigError):
    """All the problems of one rule file."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def read_rule_file(path: Path, *, allow_unpinned_host_keys: bool = False) -> ClientRules | list[RuleError]:
    """The validated rules of ``path``, or the list of its errors.

    ``allow_unpinned_host_keys`` accepts SFTP destinations without host_key or known_hosts; only
    ``test-connection`` uses it, to show the server's key (the connection is still refused).
    """
    file = str(path)
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except (OSError, UnicodeDecodeError) as exc:
        return [RuleError(file, None, f"cannot read the file: {exc}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return [RuleError(file, None, f"not valid YAML: {where}{problem}")]
    if document is None:
        return [RuleError(file, None, "the file is empty: it must hold a mapping with client_id, destinations, ...")]
    if not isinstance(document, dict):
        return [RuleError(file, None, "the file must hold a mapping with client_id, destinations, ...")]
    try:
        context = {"base_dir": path.parent, "allow_unpinned_host_keys": allow_unpinned_host_keys}
        rules = ClientRules.model_validate(document, context=context)
    except ValidationError as exc:
        return [
            RuleError(file, _field(error), _reason(error, document))
            for error in exc.errors(include_url=False, include_input=False)
        ]
    if path.stem != rules.client_id:
        # a copied rule file: which of the two is right, only the user knows
        fixes = f"rename the file to {rules.client_id}{path.suffix}"
        if re.fullmatch(_NAME, path.stem):
            fixes += f", or set client_id: {path.stem}"
        reason = f"{rules.client_id!r} does not match the file name {path.name}: {fixes}"
        return [RuleError(file, "client_id", reason)]
    # every name template, tried on a sample record: one that cannot work for any record is an error
    template_errors = [RuleError(file, i.field, i.reason) for i in template_issues(rules) if i.error]
    return template_errors or rules


@dataclass
class RuleSet:
    """Every rule file of a folder: the valid ones by client id, and the errors of the others."""

    directory: Path
    clients: dict[str, ClientRules] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, list[RuleError]] = field(default_factory=dict)
    #: sha256 over the names and bytes of the rule files read; "" when not loaded from files
    fingerprint: str = ""

    def source(self, client_id: str) -> str:
        """The rule file a client's rules came from, for messages."""
        return str(self.sources.get(client_id, self.directory / f"{client_id}.yaml"))


def load_rules(directory: Path, *, allow_unpinned_host_keys: bool = False) -> RuleSet:
    """Load every ``*.yaml`` of ``directory``; broken files are collected in ``errors``."""
    if directory.is_file():
        raise ConfigError(f"{directory} is a file, not the rules folder", hint=f"pass --rules {directory.parent}")
    if not directory.is_dir():
        raise ConfigError(f"{directory}: the rules folder does not exist", hint="pass --rules DIR")
    ruleset = RuleSet(directory=directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.suffix in RULE_SUFFIXES and p.is_file()):
        with contextlib.suppress(OSError):  # an unreadable file is reported by read_rule_file
            digest.update(f"{path.name}\0{path.stat().st_size}\0".encode("utf-8", "surrogateescape"))
            digest.update(path.read_bytes())
        result = read_rule_file(path, allow_unpinned_host_keys=allow_unpinned_host_keys)
        if isinstance(result, ClientRules):
            if result.client_id in ruleset.clients:
                first = ruleset.sources[result.client_id].name
                ruleset.errors[path.stem] = [
                    RuleError(str(path), "client_id", f"{result.client_id!r} already has a rule file: {first}")
                ]
                continue
            ruleset.clients[result.client_id] = result
            ruleset.sources[result.client_id] = path
        else:
            ruleset.errors[path.stem] = result
    ruleset.fingerprint = digest.hexdigest()
    return ruleset


def rule_warnings(rules: ClientRules) -> list[str]:
    """Risks a valid rule file accepts on purpose, worth telling the operator about."""
    destinations = [(None, d) for d in rules.destinations]
    destinations += [(user_id, d) for user_id, user in rules.users.items() for d in user.destinations]
    warnings = []
    for user_id, d in destinations:
        name = f"destination {d.name}{f' (user {user_id})' if user_id else ''}"
        if d.scheme == "ftp":
            warnings.append(f"{name} uses plain FTP: password and photos cross the network unencrypted")
        files = [d.ca_file] if isinstance(d, FTPDestination) else [d.key_file, d.known_hosts]
        warnings += [f"{name}: file {path} does not exist (yet)" for path in files if path and not path.exists()]
        if isinstance(d, SFTPDestination):
            warnings += [f"{name}: {ssh_policy.legacy_warning(a)}" for a in d.ssh_legacy_algorithms]
    warnings += [f"{i.field}: {i.reason}" for i in template_issues(rules) if not i.error]
    if rules.notify is not None:
        if rules.notify.allow_private:
            warnings.append("notify: allow_private is set: the webhook may go to private and loopback addresses")
        ca_file = rules.notify.ca_file
        if ca_file is not None and not ca_file.exists():
            warnings.append(f"notify: file {ca_file} does not exist (yet)")
    return warnings


@dataclass(frozen=True)
class Route:
    """One destination that one record goes to."""

    client: ClientRules
    destination: FTPDestination | SFTPDestination
    #: the user whose own destination this is; None for a client-level destination
    user_id: str | None = None

    @property
    def key(self) -> str:
        """A stable name for the destination, e.g. ``acme-motors/dms`` or ``acme-motors/users/u-42/own``."""
        if self.user_id is None:
            return f"{self.client.client_id}/{self.destination.name}"
        return f"{self.client.client_id}/users/{self.user_id}/{self.destination.name}"


def routes_for(ruleset: RuleSet, record: Record) -> list[Route]:
    """The destinations of ``record``: the user's own if the user has some, else the client's."""
    client_id = record.client_id
    rules = ruleset.clients.get(client_id)
    if rules is None:
        if client_id in ruleset.errors:
            raise RecordError(
                str(record.folder),
                f"the rule file of client {client_id!r} has errors",
                hint=f"run: ftpexport check {ruleset.directory}",
            )
        raise RecordError(
            str(record.folder),
            f"no rule file for client {client_id!r} in {ruleset.directory}",
            hint=f"add {ruleset.directory / (client_id + '.yaml')}",
        )
    user_id = record.user_id
    if user_id is not None and user_id in rules.users:
        return [Route(rules, d, user_id) for d in rules.users[user_id].destinations]
    if not rules.destinations:
        raise RecordError(
            str(record.folder),
            f"client {client_id!r} has no client-level destination and user {user_id!r} has none of their own",
            hint=f"add destinations to {ruleset.source(client_id)}",
        )
    return [Route(rules, d) for d in rules.destinations]


def client_routes(ruleset: RuleSet, client_id: str, user_id: str | None = None) -> list[Route]:
    """The destinations of a client, or of one of its users; raises ``ConfigError`` naming what is missing."""
    rules = ruleset.clients.get(client_id)
    if rules is None:
        if client_id in ruleset.errors:
            raise ConfigError(
                f"the rule file of client {client_id!r} has errors", hint=f"run: ftpexport check {ruleset.directory}"
            )
        raise ConfigError(f"no rule file for client {client_id!r} in {ruleset.directory}")
    if user_id is None:
        if not rules.destinations:
            raise ConfigError(f"{ruleset.source(client_id)}: client {client_id!r} has no client-level destination")
        return [Route(rules, d) for d in rules.destinations]
    if user_id not in rules.users:
        raise ConfigError(
            f"{ruleset.source(client_id)}: user {user_id!r} has no destination of their own",
            hint="their records go to the client's destinations; test those without --user",
        )
    return [Route(rules, d, user_id) for d in rules.users[user_id].destinations]


def secret_references(rules: ClientRules) -> list[tuple[str, SecretRef]]:
    """Every secret reference of a client's rules, with where it is (``destination dms: password``)."""
    found = []
    destinations = [(None, d) for d in rules.destinations]
    destinations += [(user_id, d) for user_id, user in rules.users.items() for d in user.destinations]
    for user_id, d in destinations:
        name = f"destination {d.name}{f' (user {user_id})' if user_id else ''}"
        for field_name in ("password", "private_key", "key_passphrase"):
            ref = getattr(d, field_name, None)
            if ref is not None:
                found.append((f"{name}: {field_name}", ref))
    if rules.notify is not None:
        found.append(("notify: secret", rules.notify.secret))
    return found
