"""What the operator's checks find: ``check`` in rule files (and the refusal of a rules folder
without any rule file), ``test-connection`` at a client's destinations.

The rules (pydantic models) are imported when needed: importing this module stays cheap for the
commands that only read the ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .ledger import Ledger
    from .probe import ProbeReport
    from .rules import RuleSet
    from .secret import SecretSource


def no_rule_files(directory: Path) -> str:
    return f"no rule files (*.yaml) in {directory}"


def some_rules(ruleset: RuleSet) -> RuleSet:
    """``ruleset``, refused when its folder holds no rule file at all (the wrong folder, most likely)."""
    if not ruleset.clients and not ruleset.errors:
        hint = "pass the folder that holds the <client_id>.yaml files"
        raise ConfigError(no_rule_files(ruleset.directory), hint=hint)
    return ruleset


def rules_to_check(path: Path) -> RuleSet:
    """The rule files ``check`` validates: those of a folder, or one file."""
    from .rules import RULE_SUFFIXES, ClientRules, RuleSet, load_rules, read_rule_file

    if not path.exists():
        raise ConfigError(f"{path} does not exist", hint="pass a rules folder or one rule file")
    if not path.is_file():
        return some_rules(load_rules(path))
    if path.suffix not in RULE_SUFFIXES:
        raise ConfigError(f"{path} is not a rule file: run and watch read only *.yaml and *.yml files",
                          hint=f"rename it to {path.stem}.yaml")  # fmt: skip
    ruleset = RuleSet(directory=path.parent)
    result = read_rule_file(path)  # the client_id must still match the file name
    if isinstance(result, ClientRules):
        ruleset.clients[result.client_id] = result
        ruleset.sources[result.client_id] = path
    else:
        ruleset.errors[path.stem] = result
    return ruleset


def check_rules(ruleset: RuleSet, store: SecretSource | None) -> dict[str, dict[str, Any]]:
    """Per rule file: ``ok``, its ``errors`` (``field``, ``reason``) and ``warnings``, among them the
    secret references that do not resolve (with ``store``; their values are never shown) and a webhook
    secret that is not a signing key."""
    from .rules import rule_warnings, secret_references
    from .webhooks import signing_key

    files: dict[str, dict[str, Any]] = {}
    for client_id, rules in ruleset.clients.items():
        warnings = rule_warnings(rules)
        for where, ref in secret_references(rules):
            webhook = rules.notify is not None and ref is rules.notify.secret
            try:
                value = ref.resolve(where=where, store=store)  # values are not shown, only whether they resolve
                if webhook:
                    signing_key(value, where)  # and whether it is a whsec_ secret
            except ConfigError as exc:
                needed = "until it is fixed, each webhook notification of this client fails" if webhook else (
                    "needed when ftpexport connects")  # fmt: skip
                warnings.append(f"{exc} ({needed})")
        files[ruleset.source(client_id)] = {"ok": True, "errors": [], "warnings": warnings}
    for errors in ruleset.errors.values():
        for error in errors:
            entry = files.setdefault(error.file, {"ok": False, "errors": [], "warnings": []})
            entry["errors"].append({"field": error.field, "reason": error.reason})
    return files


#: sessions the probe opens at once at most, above a destination's max_connections
PROBE_SESSIONS_ABOVE = 1
#: and at most this many in all
PROBE_SESSIONS_MAX = 16


def probe_destinations(
    ruleset: RuleSet,
    client: str,
    user_id: str | None,
    only: str | None,
    store: SecretSource | None,
    ledger: Ledger | None = None,
    kept_in: str | None = None,
) -> list[ProbeReport]:
    """Probe (connect, write, rename, delete, learn what the server does) each destination of
    ``client`` (or of its user ``user_id``), or only the one named ``only``; ``ConfigError`` when there
    is no such destination. What was learned replaces what ``ledger`` (named ``kept_in``) held."""
    from .plan import endpoint_for
    from .probe import probe
    from .rules import client_routes

    routes = client_routes(ruleset, client, user_id)
    if only is not None:
        routes = [r for r in routes if r.destination.name == only]
        if not routes:
            raise ConfigError(f"{ruleset.source(client)}: no destination named {only!r}")
    reports = []
    for route in routes:
        destination = route.destination
        url = f"{destination.scheme}://{destination.username}@{destination.host}:{destination.port}"
        sessions = min(destination.max_connections + PROBE_SESSIONS_ABOVE, PROBE_SESSIONS_MAX)
        report = probe(endpoint_for(route, ruleset.source(client), store), destination.base_path, url=url,
                       sessions=sessions)  # fmt: skip
        if report.capabilities is not None and ledger is not None:
            ledger.save_capabilities(route.key, report.capabilities.as_dict())
            report.kept = f"kept in the ledger {kept_in} for {route.key}"
        elif report.capabilities is not None:
            report.kept = f"not kept: no ledger at {kept_in} yet (run an export first, or pass --state)"
        reports.append(report)
    return reports
