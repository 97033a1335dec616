"""Shared by the tests of the state folder: the umask, the modes of what was created, a small disk.

``small_disk`` mounts a real tmpfs of a few megabytes (the tests run as root, as in CI); ``fill``
writes a file on it until the kernel answers ENOSPC, so the ledger, its WAL and the spool meet a
full disk exactly as they would on a real one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


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


@contextlib.contextmanager
def small_disk(path: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (created) for the test; unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.fail(f"these tests mount a small tmpfs and need root (as CI has): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        # lazy: a child process killed by the test may still hold a file open for a moment
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` with one file until ENOSPC, then give ``leave`` bytes back; returns the file."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as stream:
        try:
            while True:
                stream.write(chunk)
        except OSError:
            pass  # ENOSPC: the disk is full
    size = filler.stat().st_size
    if leave:
        os.truncate(filler, max(0, size - leave))
    return filler
