"""What every command pays before it does anything: the interpreter, ftpexport's imports, click.

Issue 16's target: ``ftpexport --version`` in at most 0.3 s. Times, each a new process (medians of
``--runs``): ``--version``, ``--help`` (every command's module imported to list them), ``status`` of
an empty ledger (the reading path: the ledger, the display), and the modules ``--version`` imported
(``python -X importtime``), the heaviest first.

    python -m benchmarks.startup
    python -m benchmarks.startup --runs 21
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .product import ROOT, machine_note
from .report import median, table


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def _heaviest_imports(env: dict[str, str], most: int = 8) -> list[tuple[str, float]]:
    """The top-level imports of ``--version`` by cumulative time (ms), from ``-X importtime``."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "ftpexport", "--version"], cwd=ROOT,
                            env=env, capture_output=True, text=True, check=False)  # fmt: skip
    rows = []
    for line in result.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("   "):
            rows.append((parts[2].strip(), int(parts[1]) / 1000))
    return sorted(rows, key=lambda row: -row[1])[:most]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(machine_note())
    with tempfile.TemporaryDirectory() as work:
        state = Path(work) / "ledger.sqlite3"
        python = [sys.executable, "-m", "ftpexport"]
        subprocess.run([*python, "status", "--state", str(state)], cwd=ROOT, env=env, capture_output=True, check=False)
        commands = {
            "ftpexport --version": [*python, "--version"],
            "ftpexport --help": [*python, "--help"],
            "ftpexport status (empty ledger)": [*python, "status", "--state", str(state)],
            "python -c pass (the interpreter alone)": [sys.executable, "-c", "pass"],
        }
        rows = []
        for name, command in commands.items():
            times = [_timed(command, env) for _ in range(args.runs)]
            rows.append((name, f"{median(times):.3f}", f"{min(times):.3f}", f"{max(times):.3f}"))
    print(table(rows, ["command", "median s", "min s", "max s"]))
    print("\nheaviest top-level imports of --version (ms, cumulative):")
    print(table([(name, f"{ms:.1f}") for name, ms in _heaviest_imports(env)], ["module", "ms"]))
    print(machine_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
