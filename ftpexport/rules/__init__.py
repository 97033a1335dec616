"""Rule files: one YAML file per client, validated with pydantic, and routing (user beats client)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, RecordError
from ..record import Record
from ..secret import SecretRef
from ..template_check import template_issues
from ..transport import ssh_policy
from .load import RULE_SUFFIXES, RuleFileError, RuleSet, load_rule_file, load_rules, read_rule_file
from .model import (
    DEFAULT_METADATA_FIELDS,
    ClientRules,
    Destination,
    Destinations,
    DirTemplate,
    FileTemplate,
    FTPDestination,
    MetadataSpec,
    NotifyEvent,
    NotifySpec,
    PackageSpec,
    SecretReference,
    SFTPDestination,
    UploadSpec,
    UserRules,
)


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


__all__ = [
    "DEFAULT_METADATA_FIELDS",
    "RULE_SUFFIXES",
    "ClientRules",
    "Destination",
    "Destinations",
    "DirTemplate",
    "FTPDestination",
    "FileTemplate",
    "MetadataSpec",
    "NotifyEvent",
    "NotifySpec",
    "PackageSpec",
    "Route",
    "RuleFileError",
    "RuleSet",
    "SFTPDestination",
    "SecretReference",
    "UploadSpec",
    "UserRules",
    "client_routes",
    "load_rule_file",
    "load_rules",
    "read_rule_file",
    "routes_for",
    "rule_warnings",
    "secret_references",
]
