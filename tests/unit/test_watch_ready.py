"""watch.py without a running observer: what the watcher reads to decide a record is ready."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from fifo_guard import without_hanging

from ftpexport.watch import InboxWatcher

NEVER = 3600.0  # a settle time no test waits for


def test_a_fifo_named_vehicle_json_does_not_hang_the_watcher(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    record = inbox / "veh-1"
    record.mkdir(parents=True)
    os.mkfifo(record / "vehicle.json")
    watcher = InboxWatcher(inbox, lambda folders: None, stop=threading.Event(), settle=NEVER, rescan_every=NEVER)
    watcher._pending.put(record.resolve())  # what the FIFO's creation event queues
    watcher._drain(timeout=0)

    assert without_hanging(record / "vehicle.json", watcher._ready) == []  # not ready: it is no record file
