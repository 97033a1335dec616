"""The umask a test runs with and the modes of what it created."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run with this umask (child processes started inside inherit it)."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def open_to_others(root: Path) -> dict[str, str]:
    """``{path: mode}`` of ``root`` and everything under it that group or others can reach."""
    found = {}
    for path in [root, *root.rglob("*")]:
        try:
            mode = stat.S_IMODE(path.lstat().st_mode)
        except FileNotFoundError:
            continue  # removed while we walked (a spool folder, a -wal file)
        if mode & 0o077 and not path.is_symlink():
            found[str(path)] = f"{mode:04o}"
    return found


def modes(root: Path) -> dict[str, str]:
    """``{path relative to root: mode}`` of ``root``'s tree, for a failure message."""
    return {str(p.relative_to(root)) or ".": f"{stat.S_IMODE(p.lstat().st_mode):04o}" for p in [root, *root.rglob("*")]}
