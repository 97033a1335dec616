"""Publishing: one package over one connection, journalled so that a killed process never sends twice.

The crash journal lives here, whole. Each file of a delivery is uploaded under a hidden temporary
name, its size checked, then renamed to its final name (``transport.upload_file``). Around that
rename the journal (the ledger's ``files`` rows of the delivery, written through ``JournalStore``)
records:

- ``renaming`` just before the rename (``upload_file``'s ``before_rename`` hook): from here on the
  final name may exist on the server;
- ``published`` once the rename is done (or the file was written under its final name), written in
  the same transaction as the next file's ``renaming``: one journal transaction a file. The last
  file of an attempt stays ``renaming``: the delivery's success, committed next, says the rest;
  after a kill before that commit, the next attempt asks the server about that one file;
- nothing, again, when the server answered that it refused the rename: the entry is dropped, so
  that the journal never claims a rename that did not happen.

The next attempt of the same delivery (the same process retrying, or the next run after a kill)
reads the journal first: a ``published`` file is not sent again; a ``renaming`` one is resolved
from the server by ``resume_rename`` (temporary file gone: the rename happened; there with the full
size: rename it now; there but short: send it again). The done marker goes last, and only when
something new arrived.

The ledger only stores the rows (``mark_files``, ``forget_file``, ``file_states``); what they mean
and when they are written is decided here.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Mapping
from typing import Protocol

from .errors import TransportError
from .ledger import FileState
from .package import Artifact, Package
from .transport import Transport, Upload, upload_file
from .transport.base import IfExists, temporary_name

log = logging.getLogger(__name__)


class JournalStore(Protocol):
    """Where the journal of each delivery is kept (the ledger)."""

    def file_states(self, delivery_id: int) -> dict[str, FileState]: ...

    def mark_files(self, delivery_id: int, states: Mapping[str, FileState]) -> None: ...

    def forget_file(self, delivery_id: int, remote_path: str) -> None: ...


def publish(
    transport: Transport,
    package: Package,
    remote_dir: str,
    *,
    journal: JournalStore,
    delivery_id: int,
    atomic: bool,
    if_exists: IfExists,
    callback: Callable[[int], None] | None = None,
) -> list[Upload]:
    """Upload the files of ``package`` into ``remote_dir``, then its done marker; one ``Upload`` each.

    Files that an interrupted attempt of this delivery published already are not sent again (their
    ``Upload`` has the local size and is not ``skipped``). The done marker is sent only when some
    file was not skipped (``if_exists: skip``).
    """
    states = journal.file_states(delivery_id)
    if remote_dir:
        transport.makedirs(remote_dir)
    uploads: list[Upload] = []
    skipped = True
    artifacts: list[tuple[Artifact, IfExists]] = [(a, if_exists) for a in package.files]
    if package.done_marker:
        artifacts.append((package.done_marker, "overwrite"))
    journalled: list[str] = []  # the file of this iteration, once journalled as "renaming"
    renamed: list[str] = []  # the file renamed last, journalled "published" with the next "renaming"

    def before_rename(path: str) -> None:
        states: dict[str, FileState] = dict.fromkeys(renamed, "published")
        states[path] = "renaming"
        journal.mark_files(delivery_id, states)
        renamed.clear()
        journalled.append(path)

    for artifact, if_exists_here in artifacts:
        if artifact is package.done_marker and skipped:
            break  # nothing new arrived: no new done marker either
        final = posixpath.join(remote_dir, artifact.name)
        if _published_before(transport, states.get(final), remote_dir, artifact, atomic=atomic):
            uploads.append(Upload(final, artifact.size))
            skipped = False
            continue
        journalled.clear()
        try:
            upload = upload_file(
                transport,
                artifact.open,
                artifact.size,
                remote_dir,
                artifact.name,
                atomic=atomic,
                if_exists=if_exists_here,
                callback=callback,
                before_rename=before_rename,
            )
        except TransportError as exc:
            if journalled and not exc.retriable:
                # the server answered that it did not rename: the journal must not claim it may have
                journal.forget_file(delivery_id, journalled[0])
            raise
        if not upload.skipped:
            renamed[:] = [final]
        uploads.append(upload)
        skipped = skipped and upload.skipped
    return uploads


def _published_before(
    transport: Transport, state: FileState | None, remote_dir: str, artifact: Artifact, *, atomic: bool
) -> bool:
    if state == "published":
        return True
    if state == "renaming":
        # killed between the journal entry and the end of the rename: the server knows which
        return not atomic or resume_rename(transport, remote_dir, artifact.name, artifact.size)
    return False


def resume_rename(transport: Transport, remote_dir: str, name: str, size: int) -> bool:
    """Finish the rename of an attempt that stopped between "renaming" and "published".

    The temporary file exists only until the rename, so: still there with the full size, rename
    it now; gone, the rename happened (the DMS may have taken the file since). Returns False only
    when the temporary file is there but incomplete, and the file must be sent again.
    """
    final = posixpath.join(remote_dir, name)
    temporary = posixpath.join(remote_dir, temporary_name(name))
    remote = transport.size(temporary)
    if remote is None:
        log.info("the interrupted rename had happened; not sending again", extra={"remote_path": final})
        return True
    if remote != size:
        return False
    log.info("finishing an interrupted rename", extra={"remote_path": final})
    transport.rename(temporary, final)
    return True
