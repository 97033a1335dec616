"""The inbox watcher: a startup scan, then watchdog events, debounced, handed to the pipeline.

The watchdog handler only queues folder paths; one loop takes them and exports the ready ones in
batches. A record is ready as soon as its ``vehicle.json`` (written last) parses as a whole JSON
object: a file still being written does not, since its closing brace comes last. A file that does
not parse is given the settle time to stop changing, and then goes to the pipeline, which reports
what is wrong with it. A periodic rescan catches whatever the events missed (an event can be lost
for a file written in a new folder before its watch is in place). The rules it exports with are
kept fresh by ``rules.RulesReloader``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from .record import MAX_RECORD_BYTES, RECORD_FILE, is_complete, iter_record_folders

log = logging.getLogger(__name__)


#: inotify events that reading a file produces; they say nothing about a record changing
_READS = frozenset({"opened", "closed_no_write"})


#: the events the watcher subscribes to: not opens, reads or closes without writing. At tens of
#: thousands of folders those floods the kernel's queue (watchdog's own re-walk after an overflow
#: makes two per folder), the queue overflows again and again, and real events are lost.
_EVENTS = [
    FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent,
    DirCreatedEvent, DirMovedEvent, DirDeletedEvent,
]  # fmt: skip


class _Enqueue(FileSystemEventHandler):
    """Queues the record folder of every event that touches a ``vehicle.json``."""

    def __init__(self, inbox: Path, pending: queue.Queue[Path]) -> None:
        self.inbox = inbox
        self.pending = pending

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _READS:
            return  # our own reading of vehicle.json must not queue the record again
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = Path(os.fsdecode(raw)) if raw else None
            if path is None:
                continue
            if path.name == RECORD_FILE and path.parent.parent == self.inbox:
                self.pending.put(path.parent)
            elif event.is_directory and path.parent == self.inbox:
                self.pending.put(path)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _parses(path: Path) -> bool:
    """``vehicle.json`` holds a whole JSON object (one cut short does not: its closing brace comes last).

    Only a regular file is read (opened with O_NONBLOCK: a FIFO must not block the watcher), and no
    more than the size a record may have; the export then checks and reads it properly.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                return False
            raw = stream.read(MAX_RECORD_BYTES + 1)
        return len(raw) <= MAX_RECORD_BYTES and isinstance(json.loads(raw), dict)
    except (OSError, ValueError, RecursionError):
        return False


class InboxWatcher:
    """Runs until ``stop`` is set: hands records to ``export`` as they become complete.

    ``export`` should return quickly (``Exporter.submit``). ``housekeeping`` runs every
    ``housekeeping_every`` seconds, first at startup; the folders it returns (the ledger's pending
    records, after a restart or ``ftpexport retry``) are taken like new ones.
    """

    def __init__(
        self,
        inbox: Path,
        export: Callable[[list[Path]], object],
        *,
        stop: threading.Event,
        settle: float = 1.0,
        rescan_every: float = 60.0,
        housekeeping: Callable[[], Iterable[Path]] | None = None,
        housekeeping_every: float = 5.0,
    ) -> None:
        self.inbox = inbox.resolve()
        self.export = export
        self.stop = stop
        self.settle = settle
        self.rescan_every = rescan_every
        self.housekeeping = housekeeping
        self.housekeeping_every = housekeeping_every
        self._pending: queue.Queue[Path] = queue.Queue()
        self._watching: dict[Path, tuple[tuple[int, int] | None, float]] = {}
        # vehicle.json signature of each folder handed to export: a rescan skips unchanged records
        self._handed: dict[Path, tuple[int, int] | None] = {}
        # record folders seen without a vehicle.json yet, and since when: looked at on every turn,
        # because inotify can miss the files written in a new folder before its watch is in place
        self._incomplete: dict[Path, float] = {}
        self._rescan_now = False

    def forget(self) -> None:
        """Take every record again at the next rescan, which comes at once (e.g. the rules changed)."""
        self._rescan_now = True

    def run(self) -> None:
        """Scan, then follow events until stopped."""
        observer = Observer()
        observer.schedule(_Enqueue(self.inbox, self._pending), str(self.inbox), recursive=True,
                          event_filter=_EVENTS)  # fmt: skip
        observer.start()
        try:
            self._rescan()
            next_rescan = time.monotonic() + self.rescan_every
            next_housekeeping = time.monotonic()
            while not self.stop.is_set():
                if self.housekeeping is not None and time.monotonic() >= next_housekeeping:
                    for folder in self.housekeeping():
                        self._handed.pop(folder, None)
                        self._pending.put(folder)
                    next_housekeeping = time.monotonic() + self.housekeeping_every
                # never 0: with --settle 0 an idle loop would spin on an empty queue
                self._drain(timeout=min(max(self.settle, 0.05), 0.5))
                ready = self._ready()
                if ready:
                    self.export(ready)
                if self._rescan_now or time.monotonic() >= next_rescan:
                    if self._rescan_now:
                        self._handed.clear()
                        self._rescan_now = False
                    self._rescan()
                    next_rescan = time.monotonic() + self.rescan_every
        finally:
            observer.stop()
            observer.join(timeout=10)

    def _rescan(self) -> None:
        """Queue the complete records that changed since they were handed over (or never were)."""
        present = set()
        for folder in iter_record_folders(self.inbox):
            if not is_complete(folder):
                continue
            present.add(folder)
            signature = _signature(folder / RECORD_FILE)
            if folder not in self._handed or self._handed[folder] != signature:
                self._pending.put(folder)
        for gone in set(self._handed) - present:
            if gone.is_relative_to(self.inbox):
                del self._handed[gone]

    def _drain(self, timeout: float) -> None:
        try:
            folder = self._pending.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            signature = _signature(folder / RECORD_FILE)
            if signature is None and folder.parent == self.inbox:
                self._incomplete.setdefault(folder, time.monotonic())
            # a folder handed over already and unchanged since is skipped (an event about the folder, not the record)
            if signature is not None and self._handed.get(folder) != signature:
                previous = self._watching.get(folder)
                if previous is None or previous[0] != signature:
                    self._watching[folder] = (signature, time.monotonic())
            try:
                folder = self._pending.get_nowait()
            except queue.Empty:
                return

    def _ready(self) -> list[Path]:
        """Folders whose vehicle.json parses, or has not changed for ``settle`` seconds."""
        now = time.monotonic()
        for folder, since in list(self._incomplete.items()):
            signature = _signature(folder / RECORD_FILE)
            if signature is not None:
                del self._incomplete[folder]
                if folder not in self._watching and self._handed.get(folder) != signature:
                    self._watching[folder] = (signature, now)
            elif now - since > self.rescan_every or not folder.is_dir():
                del self._incomplete[folder]  # the periodic rescan takes over
        ready = []
        for folder, (signature, since) in list(self._watching.items()):
            current = _signature(folder / RECORD_FILE)
            if current is None:
                del self._watching[folder]  # vehicle.json went away: nothing to export
            elif current != signature:
                self._watching[folder] = (current, now)
            elif _parses(folder / RECORD_FILE) or now - since >= self.settle:
                ready.append(folder)
                self._handed[folder] = current
                del self._watching[folder]
        return sorted(ready)
