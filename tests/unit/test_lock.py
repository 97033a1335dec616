"""lock.py: one exporting process per ledger; the lock dies with its process."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from filemodes import umask

from ftpexport.errors import ConfigError
from ftpexport.lock import exclusive, lock_path


def test_a_second_holder_is_refused_with_the_pid_of_the_first(tmp_path: Path) -> None:
    state = tmp_path / "state" / "ledger.sqlite3"
    with exclusive(state):
        assert lock_path(state).read_text().strip() == str(os.getpid())
        # flock locks belong to the open file: a second open in the same process conflicts too
        refused = pytest.raises(ConfigError, match=rf"another ftpexport process \(pid {os.getpid()}\)")
        with refused as info, exclusive(state):
            pass
        assert info.value.exit_code == 2
    with exclusive(state):  # released on exit
        pass


def test_the_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    state = tmp_path / "ledger.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from ftpexport.lock import exclusive\n"
         "with exclusive(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)", str(state)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"pid {holder.pid}"), exclusive(state):
            pass
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs in the holder
        holder.wait()
    with exclusive(state):
        pass


def test_the_lock_file_and_its_folder_are_private_whatever_the_umask(tmp_path: Path) -> None:
    state = tmp_path / "state" / "ledger.sqlite3"
    with umask(0o022), exclusive(state):
        pass
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(lock_path(state).stat().st_mode) == 0o600


def test_a_lock_file_left_0644_by_an_older_version_is_narrowed(tmp_path: Path) -> None:
    state = tmp_path / "ledger.sqlite3"
    lock_path(state).write_text("12345\n")
    lock_path(state).chmod(0o644)
    with exclusive(state):
        assert stat.S_IMODE(lock_path(state).stat().st_mode) == 0o600
