"""What the benchmarks read and print: the ledger read-only, py-spy summaries, percentiles, tables."""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any


def open_ro(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    return db


def parse_ts(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def pyspy_summary(raw: Path, top: int = 25, package: str = "ftpexport") -> str:
    """Where the time goes in a py-spy ``--format raw`` file (recorded with ``--idle``).

    Per thread kind (main, worker, other): the share of samples, then the frames of ``package``
    and the leaves (what the thread was doing at the bottom of its stack) by share of samples.
    """
    import re
    from collections import Counter

    if not raw.exists():
        return f"(no profile: {raw} missing)"
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    frame_re = re.compile(r"^(.*) \((.*?):(\d+)\)$")
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        seen = set()
        for frame in frames:
            match = frame_re.match(frame)
            name = frame
            if match:
                func, path = match.group(1), match.group(2)
                if f"/{package}/" not in path and not path.startswith(package + "/"):
                    continue
                name = f"{func} ({path.split('/' + package + '/')[-1]})"
            else:
                continue
            if name not in seen:
                inclusive[name] += n
                seen.add(name)
        leaf = frames[-1]
        match = frame_re.match(leaf)
        if match:
            leaf = f"{match.group(1)} ({Path(match.group(2)).name}:{match.group(3)})"
        leaves[leaf] += n
    if not total:
        return "(empty profile)"
    lines = [f"{total} samples over all threads (idle included); share of thread-samples:"]
    lines.append(f"  {package} frames, inclusive:")
    lines += [f"    {100 * n / total:5.1f} %  {name}" for name, n in inclusive.most_common(top)]
    lines.append("  leaves (innermost frame), all code:")
    lines += [f"    {100 * n / total:5.1f} %  {name}" for name, n in leaves.most_common(top)]
    return "\n".join(lines)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells[1:]]
    return "\n".join(lines)


def mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"
