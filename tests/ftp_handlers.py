"""pyftpdlib handler overrides for ``servers.pyftpdlib_server(scheme, **attributes)``: servers that count
what they receive, kill on a rename, throttle, fail on purpose or run out of quota.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any


class FtpSpy:
    """Handler attributes for ``servers.pyftpdlib_server`` counting STORs and successful RNTOs per path.

    Paths are the server's local paths (pyftpdlib hands its commands file system paths).
    ``kill_on_rename(name, pid)`` makes the server SIGKILL ``pid`` right after it renamed a file
    to ``name``: the rename is done on the server, the client never learns it.
    """

    def __init__(self, **extra: Any) -> None:
        self.stores: Counter[str] = Counter()
        self.renames: Counter[str] = Counter()
        self.kills: list[str] = []
        self._kill: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self.extra = extra

    def kill_on_rename(self, name: str, pid: int) -> None:
        with self._lock:
            self._kill = (name, pid)

    def attributes(self) -> dict[str, Any]:
        from pyftpdlib.handlers import FTPHandler

        spy = self

        def ftp_STOR(handler: Any, file: str, mode: str = "w") -> Any:
            with spy._lock:
                spy.stores[file] += 1
            return FTPHandler.ftp_STOR(handler, file, mode)

        def ftp_RNTO(handler: Any, path: str) -> Any:
            with spy._lock:
                kill = spy._kill if spy._kill is not None and Path(path).name == spy._kill[0] else None
            if kill is not None:
                # Kill once the file is renamed but before the client reads "250": it must not
                # have a chance to journal the rename.
                def respond(resp: str, *args: Any, **kwargs: Any) -> None:
                    if resp.startswith("250"):
                        with spy._lock:
                            spy._kill = None
                            spy.kills.append(path)
                        os.kill(kill[1], signal.SIGKILL)
                    FTPHandler.respond(handler, resp, *args, **kwargs)

                handler.respond = respond
            try:
                result = FTPHandler.ftp_RNTO(handler, path)
            finally:
                handler.__dict__.pop("respond", None)
            if result:  # (source, target) when the file was renamed
                with spy._lock:
                    spy.renames[path] += 1
            return result

        return {"ftp_STOR": ftp_STOR, "ftp_RNTO": ftp_RNTO, **self.extra}

    def stored(self, root: Path) -> Counter[str]:
        """STOR count per path relative to ``root``."""
        with self._lock:
            return Counter({str(Path(k).relative_to(root)): v for k, v in self.stores.items()})

    def renamed(self, root: Path) -> Counter[str]:
        """Successful RNTO count per target path relative to ``root``."""
        with self._lock:
            return Counter({str(Path(k).relative_to(root)): v for k, v in self.renames.items()})


def throttled_dtp(bytes_per_second: int) -> type:
    """A pyftpdlib data channel handler that receives at most ``bytes_per_second``."""
    from pyftpdlib.handlers import ThrottledDTPHandler

    return type("TestThrottledDTPHandler", (ThrottledDTPHandler,), {"read_limit": bytes_per_second})


class ServerEvents:
    """What a misbehaving pyftpdlib server saw, shared by all its connections (thread-safe counts)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, event: str) -> int:
        with self._lock:
            self._counts[event] += 1
            return self._counts[event]

    def __getitem__(self, event: str) -> int:
        with self._lock:
            return self._counts[event]


def counting_handler(
    events: ServerEvents,
    *,
    stor_reply: Callable[[int], str | None] | None = None,
    rnto_reply: str | None = None,
    mkd_reply: str | None = None,
) -> dict[str, Any]:
    """Handler attributes for ``servers.pyftpdlib_server("ftp", **attributes)``.

    Counts ``login``, ``login_failed``, ``STOR``, ``RNTO`` and ``MKD`` in ``events``. ``stor_reply(n)``
    is asked for the n-th STOR (1-based, over all connections): a reply line answers it instead of
    storing, None stores normally. ``rnto_reply`` / ``mkd_reply`` answer every RNTO / MKD.
    """
    from pyftpdlib.handlers import FTPHandler

    def on_login(self: FTPHandler, username: str) -> None:
        events.add("login")

    def on_login_failed(self: FTPHandler, username: str, password: str) -> None:
        events.add("login_failed")

    def ftp_STOR(self: FTPHandler, file: str, mode: str = "w") -> str | None:
        n = events.add("STOR")
        reply = stor_reply(n) if stor_reply is not None else None
        if reply is not None:
            self.respond(reply)
            return None
        return FTPHandler.ftp_STOR(self, file, mode)

    def ftp_RNTO(self: FTPHandler, path: str) -> tuple[str, str] | None:
        events.add("RNTO")
        if rnto_reply is not None:
            self._rnfr = None
            self.respond(rnto_reply)
            return None
        return FTPHandler.ftp_RNTO(self, path)

    def ftp_MKD(self: FTPHandler, path: str) -> str | None:
        events.add("MKD")
        if mkd_reply is not None:
            self.respond(mkd_reply)
            return None
        return FTPHandler.ftp_MKD(self, path)

    return {
        "on_login": on_login,
        "on_login_failed": on_login_failed,
        "ftp_STOR": ftp_STOR,
        "ftp_RNTO": ftp_RNTO,
        "ftp_MKD": ftp_MKD,
    }


def quota_dtp_handler(limit: int) -> type:
    """A pyftpdlib data handler that stops a STOR once more than ``limit`` bytes arrived, the way a
    server with a quota does: it closes the data connection and answers 552 (the partial file stays).

    Use it as ``pyftpdlib_server("ftp", dtp_handler=quota_dtp_handler(limit))``.
    """
    from pyftpdlib.handlers import DTPHandler

    class QuotaDTPHandler(DTPHandler):
        def handle_read(self) -> None:
            super().handle_read()
            if self.receive and not self._closed and self.tot_bytes_received > limit:
                self._resp = ("552 Disk quota exceeded.", lambda *args, **kwargs: None)
                self.close()

        handle_read_event = handle_read  # DTPHandler calls this alias of its own handle_read

    return QuotaDTPHandler
