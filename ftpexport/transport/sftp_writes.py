"""Pipelined SFTP writes whose every reply is checked, for ``SFTPTransport.put``."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from typing import BinaryIO

import paramiko
from paramiko.sftp import CMD_ATTRS, CMD_CLOSE, CMD_FSTAT, CMD_STATUS, CMD_WRITE, int64

log = logging.getLogger(__name__)

#: bytes per write request when the server states no larger limit: what OpenSSH's own client and
#: paramiko send, and what every server accepts
REQUEST_SIZE = 32768
#: the largest write request, whatever a server allows: OpenSSH's max-write-length (256 KiB - 1 KiB)
MAX_REQUEST_SIZE = 261120
#: bytes of writes sent and not yet answered, at most: 64 requests of 32 KiB, 8 of 255 KiB
IN_FLIGHT = 2 * 1024 * 1024
#: a write request's bytes besides its data and handle: length, type, id, handle length, offset, data length
_WRITE_HEADER = 4 + 1 + 4 + 4 + 8 + 4


def request_size(channel_max_packet: int, handle_length: int, limits: dict[str, int] | None) -> int:
    """The data bytes of one write request, from the server's limits@openssh.com when it has them.

    A server that states a max-write-length above 32 KiB (OpenSSH: 255 KiB) gets requests that
    large, within its max-packet-length: per byte, a fraction of the requests, replies and thread
    switches of 32 KiB writes (measured: about a quarter less CPU, a fifth faster on loopback).
    Otherwise 32 KiB, or less when the server states less, and each request within one SSH packet:
    paramiko cuts channel data at the peer's maximum packet size minus 64, and a 32768-byte write
    plus its header and handle would be cut in two (its tail held back by Nagle before TCP_NODELAY:
    x2.3 on many small files).
    """
    limits = limits or {}
    header = _WRITE_HEADER + handle_length
    stated = limits.get("max_write_length") or 0
    packet = limits.get("max_packet_length") or 0
    if stated > REQUEST_SIZE:
        size = min(stated, MAX_REQUEST_SIZE)
        if packet:
            size = min(size, packet - header)
    else:
        size = min(REQUEST_SIZE, channel_max_packet - 64 - header)
        if stated:
            size = min(size, stated)
    return max(1024, size)


def read_blocks(stream: BinaryIO, size: int) -> Iterator[memoryview | bytes]:
    """``stream`` from where it is to its end in blocks of ``size`` bytes (the last one shorter),
    read into one buffer: each block is a view of it, valid until the next one is asked for.

    Full blocks, also from a stream whose reads come back short, so that every write request but
    the file's last is as large as the server allows.
    """
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        while block := stream.read(size):
            yield block
        return
    view = memoryview(bytearray(size))
    while True:
        filled = 0
        while filled < size:
            n = readinto(view[filled:])
            if not n:
                break
            filled += n
        if not filled:
            return
        yield view[:filled]
        if filled < size:
            return


class AckedWriter:
    """Pipelined SFTP writes whose every status reply is checked.

    paramiko's pipelined ``SFTPFile.write`` drops the server's replies to the writes, so a write
    the server refused (disk full: ``SSH_FX_FAILURE``) goes unnoticed, and a failure in the middle
    of a file could even leave a hole that a size check cannot see. Here each write is registered
    with this object, which keeps the first error; at most ``window`` writes (about ``IN_FLIGHT``
    bytes) are unanswered.

    ``close`` sends FSTAT and CLOSE right behind the last write and waits once for every reply:
    the upload ends after one round trip instead of two (CLOSE, then the STAT of the size check).
    """

    def __init__(self, sftp: paramiko.SFTPClient, handle: bytes, limits: dict[str, int] | None = None) -> None:
        self.sftp = sftp
        self.handle = handle
        self.request_size = request_size(sftp.get_channel().out_max_packet_size, len(handle), limits)
        #: writes unanswered at most: about ``IN_FLIGHT`` bytes, whatever the request size
        self.window = max(1, IN_FLIGHT // self.request_size)
        self.offset = 0
        self.unanswered = 0
        self.error: BaseException | None = None
        #: request numbers of the FSTAT and CLOSE sent by ``close``, to tell their replies apart
        self.fstat_request: int | None = None
        self.close_request: int | None = None
        #: the file's size as FSTAT reported it after the last write; None if the server did not say
        self.size: int | None = None

    def write(self, data: bytes | memoryview) -> None:
        """Send ``data`` as write requests at the current offset. The bytes are copied into the
        requests before this returns: the caller may reuse its buffer."""
        view = memoryview(data)  # slices of a view copy nothing
        for start in range(0, len(view), self.request_size):
            piece = view[start : start + self.request_size]
            while self.unanswered >= self.window:
                self._read_one()
            self.sftp._async_request(self, CMD_WRITE, self.handle, int64(self.offset), piece)
            self.unanswered += 1
            self.offset += len(piece)

    def close(self, remote: paramiko.SFTPFile) -> int | None:
        """FSTAT and CLOSE pipelined behind the writes, then wait for every reply; returns the size.

        A server processes the requests on one handle in the order it received them
        (draft-ietf-secsh-filexfer-13, 4.1), so FSTAT sees every write before it: its size is what a
        STAT after CLOSE would say. Raises the first write or CLOSE error (an IOError, as paramiko
        raises them). Returns None when the server did not answer FSTAT with a size: then the
        caller asks with STAT, as it did before.
        """
        # paramiko must never send a CLOSE of its own for this handle (``SFTPFile.close``, its
        # ``__del__``): once closed, the server may give the same handle to another file. Marked
        # before sending, so that not even a failed send leads to a second CLOSE.
        remote._closed = True
        self.fstat_request = self.sftp._async_request(self, CMD_FSTAT, self.handle)
        self.unanswered += 1
        self.close_request = self.sftp._async_request(self, CMD_CLOSE, self.handle)
        self.unanswered += 1
        while self.unanswered:
            self._read_one()
        if self.error is not None:
            raise self.error
        return self.size

    def _read_one(self) -> None:
        self.sftp._read_response()  # one packet: calls _async_response below
        if self.error is not None:
            raise self.error

    # called by paramiko for each reply to a request registered with this object
    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        self.unanswered -= 1
        if num == self.fstat_request:
            self._fstat_response(t, msg)
            return
        # a write or the CLOSE: a status, of which an error is kept (CLOSE can fail, e.g. a full
        # disk on a server that writes on close, and then the file is not complete)
        if t != CMD_STATUS:
            self.error = self.error or paramiko.SFTPError(f"unexpected reply {t} to a write")
            return
        try:
            self.sftp._convert_status(msg)
        except Exception as exc:  # IOError(errno, text) or EOFError, kept for close()
            self.error = self.error or exc

    def _fstat_response(self, t: int, msg: paramiko.Message) -> None:
        if t != CMD_ATTRS:
            # e.g. SSH_FX_OP_UNSUPPORTED: not an upload error; the size check asks with STAT instead
            log.debug("the server did not answer FSTAT (reply type %d); the size is checked with STAT", t)
            return
        attributes = paramiko.SFTPAttributes._from_msg(msg)
        if attributes.st_mode is None or stat.S_ISREG(attributes.st_mode):
            self.size = attributes.st_size
