"""private.py: folders 0700 and files 0600 whatever the umask, wider files of ours narrowed, secret
files read only when they are regular files (never blocking on a FIFO), disk errors told apart."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest
from filemodes import umask

from ftpexport.errors import ConfigError, StateError
from ftpexport.private import (
    NotRegularFile,
    create_private,
    local_error,
    narrow,
    private_folder,
    private_opener,
    read_regular,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_missing_folders_are_made_0700_and_existing_ones_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with umask(0o022):
        private_folder(shared / "a" / "b")
        private_folder(shared / "a" / "b")  # again: nothing to do
    assert (_mode(shared), _mode(shared / "a"), _mode(shared / "a" / "b")) == (0o755, 0o700, 0o700)


def test_a_private_file_is_created_0600_and_an_older_wider_one_is_narrowed(tmp_path: Path) -> None:
    with umask(0o022):
        create_private(tmp_path / "new")
        old = tmp_path / "old"
        old.write_text("kept")
        old.chmod(0o664)
        create_private(old)
        log = tmp_path / "log"
        log.write_text("")
        log.chmod(0o640)
        create_private(log, narrow_existing=False)
        with open(tmp_path / "zip", "wb", opener=private_opener) as stream:
            stream.write(b"PK")
    assert (_mode(tmp_path / "new"), _mode(old), _mode(log), _mode(tmp_path / "zip")) == (0o600, 0o600, 0o640, 0o600)
    assert old.read_text() == "kept"


def test_narrow_keeps_the_owner_bits_and_leaves_folders_and_missing_files_alone(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("")
    script.chmod(0o755)
    narrow(script)
    assert _mode(script) == 0o700
    folder = tmp_path / "folder"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    narrow(folder)
    narrow(tmp_path / "missing")
    assert _mode(folder) == 0o755


def test_a_regular_file_is_read_also_through_a_symbolic_link(tmp_path: Path) -> None:
    # a Kubernetes secret volume: key -> ..data/key -> ..2026_11_20/key
    (tmp_path / "..2026_11_20").mkdir()
    (tmp_path / "..2026_11_20" / "key").write_bytes(b"0123456789")
    (tmp_path / "..data").symlink_to("..2026_11_20")
    (tmp_path / "key").symlink_to("..data/key")
    data, info = read_regular(tmp_path / "key")
    assert data == b"0123456789" and stat.S_ISREG(info.st_mode)
    assert read_regular(tmp_path / "key", limit=4)[0] == b"0123"


def test_a_fifo_a_folder_a_device_and_a_socket_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tmp_path / "sock"))
        cases = {fifo: "a FIFO (named pipe)", tmp_path: "a folder", Path("/dev/null"): "a character device",
                 tmp_path / "sock": "a socket"}  # fmt: skip
        for path, kind in cases.items():
            with pytest.raises(NotRegularFile) as caught:
                read_regular(path)
            assert caught.value.kind == kind
            assert str(caught.value) == f"{path} is {kind}, not a regular file"
        (tmp_path / "to-fifo").symlink_to(fifo)
        with pytest.raises(NotRegularFile, match="FIFO"):
            read_regular(tmp_path / "to-fifo")
    finally:
        server.close()


def test_a_full_or_read_only_disk_is_a_state_error_and_anything_else_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.sqlite3.lock"
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG):
        error = local_error(path, "create the lock file", OSError(code, os.strerror(code)), hint="check --state")
        assert isinstance(error, StateError) and error.exit_code == 1
        expected = f"{path}: cannot create the lock file: {os.strerror(code)} (free space on the disk of {path.parent}"
        assert str(error).startswith(expected + " or make it writable, then run ftpexport again")
    denied = local_error(path, "create the lock file", OSError(errno.EACCES, "Permission denied"), hint="check --state")
    assert isinstance(denied, ConfigError) and denied.exit_code == 2
    assert str(denied) == f"{path}: cannot create the lock file: Permission denied (check --state)"
