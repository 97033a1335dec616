"""The architecture of STYLE.md, checked: no import cycles, dependencies that point one way.

    cli -> {watch, pipeline} -> {rules, naming, package, transport, ledger} -> {record, errors}

Imports are read from the source with ``ast``; each module is also imported alone in a fresh
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


FORBIDDEN_FOR_TRANSPORT = {
    "ftpexport.rules",
    "ftpexport.record",
    "ftpexport.package",
    "ftpexport.ledger",
    "ftpexport.plan",
    "ftpexport.publish",
    "ftpexport.connections",
    "ftpexport.intake",
    "ftpexport.attempt",
    "ftpexport.pipeline",
    "ftpexport.cli",
    "ftpexport.watch",
    "ftpexport.naming",
    "ftpexport.display",
    "ftpexport.demo",
}


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("ftpexport.transport")])
def test_a_transport_knows_nothing_of_rules_records_or_the_ledger(module: str) -> None:
    # a forbidden package's modules too (ftpexport.rules.model)
    forbidden = {m for m in ours(module) if {m, m.rpartition(".")[0]} & FORBIDDEN_FOR_TRANSPORT}
    assert forbidden == set()


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
    "ftpexport": 0,
    "ftpexport.errors": 0,
    "ftpexport.record": 1,
    "ftpexport.recordfiles": 1,
    "ftpexport.secret": 1,
    "ftpexport.logs": 1,
    "ftpexport.dispatch": 1,
    "ftpexport.lock": 1,
    "ftpexport.events": 1,
    "ftpexport.httpd": 1,
    "ftpexport.netguard": 1,
    "ftpexport.sandbox": 1,
    "ftpexport.sizes": 1,
    "ftpexport.private": 1,
    "ftpexport.vault": 2,
    "ftpexport.naming": 2,
    "ftpexport.rules.templates": 2,
    "ftpexport.rules.hints": 2,
    "ftpexport.rules": 2,
    "ftpexport.rules.model": 2,
    "ftpexport.rules.load": 2,
    "ftpexport.rules.routing": 2,
    "ftpexport.rules.check": 2,
    "ftpexport.rules.reload": 2,
    "ftpexport.package": 2,
    "ftpexport.spool": 2,
    "ftpexport.ledger": 2,
    "ftpexport.refusals": 2,
    "ftpexport.health": 2,
    "ftpexport.metrics": 2,
    "ftpexport.transport": 2,
    "ftpexport.plan": 3,
    "ftpexport.publish": 3,
    "ftpexport.connections": 3,
    "ftpexport.intake": 3,
    "ftpexport.attempt": 3,
    "ftpexport.pipeline": 3,
    "ftpexport.probe": 3,
    "ftpexport.webhooks": 3,
    "ftpexport.webhooks.client": 3,
    "ftpexport.webhooks.outbox": 3,
    "ftpexport.webhooks.payload": 3,
    "ftpexport.webhooks.signing": 3,
    "ftpexport.webhooks.texts": 3,
    "ftpexport.checkup": 3,
    "ftpexport.watch": 4,
    "ftpexport.display": 4,
    "ftpexport.progress": 4,
    "ftpexport.demo": 4,
    "ftpexport.folders": 4,
    "ftpexport.daemon": 4,
    "ftpexport.cli": 5,
    "ftpexport.cli.base": 5,
    "ftpexport.cli.export": 5,
    "ftpexport.cli.options": 5,
    "ftpexport.cli.rules": 5,
    "ftpexport.cli.secrets": 5,
    "ftpexport.cli.views": 5,
    "ftpexport.__main__": 6,
}


def layer(module: str) -> int:
    while module not in LAYERS:
        module = module.rpartition(".")[0]
    return LAYERS[module]


def test_every_module_has_a_layer() -> None:
    packages = ("ftpexport.transport.", "ftpexport.ledger.")  # their modules take their package's layer
    unknown = [m for m in MODULES if m not in LAYERS and not m.startswith(packages)]
    assert unknown == [], "place new modules in LAYERS"


def test_dependencies_point_one_way() -> None:
    upward = [
        f"{module} imports {target} (line {i.line})"
        for module in MODULES
        for i in imports_of(module)
        if (target := i.target).startswith("ftpexport") and layer(target) > layer(module)
    ]
    assert upward == []
