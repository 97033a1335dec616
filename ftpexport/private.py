"""Private local files: what ftpexport writes for its state and its secrets, its owner's alone.

The ledger, its lock, the spool and the log hold VINs, host names, remote paths and errors; the
secrets store and its key hold the credentials. Whatever the umask, the folders ftpexport creates
are 0700 and its files 0600. A folder that exists is left as it is (it may be shared: with
``--state ./ledger.sqlite3`` it is the working folder); a file of ours that exists with a wider
mode (written by an older ftpexport) is narrowed to 0600 when it is opened.

A secret file is read only when it is a regular file (a symbolic link to one is followed, as in a
Kubernetes secret volume): opening a FIFO waits for a writer for ever, and a device or a folder is
a mistake worth naming.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from .errors import ConfigError, FtpexportError, StateError

log = logging.getLogger(__name__)

FOLDER_MODE = 0o700
FILE_MODE = 0o600
#: what group and others may do
_SHARED = stat.S_IRWXG | stat.S_IRWXO

#: the disk is full, over quota or read-only: only writing meets these
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
#: errors of the disk rather than of the configuration, for files only ftpexport writes
_DISK_ERRNOS = FULL_ERRNOS | {errno.EFBIG, errno.EIO}

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


def private_folder(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700; folders that exist are left alone."""
    missing = []
    while not path.is_dir() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=FOLDER_MODE, exist_ok=True)


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for ``open()``: files it creates have mode 0600."""
    return os.open(path, flags | os.O_CLOEXEC, FILE_MODE)


def create_private(path: Path, *, narrow_existing: bool = True) -> None:
    """Create ``path`` empty with mode 0600 unless it exists; an existing one is narrowed (``narrow``)
    unless ``narrow_existing`` is False."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        if narrow_existing:
            narrow(path)
    else:
        os.close(fd)


def narrow(path: Path, fd: int | None = None) -> None:
    """Take group's and others' access away from a regular file of ours (through ``fd`` when given);
    one that is not there, not a regular file or not ours is left alone."""
    target = path if fd is None else fd
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode) or not info.st_mode & _SHARED or info.st_uid != os.geteuid():
        return
    mode = stat.S_IMODE(info.st_mode)
    os.chmod(target, mode & ~_SHARED)
    log.warning("file mode narrowed to owner only",
                extra={"path": str(path), "was": f"{mode:04o}", "now": f"{mode & ~_SHARED:04o}"})  # fmt: skip


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


def disk_hint(folder: Path) -> str:
    """What to do when the state folder cannot be written."""
    return (
        f"free space on the disk of {folder} or make it writable, then run ftpexport again; nothing is lost: "
        "what was not recorded as delivered is sent then"
    )


def local_error(path: Path, doing: str, exc: OSError, *, hint: str) -> FtpexportError:
    """``{path}: cannot {doing}: {reason}``: a ``StateError`` when the disk is full, read-only or failing
    (exit 1, start again later), else a ``ConfigError`` with ``hint`` (exit 2, fix the setup)."""
    message = f"{path}: cannot {doing}: {exc.strerror or exc}"
    if exc.errno in _DISK_ERRNOS:
        return StateError(message, hint=disk_hint(path.parent))
    return ConfigError(message, hint=hint)
