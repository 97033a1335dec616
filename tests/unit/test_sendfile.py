"""send_file: a file's bytes to a socket with os.sendfile, waiting as the socket's timeout says."""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftpexport.transport.sendfile import send_file

DATA = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    sender, receiver = socket.socketpair()
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # far less than DATA: the sender must wait
    sender.settimeout(10)  # a socket with a timeout does not block: os.sendfile meets EAGAIN
    try:
        yield sender, receiver
    finally:
        sender.close()
        receiver.close()


def _receive(receiver: socket.socket, into: bytearray) -> threading.Thread:
    def read() -> None:
        while chunk := receiver.recv(65536):
            into.extend(chunk)

    thread = threading.Thread(target=read)
    thread.start()
    return thread


def _sent(
    pair: tuple[socket.socket, socket.socket], source: int, offset: int, count: int | None, block: int
) -> tuple[int, bytes, list[int]]:
    """``send_file`` over ``pair`` while a thread reads the other end: (its result, the bytes received,
    the sizes the callback was told)."""
    sender, receiver = pair
    got = bytearray()
    reader = _receive(receiver, got)
    pieces: list[int] = []
    try:
        sent = send_file(sender, source, offset, count, pieces.append, block)
    finally:
        sender.shutdown(socket.SHUT_WR)
        reader.join()
    return sent, bytes(got), pieces


@pytest.fixture
def source(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "01.jpg"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def test_a_range_goes_out_byte_for_byte_in_blocks_and_the_position_stays(
    pair: tuple[socket.socket, socket.socket], source: int
) -> None:
    sent, got, pieces = _sent(pair, source, 1000, 600_000, 64 * 1024)
    assert sent == 600_000
    assert got == DATA[1000:601_000]
    assert sum(pieces) == sent and max(pieces) <= 64 * 1024
    assert os.lseek(source, 0, os.SEEK_CUR) == 0


def test_without_a_count_it_sends_to_the_end_and_says_how_much(
    pair: tuple[socket.socket, socket.socket], source: int
) -> None:
    sent, got, _ = _sent(pair, source, 5, None, 256 * 1024)
    assert sent == len(DATA) - 5 and got == DATA[5:]


def test_a_file_shorter_than_the_count_sends_what_it_has(
    pair: tuple[socket.socket, socket.socket], source: int
) -> None:
    sent, got, _ = _sent(pair, source, len(DATA) - 10, 100, 64)
    assert sent == 10 and got == DATA[-10:]


def test_a_peer_that_stops_reading_times_out_as_the_socket_says(
    pair: tuple[socket.socket, socket.socket], source: int
) -> None:
    sender, _receiver = pair  # never read: the buffers fill up
    sender.settimeout(0.2)
    with pytest.raises(TimeoutError, match="timed out"):
        send_file(sender, source, 0, len(DATA), None, 64 * 1024)


def test_a_file_the_kernel_cannot_sendfile_from_is_read_and_sent(
    pair: tuple[socket.socket, socket.socket], source: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(*args: object) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sendfile", unsupported)
    sent, got, pieces = _sent(pair, source, 7, 300_000, 64 * 1024)
    assert sent == 300_000 and got == DATA[7:300_007] and sum(pieces) == sent


def test_an_error_after_bytes_went_out_is_raised_not_retried_another_way(
    pair: tuple[socket.socket, socket.socket], source: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.sendfile
    calls = []

    def fails_second(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        calls.append(offset)
        if len(calls) > 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", fails_second)
    with pytest.raises(OSError, match="Invalid argument"):
        _sent(pair, source, 0, len(DATA), 1024)
    assert len(calls) == 2  # the first block went out with sendfile; the error after it is not retried
