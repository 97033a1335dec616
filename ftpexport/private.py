"""Private local files: what ftpexport reads and writes for its secrets, its owner's alone.

A secret file is read only when it is a regular file (a symbolic link to one is followed, as in a
Kubernetes secret volume): opening a FIFO waits for a writer for ever, and a device or a folder is
a mistake worth naming.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFile(Exception):
    """The path is something else than a regular file; ``kind`` says what (``a FIFO (named pipe)``)."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a regular file")
        self.kind = kind


def file_kind(mode: int) -> str | None:
    """What a ``st_mode`` is when it is not a regular file (``a folder``); None for a regular file."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def read_regular(path: Path, limit: int | None = None) -> tuple[bytes, os.stat_result]:
    """The bytes of ``path`` (at most ``limit``) and its ``fstat``, when it is a regular file.

    Raises ``NotRegularFile`` for anything else, before opening it when ``stat`` tells, and after
    opening it (without blocking: ``O_NONBLOCK``) for the object actually opened; ``OSError`` when
    it cannot be read.
    """
    kind = file_kind(os.stat(path).st_mode)
    if kind is not None:
        raise NotRegularFile(path, kind)  # a device is not even opened
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with open(fd, "rb", closefd=True) as stream:
        info = os.fstat(fd)
        kind = file_kind(info.st_mode)
        if kind is not None:  # replaced between the stat and the open
            raise NotRegularFile(path, kind)
        return stream.read() if limit is None else stream.read(limit), info
