"""The spool: each record's package built once for all its destinations, ahead of its first upload.

A record sent to three destinations is zipped once; the files stay while one of its jobs runs or
has not had its first attempt, and are deleted after. A retry long after (a destination that was
down) builds them again: the zip is deterministic.

One builder thread builds the packages of queued records in order, at most ``ahead`` of them
waiting for their first job, so the zip of the next record is ready when a connection is free
instead of being built while the connection waits (the upload and the build overlap). Without a
free slot, or when a job asks first, the job builds its package itself, as before.

Each build writes into a folder of its own, and dropping a package removes the folder of the build
it drops, never another: the files are dropped when a job is done with them, and a retry of the
record's other destination may start at that very moment and build them again.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from .errors import FtpexportError, RecordError, StateError
from .package import Package
from .private import FOLDER_MODE, FULL_ERRNOS, disk_hint

log = logging.getLogger(__name__)

P = TypeVar("P")


@dataclass
class _Entry(Generic[P]):
    plan: P
    waiting_first: int
    unfinished: int
    active: int = 0
    value: Package | FtpexportError | None = None
    #: the folder of the build ``value`` came from, while its files are there
    folder: Path | None = None
    #: built by the builder thread and not taken by a job yet (holds a slot of ``ahead``)
    ahead: bool = False
    build_lock: threading.Lock = field(default_factory=threading.Lock)


class SharedPackages(Generic[P]):
    """Packages of plans, by the plan object's identity; ``build(plan, folder)`` makes one."""

    def __init__(
        self, spool: Path, build: Callable[[P, Path], Package], where: Callable[[P], str], *, ahead: int = 2
    ) -> None:
        self._spool = spool
        self._build = build
        self._where = where
        self._lock = threading.Lock()
        self._entries: dict[int, _Entry[P]] = {}
        self._upcoming: deque[int] = deque()
        self._wake = threading.Condition(self._lock)
        self._slots = threading.Semaphore(ahead)
        self._closed = False
        self._builder: threading.Thread | None = None
        if ahead > 0:
            self._builder = threading.Thread(target=self._build_ahead, name="ftpexport-packager", daemon=True)
            self._builder.start()

    def expect(self, plan: P, jobs: int) -> None:
        """``jobs`` jobs will need the package of ``plan``; the builder may start on it."""
        with self._lock:
            self._entries[id(plan)] = _Entry(plan, waiting_first=jobs, unfinished=jobs)
            if self._builder is not None:
                self._upcoming.append(id(plan))
                self._wake.notify()

    def get(self, plan: P) -> Package:
        """The package of ``plan``, built now if the builder has not; raises the build's error."""
        with self._lock:
            entry = self._entries[id(plan)]
            entry.active += 1
            taken_ahead, entry.ahead = entry.ahead, False
        if taken_ahead:
            self._slots.release()
        with entry.build_lock:
            self._ensure_built(entry)
            value = entry.value
        if isinstance(value, FtpexportError):
            raise value
        assert value is not None
        return value

    def put(self, plan: P, *, attempted: bool, first: bool, finished: bool) -> None:
        """A job is done with the package: after an attempt (``attempted``), its first one, or for good."""
        release = False
        folder = None
        with self._lock:
            entry = self._entries[id(plan)]
            entry.active -= attempted
            entry.waiting_first -= first
            entry.unfinished -= finished
            if entry.active == 0 and entry.waiting_first <= 0:
                # the files of this build go; a job that asks from now on builds them again elsewhere
                folder, entry.folder = entry.folder, None
                if not isinstance(entry.value, FtpexportError):
                    entry.value = None
            if entry.unfinished <= 0:
                del self._entries[id(plan)]
                release, entry.ahead = entry.ahead, False  # built ahead, never taken (deferred)
        if release:
            self._slots.release()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Stop the builder (a build under way finishes)."""
        with self._lock:
            self._closed = True
            self._upcoming.clear()
            self._wake.notify()
        self._slots.release()  # wakes a builder waiting for a slot
        if self._builder is not None:
            self._builder.join(timeout=30)

    def _ensure_built(self, entry: _Entry[P]) -> None:
        """Build ``entry``'s package unless it is; the caller holds its ``build_lock``."""
        if entry.value is not None:
            return
        folder: Path | None = None
        try:
            self._spool.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix="package-", dir=self._spool))  # 0700, this build's alone
            package = self._build(entry.plan, folder)
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:  # the spool's disk, not the record: every package would fail
                spool = self._spool.parent  # the spool folder beside the ledger; ours is a temporary one in it
                error: FtpexportError = StateError(
                    f"{spool}: cannot build the package of {self._where(entry.plan)}: {exc.strerror}",
                    hint=disk_hint(spool),
                )
            else:
                error = RecordError(self._where(entry.plan), f"cannot build the package: {exc}")
        except FtpexportError as exc:
            error = exc
        else:
            with self._lock:
                entry.value, entry.folder = package, folder
            return
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)  # what was written of it, to give the space back
        with self._lock:
            entry.value = error

    def _build_ahead(self) -> None:
        while True:
            self._slots.acquire()
            with self._lock:
                while not self._upcoming and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                entry = self._entries.get(self._upcoming.popleft())
                # gone (every job finished) or a job has it already: nothing to do ahead
                useful = entry is not None and entry.active == 0 and entry.waiting_first > 0
            if not useful or entry is None:
                self._slots.release()
                continue
            with entry.build_lock:
                with self._lock:
                    # a job may have taken it while we waited for the lock, and even be done with it: its
                    # first attempt failed and it waits for a retry, which builds the package again then
                    useful = (
                        entry.active == 0
                        and entry.waiting_first > 0
                        and self._entries.get(id(entry.plan)) is entry
                        and entry.value is None
                    )
                if useful:
                    self._ensure_built(entry)
                    folder = None
                    with self._lock:
                        if self._entries.get(id(entry.plan)) is not entry:
                            # every job of the record ended while it was built: no put will drop it
                            folder, entry.folder = entry.folder, None
                        elif entry.active == 0:
                            entry.ahead = True
                            continue
                    if folder is not None:
                        shutil.rmtree(folder, ignore_errors=True)
            self._slots.release()
