"""private.py: secret files read only when they are regular files (never blocking on a FIFO)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from ftpexport.private import NotRegularFile, read_regular


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


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
