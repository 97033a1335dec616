"""Small real disks for the tests: a tmpfs of a few megabytes mounted for a test (the tests run as root,
as in CI), and a file that fills one until the kernel answers ENOSPC, so the ledger, its WAL, the spool
and a server meet a full disk exactly as they would on a real one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import RunningServer


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


@contextlib.contextmanager
def small_tmpfs(server: RunningServer, rel: str, size: str) -> Iterator[Callable[[], None]]:
    """A tmpfs of ``size`` mounted at ``server.root / rel``, owned by the server's user; yields ``umount``."""
    mount_point = server.make_dir(rel)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs to fill the SFTP server's disk (needs root): {result.stderr.strip()}")
    mounted = True

    def umount() -> None:
        nonlocal mounted
        if mounted:
            subprocess.run(["umount", str(mount_point)], check=True, capture_output=True)
            mounted = False

    try:
        assert server.system_user is not None
        shutil.chown(mount_point, server.system_user, server.system_user)
        yield umount
    finally:
        # an open SFTP handle could keep it busy: then detach it lazily rather than leave it behind
        if mounted and subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
