"""A record's files, opened safely: only regular files of the record, read through the checked descriptor.

A record delivers the bytes of its own files and nothing else. Each file is opened without
following a symbolic link anywhere below the record folder (``O_NOFOLLOW`` on every component),
with ``O_NONBLOCK`` so that a FIFO or a device cannot hang the exporter, and checked with
``fstat`` on that descriptor, which is then the one that is read:

- a regular file only (not a FIFO, socket, device or folder);
- not ftpexport's own files (the secrets store, its key file, the ledger and its side files, the
  log file, the SFTP key files of the rules), whatever the options: compared by (device, inode),
  so a hard link to one of them is found under any name;
- not a file with more than one hard link, unless the operator allows it: a hard link made into a
  record can be any file the exporter may read (``/etc/shadow``, a key), and nothing in the record
  tells it from the record's own photo.

What was checked is kept as an ``Identity`` (device, inode, size, modification and change times).
Packaging and uploading open the file again and refuse it unless the identity is the same
(``reopen``): a file replaced, renamed over, or written after it was read raises
``RecordChangedError``, and the record is read again instead of sending something unchecked.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import RecordChangedError, RecordError

#: read-only, never through a symbolic link, never blocking on a FIFO or device, not inherited
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
ALLOW_HARDLINKS_ENV = "FTPEXPORT_ALLOW_HARDLINKS"

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
)


@dataclass(frozen=True)
class Identity:
    """Which file was checked and what it looked like: a different file, or a write, changes it."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> Identity:
        return cls(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


@dataclass(frozen=True)
class FilePolicy:
    """What a record may deliver: hard links or not, and the files it may never deliver."""

    #: files with more than one hard link are delivered (platforms that deduplicate photos)
    allow_hardlinks: bool = False
    #: (path, what it is) of ftpexport's own files, refused whatever the options
    protected: tuple[tuple[Path, str], ...] = ()

    def guard(self) -> FileGuard:
        """The policy with the protected files' (device, inode) as they are now."""
        found: dict[tuple[int, int], tuple[Path, str]] = {}
        for path, what in self.protected:
            try:
                info = path.stat()
            except (OSError, ValueError):
                continue  # not there (yet): nothing to protect under that name
            found.setdefault((info.st_dev, info.st_ino), (path, what))
        return FileGuard(self.allow_hardlinks, found)


@dataclass(frozen=True)
class FileGuard:
    """Opens and checks a record's files (see the module docstring)."""

    allow_hardlinks: bool
    protected: dict[tuple[int, int], tuple[Path, str]]

    def open(self, root: Path, path: Path, *, where: str, name: str) -> tuple[BinaryIO, Identity]:
        """``path`` (resolved, inside ``root``) opened and checked; raises ``RecordError``.

        ``FileNotFoundError`` passes through, for the caller's own message. ``name`` is how the
        messages call the file (``image '03.jpg'``).
        """
        fd = _open_beneath(root, path, where=where, name=name)
        try:
            info = os.fstat(fd)
            self.check(info, where=where, name=name)
            return os.fdopen(fd, "rb"), Identity.of(info)
        except BaseException:
            os.close(fd)
            raise

    def check(self, info: os.stat_result, *, where: str, name: str) -> None:
        """Refuse what a record may not deliver, from the ``fstat`` of the descriptor to be read."""
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(info.st_mode, where=where, name=name)
        own = self.protected.get((info.st_dev, info.st_ino))
        if own is not None:
            path, what = own
            raise RecordError(
                where,
                f"{name} is {what} ({path}): ftpexport never sends its own files",
                hint="a record may only deliver its own files; remove that link from the record",
            )
        if info.st_nlink > 1 and not self.allow_hardlinks:
            raise RecordError(
                where,
                f"{name} has {info.st_nlink} hard links: the same file is also elsewhere, so it may not be "
                "the record's own (a hard link can bring in any file ftpexport can read)",
                hint="copy the file into the record instead of linking it; if your platform deduplicates "
                f"photos with hard links, start ftpexport with --allow-hardlinks ({ALLOW_HARDLINKS_ENV}=1)",
            )


class CheckedFile(io.BufferedReader):
    """A record's file opened again by ``reopen``, which knows what the file must still look like."""

    def __init__(self, fd: int, expected: Identity, *, where: str, name: str) -> None:
        super().__init__(io.FileIO(fd, "rb", closefd=True))
        self.expected = expected
        self._where = where
        self._name = name

    def verify(self) -> None:
        """``RecordChangedError`` unless the file still looks as it did when it was read (size and
        times, on this descriptor): asked once its bytes are sent, since a write while they were
        read or sent (with ``sendfile``, unseen by ftpexport) would have delivered other bytes."""
        if Identity.of(os.fstat(self.fileno())) != self.expected:
            raise changed(self._where, self._name, "it was written while it was sent")


def reopen(path: Path, expected: Identity, *, where: str, name: str) -> CheckedFile:
    """``path`` opened again for packaging or sending: the same file, unchanged since it was checked.

    Raises ``RecordChangedError`` when it is gone, another file, or written since (size, times).
    ``CheckedFile.verify`` asks again once it is read.
    """
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        detail = "it is now a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or type(exc).__name__
        raise changed(where, name, detail) from exc
    try:
        _compare(os.fstat(fd), expected, where=where, name=name)
        return CheckedFile(fd, expected, where=where, name=name)
    except BaseException:
        os.close(fd)
        raise


def check_unchanged(path: Path, expected: Identity, *, where: str, name: str) -> None:
    """``RecordChangedError`` unless ``path`` is still the file that was checked, unchanged, as
    ``reopen`` would find it; one ``lstat``, nothing opened (the check before a transfer starts:
    ``reopen`` when each file's turn comes, and ``CheckedFile.verify``, still check it then)."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError as exc:
        raise changed(where, name, exc.strerror or type(exc).__name__) from exc
    _compare(info, expected, where=where, name=name)


def _compare(info: os.stat_result, expected: Identity, *, where: str, name: str) -> None:
    found = Identity.of(info)
    if found != expected or not stat.S_ISREG(info.st_mode):
        if stat.S_ISLNK(info.st_mode):
            raise changed(where, name, "it is now a symbolic link")
        same_file = (found.dev, found.ino) == (expected.dev, expected.ino)
        raise changed(where, name, "it was written since" if same_file else "another file is in its place")


def changed(where: str, name: str, detail: str) -> RecordChangedError:
    """The error for a file of the record that is not what was read."""
    return RecordChangedError(where, f"{name} changed after it was read ({detail}); the record will be read again")


def own_files(
    *, store: Path | None, key_file: Path | None, ledger: Path | None, log_file: Path | None
) -> tuple[tuple[Path, str], ...]:
    """ftpexport's own files that no record may deliver, as ``FilePolicy.protected``."""
    files: list[tuple[Path, str]] = []
    if store is not None:
        files += [(store, "the secrets store"), (store.with_name(store.name + ".rotating"), "the secrets store")]
    if key_file is not None:
        files.append((key_file, "the secrets store's key file"))
    if ledger is not None:
        # SQLite's side files, and the lock file of lock.py
        files += [(ledger.with_name(ledger.name + suffix), "the ledger") for suffix in ("", "-wal", "-shm", "-journal")]
        files.append((ledger.with_name(ledger.name + ".lock"), "the ledger's lock file"))
    if log_file is not None:
        files.append((log_file, "the log file"))
    return tuple(files)


def _open_beneath(root: Path, path: Path, *, where: str, name: str) -> int:
    """A descriptor of ``path``, opened from ``root`` one component at a time without following links.

    ``path`` was resolved and found inside ``root``; a component replaced by a symbolic link since
    (to lead the open elsewhere) is refused instead of followed. A file that is not regular is
    refused before it is opened, so a FIFO or device is never opened at all (and the ``fstat``
    after the open catches one swapped in between).
    """
    parts = path.relative_to(root).parts
    if not parts:
        raise _not_regular(stat.S_IFDIR, where=where, name=name)
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=directory)
            except NotADirectoryError as exc:  # a symbolic link (O_NOFOLLOW) or a file
                if stat.S_ISLNK(os.stat(part, dir_fd=directory, follow_symlinks=False).st_mode):
                    raise changed(where, name, "a folder on its way is now a symbolic link") from exc
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path)) from exc
            os.close(directory)
            directory = inner
        info = os.stat(parts[-1], dir_fd=directory, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(info.st_mode, where=where, name=name)
        try:
            return os.open(parts[-1], OPEN_FLAGS, dir_fd=directory)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise changed(where, name, "it is now a symbolic link") from exc
            raise
    finally:
        os.close(directory)


def _not_regular(mode: int, *, where: str, name: str) -> RecordError:
    kind = next((text for test, text in _KINDS if test(mode)), "not a file")
    return RecordError(
        where,
        f"{name} is not a regular file ({kind})",
        hint="a record may only deliver its own regular files",
    )
