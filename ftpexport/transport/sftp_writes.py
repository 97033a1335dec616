"""Pipelined SFTP writes whose every reply is checked, for ``SFTPTransport.put``."""

from __future__ import annotations

import logging
import stat

import paramiko
from paramiko.sftp import CMD_ATTRS, CMD_CLOSE, CMD_FSTAT, CMD_STATUS, CMD_WRITE, int64

log = logging.getLogger(__name__)


class AckedWriter:
    """Pipelined SFTP writes whose every status reply is checked.

    paramiko's pipelined ``SFTPFile.write`` drops the server's replies to the writes, so a write
    the server refused (disk full: ``SSH_FX_FAILURE``) goes unnoticed, and a failure in the middle
    of a file could even leave a hole that a size check cannot see. Here each write is registered
    with this object, which keeps the first error; at most ``WINDOW`` writes are unanswered.

    ``close`` sends FSTAT and CLOSE right behind the last write and waits once for every reply:
    the upload ends after one round trip instead of two (CLOSE, then the STAT of the size check).
    """

    #: bytes per SFTP write request at most (what OpenSSH and paramiko use)
    REQUEST_SIZE = 32768
    WINDOW = 64

    def __init__(self, sftp: paramiko.SFTPClient, handle: bytes) -> None:
        self.sftp = sftp
        self.handle = handle
        # A whole write request in one SSH packet: paramiko cuts channel data at the peer's maximum
        # packet size minus 64, and a 32768-byte write plus its 25-byte header and the handle
        # would be cut in two, its tiny tail held back by Nagle (measured: x2.3 on many small files).
        limit = sftp.get_channel().out_max_packet_size - 64 - (25 + len(handle))
        self.request_size = max(1024, min(self.REQUEST_SIZE, limit))
        self.offset = 0
        self.unanswered = 0
        self.error: BaseException | None = None
        #: request numbers of the FSTAT and CLOSE sent by ``close``, to tell their replies apart
        self.fstat_request: int | None = None
        self.close_request: int | None = None
        #: the file's size as FSTAT reported it after the last write; None if the server did not say
        self.size: int | None = None

    def write(self, data: bytes) -> None:
        for start in range(0, len(data), self.request_size):
            piece = data[start : start + self.request_size]
            while self.unanswered >= self.WINDOW:
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
