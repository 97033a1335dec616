"""Renaming a file into place over SFTP, for ``SFTPTransport``: with replace (posix-rename@openssh.com)
where the server has it, else a plain rename, else deleting the target first (and so from then on);
a server that does not rename at all is refused, and the error says so; what happened is noted in
``known``.

``SFTPRenames`` holds SFTPTransport's ``rename`` and the plain rename behind it; SFTPTransport inherits them.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

from .base import Endpoint, rename_refused
from .capabilities import ServerCapabilities
from .sftp_capabilities import SFTPClient
from .sftp_errors import map_errors

#: the transport's logger: what a rename logs comes from ``transport.sftp``, like the rest of SFTPTransport
log = logging.getLogger("ftpexport.transport.sftp")


class SFTPRenames:
    """An ``SFTPTransport``'s renames (see ``transport.sftp``)."""

    endpoint: Endpoint
    known: ServerCapabilities
    sftp: SFTPClient
    _known_size: tuple[str, int] | None
    size: Callable[[str], int | None]
    remove: Callable[[str], None]

    def rename(self, source: str, target: str) -> None:
        """Rename with replace (posix-rename@openssh.com), else a plain rename, else delete ``target`` and rename.

        A plain rename refused as "permission denied", or refused while ``target`` does not exist, is
        a server that does not rename (OpenSSH ``sftp-server -P rename,posix-rename``): ``target``
        is left alone and the error says so. What is known decides the first request: no
        posix-rename on a server that does not list it; on a server known not to replace on rename,
        ``target`` is deleted first. What happened is noted in ``known``.
        """
        self._known_size = None
        known = self.known
        with map_errors(self.endpoint, target, phase="rename"):
            if known.rename_replaces is False:
                self.remove(target)
                self._plain_rename(source, target)
                return
            if known.posix_rename is not False:
                try:
                    self.sftp.posix_rename(source, target)
                    known.rename = known.rename_replaces = True
                    return
                except OSError as exc:
                    if exc.errno == errno.ENOENT:
                        raise
                    log.debug("posix-rename refused (%s); trying a plain rename", exc, extra={"remote_path": target})
            try:
                # Servers without the OpenSSH extension: plain SFTP rename, which never replaces.
                self.sftp.rename(source, target)
                known.rename = True
                return
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise
                if exc.errno in (errno.EACCES, errno.EPERM) or self.size(target) is None:
                    known.rename = False
                    raise rename_refused(source, target, exc.strerror or str(exc)) from exc
            log.info("the server does not replace a file on rename: the file is deleted first from now on",
                     extra={"destination": self.endpoint.display, "remote_path": target})  # fmt: skip
            known.rename_replaces = False
            self.remove(target)
            self._plain_rename(source, target)

    def _plain_rename(self, source: str, target: str) -> None:
        """A plain SFTP rename onto a ``target`` that is not there; refused: a server that does not rename."""
        try:
            self.sftp.rename(source, target)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise
            self.known.rename = False
            raise rename_refused(source, target, exc.strerror or str(exc)) from exc
        self.known.rename = True
