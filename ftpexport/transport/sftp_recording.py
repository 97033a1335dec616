"""The SFTP session as the attempt's transcript shows it (``transcript``): each request with its
path, each reply with its status code, the writes of a file summarised as bytes and requests.

``RecordingSFTPClient`` is paramiko's ``SFTPClient`` that tells the current recorder about every
packet it sends (``_async_request``, through which every request goes, the pipelined writes of
``sftp_writes`` too) and reads (``_read_packet``; the server's VERSION with the extensions
``sftp_capabilities`` read from it, in ``_send_version``). Without a recorder it adds one lookup per packet.
"""

from __future__ import annotations

import contextlib
from typing import Any

import paramiko
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_NAME,
    CMD_OPEN,
    CMD_RENAME,
    CMD_STATUS,
    CMD_VERSION,
    CMD_WRITE,
)

from . import transcript
from .sftp_capabilities import SFTPClient

#: SFTP request types by number (draft-ietf-secsh-filexfer-02, the version OpenSSH speaks)
_REQUESTS = {3: "OPEN", 4: "CLOSE", 5: "READ", 6: "WRITE", 7: "LSTAT", 8: "FSTAT", 9: "SETSTAT", 10: "FSETSTAT",
             11: "OPENDIR", 12: "READDIR", 13: "REMOVE", 14: "MKDIR", 15: "RMDIR", 16: "REALPATH", 17: "STAT",
             18: "RENAME", 19: "READLINK", 20: "SYMLINK", 200: "EXTENDED"}  # fmt: skip
#: SFTP status codes by number
_STATUS = ("OK", "EOF", "NO_SUCH_FILE", "PERMISSION_DENIED", "FAILURE", "BAD_MESSAGE", "NO_CONNECTION",
           "CONNECTION_LOST", "OP_UNSUPPORTED")  # fmt: skip
#: OPEN's flags, as written in the transcript
_OPEN_FLAGS = ((0x01, "read"), (0x02, "write"), (0x04, "append"), (0x08, "create"), (0x10, "truncate"),
               (0x20, "exclusive"))  # fmt: skip


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class RecordingSFTPClient(SFTPClient):
    """Our SFTP client (``sftp_capabilities``: it keeps the server's extensions), recording its
    requests and replies in the attempt's transcript."""

    def __init__(self, sock: paramiko.Channel) -> None:
        # before paramiko's __init__, which reads the server's VERSION
        #: request number -> (request name, what it is about), until its reply
        self._asked: dict[int, tuple[str, str]] = {}
        #: open handle -> the path it was opened for
        self._handles: dict[bytes, str] = {}
        #: handle -> [write requests, bytes] not yet summarised in the transcript
        self._writes: dict[bytes, list[int]] = {}
        super().__init__(sock)

    def _async_request(self, fileobj: Any, t: int, *args: Any) -> int:
        num: int = super()._async_request(fileobj, t, *args)
        recorder = transcript.current()
        if recorder is None:
            return num
        with contextlib.suppress(Exception):  # recording never fails a request that was sent
            self._record_request(recorder, num, t, args)
        return num

    def _send_version(self) -> int:
        version = super()._send_version()  # reads the server's VERSION and keeps its extensions
        extensions = ", ".join(f"{name} {data}" for name, data in self.extensions.items())
        transcript.note("status", f"SFTP version {version}; extensions: {extensions or 'none'}")
        return version

    def _read_packet(self) -> tuple[int, bytes]:
        t, data = super()._read_packet()
        recorder = transcript.current()
        if recorder is not None and t != CMD_VERSION:  # the VERSION: see _send_version
            with contextlib.suppress(Exception):  # nor a reply that was read
                self._record_reply(recorder, t, data)
        return t, data

    def _record_request(self, recorder: transcript.Recorder, num: int, t: int, args: tuple[Any, ...]) -> None:
        name = _REQUESTS.get(t, f"request type {t}")
        if t == CMD_WRITE:
            handle, data = args[0], args[2]
            path = self._handles.get(handle, "?")
            self._asked[num] = (name, path)
            written = self._writes.setdefault(handle, [0, 0])
            if written == [0, 0]:
                recorder.add("request", f"WRITE {path} from offset {int(args[1])} (writes summarised at the end)")
            written[0] += 1
            written[1] += len(data)
            return
        if t in (CMD_CLOSE, CMD_FSTAT):
            self._summarise_writes(recorder, args[0])
            subject = self._handles.get(args[0], "?")
            text = f"{name} {subject}"
        elif t == CMD_OPEN:
            subject = _text(args[0])
            flags = ", ".join(word for bit, word in _OPEN_FLAGS if int(args[1]) & bit)
            text = f"OPEN {subject} ({flags})"
        elif t == CMD_RENAME:
            subject = f"{_text(args[0])} -> {_text(args[1])}"
            text = f"RENAME {subject}"
        elif t == CMD_EXTENDED:
            name = _text(args[0])
            subject = " -> ".join(_text(a) for a in args[1:] if isinstance(a, str | bytes))
            text = f"EXTENDED {name} {subject}".rstrip()
        else:
            subject = _text(args[0]) if args and isinstance(args[0], str | bytes) else ""
            text = f"{name} {subject}".rstrip()
        self._asked[num] = (name, subject)
        recorder.add("request", text)

    def _summarise_writes(self, recorder: transcript.Recorder, handle: bytes) -> None:
        written = self._writes.pop(handle, None)
        if written is not None:
            path = self._handles.get(handle, "?")
            requests = f"{written[0]} WRITE request{'s' if written[0] != 1 else ''}"
            recorder.add("data", f"{written[1]} bytes written to {path} in {requests}")

    def _record_reply(self, recorder: transcript.Recorder, t: int, data: bytes) -> None:
        msg = paramiko.Message(data)
        num = msg.get_int()
        name, subject = self._asked.pop(num, ("?", ""))
        about = f"{name} {subject}".rstrip()
        if t == CMD_STATUS:
            code = msg.get_int()
            message = msg.get_text() if msg.get_remainder() else ""
            if name == "WRITE" and code == 0:
                return
            if name == "WRITE":
                self._summarise_writes(recorder, next((h for h, p in self._handles.items() if p == subject), b""))
            label = _STATUS[code] if code < len(_STATUS) else "status"
            recorder.add("status", f"{about}: {label} ({code}){': ' + message if message else ''}")
            if name == "CLOSE":
                for handle, path in list(self._handles.items()):
                    if path == subject:
                        del self._handles[handle]
        elif t == CMD_HANDLE:
            self._handles[msg.get_binary()] = subject
            recorder.add("status", f"{about}: handle")
        elif t == CMD_ATTRS:
            attributes = paramiko.SFTPAttributes._from_msg(msg)
            kind = ""
            if attributes.st_mode is not None:
                kind = ", folder" if attributes.st_mode & 0o170000 == 0o040000 else ", file"
            recorder.add("status", f"{about}: size {attributes.st_size}{kind}")
        elif t == CMD_NAME:
            count = msg.get_int()
            names = [msg.get_text() for _ in range(min(count, 1))]
            recorder.add("status", f"{about}: {', '.join(names)}{' ...' if count > 1 else ''}")
        elif t == CMD_DATA:
            recorder.add("status", f"{about}: {len(msg.get_binary())} bytes")
        else:
            recorder.add("status", f"{about}: reply type {t}")
