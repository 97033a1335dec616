"""What a server's folder holds, and what it should hold once a record is delivered."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ftpexport.plan import make_package, plan_record
from ftpexport.record import load_record
from ftpexport.rules import RuleSet, load_rules, routes_for


def remote_files(root: Path) -> set[str]:
    """Every file under a server's root, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def part_files(root: Path) -> set[str]:
    """The temporary ``.NAME.part`` files under a server's root, relative to it."""
    return {name for name in remote_files(root) if Path(name).name.endswith(".part")}


def files_under(root: Path) -> dict[str, int]:
    """``{relative path: size}`` of every file under ``root`` (hidden temporary files included)."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def expected_files(record: Path, rules: Path | RuleSet) -> dict[str, bytes]:
    """The files the exporter must deliver for ``record`` (rules: their folder, or loaded), rebuilt
    locally: ``{name: bytes}`` (the zip is deterministic), the done marker included."""
    ruleset = rules if isinstance(rules, RuleSet) else load_rules(rules)
    loaded = load_record(record)
    plan = plan_record(loaded, ruleset, routes_for(ruleset, loaded))
    with tempfile.TemporaryDirectory(prefix="ftpexport-expected-") as tmp:
        package = make_package(plan, Path(tmp))
        artifacts = [*package.files, *([package.done_marker] if package.done_marker else [])]
        files = {}
        for artifact in artifacts:
            with artifact.open() as stream:
                files[artifact.name] = stream.read()
    return files
