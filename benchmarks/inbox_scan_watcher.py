"""The watcher in process (``benchmarks.inbox_scan``): ``InboxWatcher``'s scans timed directly, the
inotify watches it holds, whether one new record makes it rescan the inbox (its scan functions
wrapped with counters), and what if watchdog asked inotify for fewer events (``--what-if``)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from .synthetic import vin, write_record


def _inotify_watches() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                with open(f"/proc/self/fdinfo/{fd}") as f:
                    count += sum(1 for line in f if line.startswith("inotify wd:"))
    return count


class _Counter(logging.Handler):
    """Counts watchdog's "Inotify queue overflowed" log records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.count += 1


def watcher_in_process(inbox: Path, n: int, new_timeout: float = 120.0) -> tuple[list[list[Any]], bool]:
    """The watcher's scans timed directly, then run() with a new record and counters on the scans."""
    import ftpexport.watch as watch

    overflows = _Counter()
    logging.getLogger("watchdog").addHandler(overflows)
    logging.getLogger("watchdog").propagate = False  # counted, not printed

    rows: list[list[Any]] = []
    calls = {"iter_record_folders": 0, "is_complete": 0, "_signature": 0}
    originals = {name: getattr(watch, name) for name in calls}

    def counting(name: str) -> Any:
        original = originals[name]

        def wrapper(*a: Any, **k: Any) -> Any:
            calls[name] += 1
            return original(*a, **k)

        return wrapper

    for name in calls:
        setattr(watch, name, counting(name))
    try:
        exported: list[tuple[float, list[Path]]] = []
        stop = threading.Event()
        w = watch.InboxWatcher(inbox, lambda folders: exported.append((time.monotonic(), list(folders))),
                               stop=stop, settle=0.0, rescan_every=3600)  # fmt: skip
        t0 = time.perf_counter()
        w._rescan()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        w._drain(timeout=0)
        handed = w._ready()
        drain = time.perf_counter() - t0
        t0 = time.perf_counter()
        w._rescan()
        again = time.perf_counter() - t0
        requeued = w._pending.qsize()
        rows += [
            ["first rescan (list + is_complete + stat, queue all)", f"{first:.2f} s", f"{n} folders"],
            ["settle check of the queued folders (_drain + _ready)", f"{drain:.2f} s", f"{len(handed)} ready"],
            ["periodic rescan, nothing changed", f"{again:.2f} s", f"{requeued} queued again (every --rescan s)"],
        ]

        # run(): observer start-up on n folders, first batch, then one new record
        stop = threading.Event()
        exported.clear()
        w = watch.InboxWatcher(inbox, lambda folders: exported.append((time.monotonic(), list(folders))),
                               stop=stop, settle=0.2, rescan_every=3600)  # fmt: skip
        t0 = time.monotonic()
        thread = threading.Thread(target=w.run, daemon=True)
        thread.start()
        while not exported and time.monotonic() - t0 < 600:
            time.sleep(0.01)
        startup = (exported[0][0] - t0) if exported else float("nan")
        first_batch = len(exported[0][1]) if exported else 0
        time.sleep(1.0)  # let the batch settle
        watches = _inotify_watches()
        for name in calls:
            calls[name] = 0
        overflows_before = overflows.count
        new = inbox / "zz-new-in-process"
        written = time.monotonic()
        write_record(new, record_id="veh-new-ip", client_id="c000", vin_=vin(999_999), images=[4096, 4096])
        found = None
        while found is None and time.monotonic() - written < new_timeout:
            found = next((e for e in list(exported) if e[0] >= written and new.resolve() in e[1]), None)
            time.sleep(0.005)
        latency = found[0] - written if found else float("nan")
        batch = found[1] if found else []
        counts = dict(calls)
        overflowed = overflows.count - overflows_before
        stop.set()
        thread.join(timeout=30)
        shutil.rmtree(inbox / "zz-new-in-process", ignore_errors=True)
        rows += [
            ["run(): start to first batch handed over", f"{startup:.2f} s",
             f"{first_batch} folders (observer start + rescan + settle 0.2 s)"],
            ["inotify watches held", watches, "one per record folder (recursive watch)"],
            ["one new record: written to export()", f"{latency:.3f} s" if found else f"not within {new_timeout:g} s",
             f"batch of {len(batch)} folder(s)"],
            ["inotify queue overflows logged by watchdog", f"{overflows.count}",
             f"{overflowed} of them after the new record was written (events lost, watches re-walked)"],
            ["  scans meanwhile", f"iter_record_folders x{counts['iter_record_folders']}",
             f"is_complete x{counts['is_complete']}, _signature x{counts['_signature']}"],
        ]  # fmt: skip
        ok = found is not None
        return rows, ok
    finally:
        for name, original in originals.items():
            setattr(watch, name, original)


def watchdog_what_if(inbox: Path, settle_s: float = 10.0, new_timeout: float = 60.0) -> list[list[Any]]:
    """What if the watcher asked inotify only for the events it uses (no IN_OPEN / IN_ACCESS /
    IN_CLOSE_NOWRITE / IN_MODIFY)? The product's event handler, watchdog's ``event_filter``."""
    import queue

    from watchdog.events import (
        DirCreatedEvent,
        DirDeletedEvent,
        DirMovedEvent,
        FileClosedEvent,
        FileCreatedEvent,
        FileDeletedEvent,
        FileMovedEvent,
    )
    from watchdog.observers import Observer

    from ftpexport.watch import _Enqueue

    overflows = _Counter()
    logging.getLogger("watchdog").addHandler(overflows)
    logging.getLogger("watchdog").propagate = False
    rows: list[list[Any]] = []
    for label, event_filter in (
        ("event_filter: created, closed-after-write, moved, deleted", [
            FileCreatedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent,
            DirCreatedEvent, DirMovedEvent, DirDeletedEvent]),
        ("default mask (the product before it narrowed its own)", None),
    ):  # fmt: skip
        pending: queue.Queue[Path] = queue.Queue()
        observer = Observer()
        before = overflows.count
        t0 = time.monotonic()
        observer.schedule(_Enqueue(inbox.resolve(), pending), str(inbox), recursive=True, event_filter=event_filter)
        observer.start()
        time.sleep(settle_s)
        while not pending.empty():
            pending.get_nowait()
        new = inbox / f"zz-what-if-{len(rows)}"
        written = time.monotonic()
        write_record(new, record_id=f"veh-what-if-{len(rows)}", client_id="c000", vin_=vin(777_000 + len(rows)),
                     images=[4096, 4096])  # fmt: skip
        latency = None
        while latency is None and time.monotonic() - written < new_timeout:
            try:
                folder = pending.get(timeout=0.1)
            except queue.Empty:
                continue
            if folder == new.resolve() and (folder / "vehicle.json").exists():
                latency = time.monotonic() - written
        observer.stop()
        observer.join(timeout=30)
        shutil.rmtree(new, ignore_errors=True)
        rows.append([label, f"{overflows.count - before} overflows in {time.monotonic() - t0:.0f} s",
                     f"{latency * 1000:.1f} ms" if latency is not None else f"lost (> {new_timeout:g} s)"])  # fmt: skip
    return rows
