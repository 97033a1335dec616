"""One exporting process per ledger: an exclusive lock file beside the SQLite file.

Two processes sending from the same ledger would upload the same records twice. ``run`` and
``watch`` hold the lock for their whole life; the kernel releases it when the process dies, even
on ``kill -9``, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import ConfigError
from .private import FILE_MODE, local_error, narrow, private_folder


def lock_path(state: Path) -> Path:
    """The lock file of a ledger file."""
    return state.with_name(state.name + ".lock")


@contextmanager
def exclusive(state: Path) -> Iterator[None]:
    """Hold the ledger's lock file; raises ``ConfigError`` when another process holds it."""
    path = lock_path(state)
    try:
        private_folder(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise local_error(path, "create the lock file", exc, hint="check --state") from exc
    try:
        narrow(path, fd)  # a lock file of an older ftpexport was 0644
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigError(
                f"{state}: another ftpexport process (pid {holder}) is exporting with this ledger",
                hint="wait for it to finish, stop it, or use another --state",
            ) from None
        with suppress(OSError):  # a full disk: the lock holds all the same, only the pid it shows is missing
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
