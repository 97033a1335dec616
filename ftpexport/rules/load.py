"""Reading rule files: YAML (duplicate keys refused), validated against the models, every problem
with its file and field; a folder of them as a ``RuleSet``."""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ConfigError, RuleError
from .model import _NAME, ClientRules
from .templates import template_issues

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
        from .hints import unknown_key_reason

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
