"""The size of SFTP write requests, the blocks read for them, and packets sent without copies
(``transport/sftp_writes.py``, ``transport/sftp_capabilities.py``)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from ftpexport.transport.sftp_capabilities import SFTPClient
from ftpexport.transport.sftp_writes import MAX_REQUEST_SIZE, REQUEST_SIZE, read_blocks, request_size

#: OpenSSH 9's limits@openssh.com (sftp-server.c: SFTP_MAX_MSG_LENGTH 256 KiB)
OPENSSH = {"max_packet_length": 262144, "max_read_length": 261120, "max_write_length": 261120,
           "max_open_handles": 0}  # fmt: skip
#: what paramiko's channel to OpenSSH's sftp subsystem allows per SSH packet
CHANNEL = 32768


def test_a_server_stating_a_large_write_length_gets_it() -> None:
    assert request_size(CHANNEL, 4, OPENSSH) == 261120


def test_a_stated_write_length_is_kept_within_the_stated_packet_length_and_our_maximum() -> None:
    assert request_size(CHANNEL, 4, {"max_write_length": 1 << 20, "max_packet_length": 0}) == MAX_REQUEST_SIZE
    # a request must fit the server's packet: 25 bytes of header and the handle besides the data
    assert request_size(CHANNEL, 4, {"max_write_length": 200_000, "max_packet_length": 100_000}) == 100_000 - 29


def test_without_limits_a_request_is_32_kib_within_one_ssh_packet() -> None:
    assert request_size(CHANNEL, 4, None) == CHANNEL - 64 - 29
    assert request_size(1 << 20, 4, None) == REQUEST_SIZE
    assert request_size(1 << 20, 4, {}) == REQUEST_SIZE


def test_a_server_stating_less_than_32_kib_gets_no_more() -> None:
    assert request_size(1 << 20, 4, {"max_write_length": 16384, "max_packet_length": 20000}) == 16384


def test_a_tiny_channel_still_gets_1_kib_requests() -> None:
    assert request_size(100, 4, None) == 1024


class Trickle(io.RawIOBase):
    """A stream whose reads return at most ``most`` bytes."""

    def __init__(self, data: bytes, most: int) -> None:
        self.source = io.BytesIO(data)
        self.most = most

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self.source.read(min(len(buffer), self.most))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 4500])
def test_blocks_are_full_but_the_last_even_from_short_reads(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    blocks = [bytes(block) for block in read_blocks(Trickle(data, 7), 1000)]

    assert b"".join(blocks) == data
    assert all(len(block) == 1000 for block in blocks[:-1])
    assert len(blocks) == -(-size // 1000)


def test_blocks_from_a_stream_without_readinto() -> None:
    class Plain:
        def __init__(self) -> None:
            self.source = io.BytesIO(b"abcdefghij")

        def read(self, size: int) -> bytes:
            return self.source.read(size)

    assert [bytes(b) for b in read_blocks(Plain(), 4)] == [b"abcd", b"efgh", b"ij"]  # type: ignore[arg-type]


class Channel:
    """Takes at most ``most`` bytes per send, as a channel with a 32 KiB packet does."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.received = bytearray()
        self.kinds: set[type] = set()

    def send(self, data: Any) -> int:
        self.kinds.add(type(data))
        taken = bytes(data[: self.most])
        self.received += taken
        return len(taken)


def test_a_packet_goes_out_whole_and_its_rest_is_never_copied() -> None:
    client = SFTPClient.__new__(SFTPClient)  # no session: only the send path
    client.sock = Channel(32_000)
    packet = bytes(range(256)) * 1021  # 261,376 bytes: a 255 KiB write request

    client._write_all(packet)

    assert client.sock.received == packet
    # paramiko's own loop hands bytes slices to the channel, each a copy of the rest of the packet
    assert client.sock.kinds == {memoryview}


def test_a_closed_channel_ends_the_send() -> None:
    client = SFTPClient.__new__(SFTPClient)
    client.sock = Channel(0)
    with pytest.raises(EOFError):
        client._write_all(b"data")
