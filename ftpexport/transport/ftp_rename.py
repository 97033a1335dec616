"""Renaming a file into place over FTP (RNFR/RNTO), for ``FTPTransport``: onto a target the server
will not replace (deleted first, and so from then on), and on a server that does not rename at all
(refused, and the error says so); what happened is noted in ``known``.

RNFR and RNTO go in one write and their two replies are read after: one round trip a file instead
of two. The server answers commands in order, so an RNTO it receives after refusing the RNFR is
refused too (503, bad sequence: nothing renamed); that reply is read and the RNFR's refusal raised.
RFC 959 asks clients to wait for each reply, and a few servers and firewalls (Cisco's strict FTP
inspection) do not take a second command before the first is answered: an RNTO answered "not
understood" or "bad sequence" after an accepted RNFR, or a reply or connection lost after the
two, is noted (``known.pipelining`` False, kept in the ledger) and that server is then asked one
command at a time; a refused RNTO is renamed again that way at once.

``FTPRenames`` holds FTPTransport's ``rename`` and the steps behind it; FTPTransport inherits them.
"""

from __future__ import annotations

import contextlib
import ftplib
import logging
from collections.abc import Callable

from ..errors import TransientError
from .base import Endpoint, rename_refused
from .capabilities import ServerCapabilities
from .ftp_errors import map_errors, reply_code

#: replies to an RNTO that say it was not understood or came out of sequence (not a refusal of the name)
_NOT_UNDERSTOOD = frozenset({"500", "501", "502", "503"})

#: the transport's logger: what a rename logs comes from ``transport.ftp``, like the rest of FTPTransport
log = logging.getLogger("ftpexport.transport.ftp")


class FTPRenames:
    """An ``FTPTransport``'s renames (see ``transport.ftp``)."""

    endpoint: Endpoint
    known: ServerCapabilities
    ftp: ftplib.FTP
    size: Callable[[str], int | None]
    #: False while a reply may be owed on the control connection (see ``FTPTransport.usable_after_error``)
    _in_sync: bool

    def rename(self, source: str, target: str) -> None:
        """RNFR/RNTO; if the server will not replace ``target``, delete it and rename again.

        A refused RNFR, or an RNTO refused while ``target`` does not exist, is a server that does
        not rename (Pure-FTPd ``--norename``): ``target`` is left alone and the error says so. On a
        server known not to replace on rename (``known.rename_replaces``), ``target`` is deleted
        first, without an RNTO refused first. What happened is noted in ``known``.
        """
        ftp = self.ftp
        known = self.known
        with map_errors(self.endpoint, target, phase="rename"):
            if known.rename_replaces is False:
                with contextlib.suppress(ftplib.error_perm):  # 550: there is no such file to replace
                    ftp.delete(target)
                self._rename_once(source, target)
                return
            try:
                self._rnfr_rnto(source, target)
                known.rename = True
                return
            except ftplib.error_perm as exc:
                # Some servers (IIS, some embedded ones) refuse to overwrite on rename.
                if self.size(target) is None:
                    known.rename = False
                    raise rename_refused(source, target, str(exc).strip()) from exc
            log.info("the server does not replace a file on rename: the file is deleted first from now on",
                     extra={"destination": self.endpoint.display, "remote_path": target})  # fmt: skip
            known.rename_replaces = False
            ftp.delete(target)
            self._rename_once(source, target)

    def _rnfr_rnto(self, source: str, target: str) -> None:
        """RNFR then RNTO: a refused RNFR raises ``rename_refused``, a refused RNTO its ``error_perm``.

        Sent together and their replies read after, unless the server is known not to take that
        (``known.pipelining`` False): then each waits for its reply, as RFC 959 has it.
        """
        if self.known.pipelining is False:
            self._rnfr(source, target)
            self.ftp.voidcmd(f"RNTO {target}")
            return
        ftp = self.ftp
        self._in_sync = False  # two replies owed
        try:
            ftp.putcmds(f"RNFR {source}", f"RNTO {target}")  # type: ignore[attr-defined]
            reply = ftp.getresp()
        except ftplib.error_perm as exc:
            self._drop_reply()
            self.known.rename = False
            raise rename_refused(source, target, str(exc).strip()) from exc
        except ftplib.Error:
            self._drop_reply()
            raise
        except (OSError, EOFError):
            self._not_pipelined("no reply to RNFR and RNTO sent together")
            raise
        if not reply.startswith("3"):
            self._drop_reply()
            raise TransientError(f"unexpected reply from the server to RNFR: {reply.strip()}")
        try:
            ftp.voidresp()
        except ftplib.error_perm as exc:
            self._in_sync = True  # the RNTO's refusal, read
            if reply_code(exc) not in _NOT_UNDERSTOOD:
                raise
            # accepted RNFR, then "not understood" or "bad sequence": the RNTO came too early for it
            self._not_pipelined(f"the RNTO sent with the RNFR was answered {str(exc).strip()}")
            self._rnfr_rnto(source, target)
            return
        except ftplib.Error:
            self._in_sync = True
            raise
        except (OSError, EOFError):
            self._not_pipelined("no reply to the RNTO sent with the RNFR")
            raise
        self._in_sync = True
        self.known.pipelining = True

    def _not_pipelined(self, what: str) -> None:
        """Note that this server is asked one command at a time from now on."""
        if self.known.pipelining is not False:
            log.info("%s: commands wait for each reply on this server from now on", what,
                     extra={"destination": self.endpoint.display})  # fmt: skip
        self.known.pipelining = False

    def _drop_reply(self) -> None:
        """Read the RNTO's reply to an RNFR that failed (a refusal: nothing was renamed). If none
        can be read, the connection stays out of step and is not used again; the RNFR's error stands."""
        try:
            self.ftp.getresp()
        except ftplib.Error:
            pass
        except (OSError, EOFError) as exc:
            log.debug("no reply to the RNTO after a failed RNFR: %r", exc, extra={"destination": self.endpoint.display})
            self._not_pipelined("no reply to the RNTO sent with a refused RNFR")
            return
        self._in_sync = True

    def _rnfr(self, source: str, target: str) -> None:
        """RNFR alone (one command at a time)."""
        try:
            reply = self.ftp.sendcmd(f"RNFR {source}")
        except ftplib.error_perm as exc:
            self.known.rename = False
            raise rename_refused(source, target, str(exc).strip()) from exc
        if not reply.startswith("3"):
            raise TransientError(f"unexpected reply from the server to RNFR: {reply.strip()}")

    def _rename_once(self, source: str, target: str) -> None:
        """RNFR/RNTO onto a ``target`` that is not there; refused: a server that does not rename."""
        try:
            self._rnfr_rnto(source, target)
        except ftplib.error_perm as exc:
            self.known.rename = False
            raise rename_refused(source, target, str(exc).strip()) from exc
        self.known.rename = True
