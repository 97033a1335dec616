"""Rule files: one YAML file per client, validated with pydantic, and routing (user beats client)."""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ConfigError, RecordError, RuleError
from ..record import Record
from ..secret import SecretRef
from ..template_check import template_issues
from ..transport import ssh_policy
from .model import (
    _NAME,
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

RULE_SUFFIXES = (".yaml", ".yml")


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
