"""The architecture of STYLE.md, checked: no import cycles, dependencies that point one way.

    __main__ -> cli/ -> daemon, display, progress, demo, folders, watch        the program
             -> pipeline -> intake, attempt -> publish, connections -> plan    the exporter
                webhooks/, probe, checkup                                       beside it
             -> rules/, naming, package, spool, ledger/, transport/, ...       the parts
             -> record, events, dispatch, secret, private, ...                 foundations
             -> errors

Fences inside the layers: a transport knows only transports and errors; only cli/ speaks click and
only ledger/ speaks SQL; callers reach the ledger through its interface (ftpexport.ledger), never a
backend's module; the crash journal is written by publish alone; the watcher watches and nothing
else. Imports are read from the source with ``ast``; each module is also imported alone in a fresh
interpreter, which fails on a cycle that only bites when a module is the first one imported.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from paths import ROOT

PACKAGE = ROOT / "ftpexport"


@dataclass(frozen=True)
class Import:
    target: str  # a module of ours ("ftpexport.record") or a third-party top-level name ("click")
    lazy: bool  # inside a function: runs when called, not when the module is imported
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    if not base.startswith("ftpexport"):
        return [base.split(".")[0]]
    # "from . import x" imports the submodule x when there is one
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend(
                    Import(
                        alias.name.split(".")[0] if not alias.name.startswith("ftpexport") else alias.name,
                        inner,
                        child.lineno,
                    )
                    for alias in child.names
                )
            elif isinstance(child, ast.ImportFrom):
                found.extend(Import(target, inner, child.lineno) for target in _resolve(module, path, child))
            visit(child, inner)

    visit(tree, False)
    return found


def ours(module: str, *, lazy: bool = True) -> set[str]:
    """The modules of ours that ``module`` imports (without its lazy imports if ``lazy`` is False)."""
    return {i.target for i in imports_of(module) if i.target.startswith("ftpexport") and (lazy or not i.lazy)} - {
        module
    }


def test_the_package_is_where_we_think() -> None:
    assert {"ftpexport.errors", "ftpexport.record", "ftpexport.cli", "ftpexport.transport.base"} <= set(MODULES)
    # the import reader understands every form used in the package
    assert ours("ftpexport.record") == {"ftpexport.errors", "ftpexport.recordfiles"}
    assert "ftpexport.pipeline" in ours("ftpexport.cli.export")
    assert "ftpexport.transport.base" in ours("ftpexport.transport.ftp")


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    running = {
        module: subprocess.Popen(
            [sys.executable, "-c", f"import {module}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for module in MODULES
        if not module.endswith("__main__")  # importing it runs the command line
    }
    failures = {}
    for module, process in running.items():
        _, stderr = process.communicate(timeout=60)
        if process.returncode != 0:
            failures[module] = stderr.strip().splitlines()[-1:]
    assert failures == {}


def test_module_level_imports_have_no_cycle() -> None:
    graph = {module: ours(module, lazy=False) for module in MODULES}
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def walk(module: str, stack: list[str]) -> None:
        state[module] = "active"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "active":
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                walk(target, [*stack, target])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            walk(module, [module])
    assert cycles == []


def test_errors_imports_nothing_of_ours() -> None:
    assert ours("ftpexport.errors") == set()


def test_record_imports_only_errors_and_its_file_checks() -> None:
    assert ours("ftpexport.record") == {"ftpexport.errors", "ftpexport.recordfiles"}
    assert ours("ftpexport.recordfiles") == {"ftpexport.errors"}


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("ftpexport.transport")])
def test_a_transport_knows_nothing_of_rules_records_or_the_ledger(module: str) -> None:
    # endpoints in, bytes out: what to send and where it is recorded is the exporter's business
    assert {m for m in ours(module) if not m.startswith("ftpexport.transport")} <= {"ftpexport.errors"}


def test_cli_is_the_only_module_that_imports_click() -> None:
    users = sorted(module for module in MODULES if any(i.target == "click" for i in imports_of(module)))

    # the cli package: its groups of commands and the click classes, types and options they share
    assert users == sorted(m for m in MODULES if m == "ftpexport.cli" or m.startswith("ftpexport.cli."))
    assert "ftpexport.cli" in users


def test_only_the_ledger_package_speaks_sql() -> None:
    users = sorted(module for module in MODULES if any(i.target == "sqlite3" for i in imports_of(module)))

    # a second backend (PostgreSQL) goes beside sqlite in ftpexport/ledger/, callers do not change
    assert users and all(module.startswith("ftpexport.ledger.") for module in users), users


# the direction of STYLE.md as layers: a module may import its own layer or a lower one
LAYERS: dict[str, int] = {
    # 0: what everything may use
    "ftpexport": 0,
    "ftpexport.errors": 0,
    # 1: foundations: a record, secrets, files of our own, what the exporter reports, scheduling
    "ftpexport.record": 1,
    "ftpexport.recordfiles": 1,
    "ftpexport.secret": 1,
    "ftpexport.private": 1,
    "ftpexport.logs": 1,
    "ftpexport.lock": 1,
    "ftpexport.sandbox": 1,
    "ftpexport.sizes": 1,
    "ftpexport.httpd": 1,
    "ftpexport.netguard": 1,
    "ftpexport.events": 1,
    "ftpexport.dispatch": 1,
    "ftpexport.backoff": 1,  # the dispatcher's and the webhooks' retry delays
    # 2: the parts, each knowing nothing of the others' users
    "ftpexport.vault": 2,
    "ftpexport.naming": 2,
    "ftpexport.rules": 2,
    "ftpexport.package": 2,
    "ftpexport.zipstream": 2,  # the zip read from the images while it is sent (package uses it)
    "ftpexport.spool": 2,
    "ftpexport.ledger": 2,
    "ftpexport.ledger.postgres": 2,  # the PostgreSQL backend, a package of its own
    "ftpexport.transport": 2,
    "ftpexport.refusals": 2,
    "ftpexport.health": 2,
    "ftpexport.metrics": 2,
    # 3-6: the exporter, bottom up: a step never imports the one that drives it
    "ftpexport.plan": 3,
    "ftpexport.probe": 3,
    "ftpexport.webhooks": 3,
    "ftpexport.slots": 3,
    "ftpexport.capabilities": 3,
    "ftpexport.transcripts": 3,
    "ftpexport.cluster": 3,
    "ftpexport.publish": 4,
    "ftpexport.connections": 4,
    "ftpexport.checkup": 4,
    "ftpexport.intake": 5,
    "ftpexport.attempt": 5,
    "ftpexport.claims": 5,
    "ftpexport.pipeline": 6,
    # 7: the program: the inbox watcher, the daemon, what people see
    "ftpexport.watch": 7,
    "ftpexport.folders": 7,
    "ftpexport.display": 7,
    "ftpexport.progress": 7,
    "ftpexport.progress_live": 7,
    "ftpexport.demo": 7,
    "ftpexport.daemon": 7,
    # 8: parsing and printing
    "ftpexport.cli": 8,
    "ftpexport.__main__": 9,
}


def layer(module: str) -> int:
    while module not in LAYERS:
        module = module.rpartition(".")[0]
    return LAYERS[module]


def test_every_module_has_a_layer() -> None:
    # a package's modules take its layer
    unknown = [m for m in MODULES if m not in LAYERS and m.rpartition(".")[0] not in LAYERS]
    assert unknown == [], "place new modules in LAYERS"


def test_dependencies_point_one_way() -> None:
    upward = [
        f"{module} imports {target} (line {i.line})"
        for module in MODULES
        for i in imports_of(module)
        if (target := i.target).startswith("ftpexport") and layer(target) > layer(module)
    ]
    assert upward == []


def test_callers_reach_the_ledger_through_its_interface() -> None:
    # ftpexport.ledger exports the interface and open_ledger; a backend's modules are its own business
    reaching_in = [
        f"{module} imports {i.target} (line {i.line})"
        for module in MODULES
        if not module.startswith("ftpexport.ledger")
        for i in imports_of(module)
        if i.target.startswith("ftpexport.ledger.")
    ]
    assert reaching_in == []


JOURNAL_WRITES = {"mark_files", "forget_file", "file_states"}


def test_the_crash_journal_is_kept_by_publish_alone() -> None:
    users = sorted(
        module
        for module, path in MODULES.items()
        if not module.startswith("ftpexport.ledger")
        and any(
            isinstance(node, ast.Attribute) and node.attr in JOURNAL_WRITES
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert users == ["ftpexport.publish"]


def test_the_watcher_watches_and_nothing_else() -> None:
    # it finds record folders; what to do with them is the daemon's (it knows no rules, ledger or exporter)
    assert ours("ftpexport.watch") <= {"ftpexport.errors", "ftpexport.record", "ftpexport.recordfiles"}


def test_only_the_command_line_assembles_the_daemon() -> None:
    importers = {
        module
        for module in MODULES
        if {"ftpexport.daemon", "ftpexport.cli"} & ours(module) and not module.startswith("ftpexport.cli")
    }
    assert importers == {"ftpexport.__main__"}
