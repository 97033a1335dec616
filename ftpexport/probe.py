"""``ftpexport test-connection``: connect, write, rename and remove a probe file, step by step.

Each step is timed and reported on its own, so an operator sees where a destination fails
(network, TLS or host key, login, folder, write permission, rename, delete). For SFTP the server
key fingerprint is reported even when the key is refused, so that it can be checked and pinned.

Then what the server does is learned (``learn_server``): FEAT or the SFTP extensions, whether a
rename may replace an existing file, whether MKD of an existing folder fails, and how many sessions
it accepts at once, up to a bound (every session opened is closed again).
"""

from __future__ import annotations

import contextlib
import io
import logging
import posixpath
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import FtpexportError, TooManySessionsError, TransportError
from .secret import redact
from .transport import Endpoint, Transport, open_transport
from .transport.capabilities import ServerCapabilities
from .transport.ssh_policy import legacy_warning

log = logging.getLogger(__name__)

PROBE_CONTENT = b"ftpexport connection test: this file is deleted right away\n"


@dataclass
class Step:
    """One step of a probe: its name, whether it worked, how long it took, and why not."""

    name: str
    ok: bool
    ms: int
    detail: str | None = None


@dataclass
class ProbeReport:
    """Everything one destination's probe found out."""

    destination: str
    url: str
    remote_dir: str
    steps: list[Step] = field(default_factory=list)
    fingerprint: str | None = None
    host_key: str | None = None
    #: risks found on the way, e.g. a legacy SSH algorithm in use
    warnings: list[str] = field(default_factory=list)
    #: what the server was found to do; None when the probe could not log in
    capabilities: ServerCapabilities | None = None
    #: where what was learned is kept (the ledger), or why it is not
    kept: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "url": self.url,
            "remote_dir": self.remote_dir,
            "ok": self.ok,
            "fingerprint": self.fingerprint,
            "host_key": self.host_key,
            "warnings": self.warnings,
            "steps": [step.__dict__ for step in self.steps],
            "capabilities": self.capabilities.as_dict() if self.capabilities is not None else None,
            "kept": self.kept,
        }


def probe(
    endpoint: Endpoint,
    remote_dir: str,
    *,
    url: str,
    sessions: int = 2,
    transport_factory: Callable[[Endpoint], Transport] = open_transport,
) -> ProbeReport:
    """Connect to ``endpoint``, create ``remote_dir``, write, check, rename and delete a probe file there;
    then learn what the server does, trying up to ``sessions`` sessions at once."""
    report = ProbeReport(destination=endpoint.display, url=url, remote_dir=remote_dir or ".")
    name = f".ftpexport-probe-{secrets.token_hex(4)}"
    final = posixpath.join(remote_dir, name)
    temporary = posixpath.join(remote_dir, f"{name}.part")
    transport = transport_factory(endpoint)

    def step(title: str, action: Callable[[], str | None]) -> bool:
        started = time.monotonic()
        try:
            detail = action()
        except FtpexportError as exc:
            message = exc.reason if isinstance(exc, TransportError) else str(exc)
            report.steps.append(Step(title, False, _ms(started), redact(message)))
            return False
        report.steps.append(Step(title, True, _ms(started), detail))
        return True

    def write() -> str:
        sent = transport.put(io.BytesIO(PROBE_CONTENT), temporary)
        return f"{sent} bytes to {temporary}"

    def check_size() -> str:
        size = transport.size(temporary)
        if size is None:
            return "the server does not report sizes (SIZE); size not checked"
        if size != len(PROBE_CONTENT):
            raise TransportError(f"the server has {size} bytes, expected {len(PROBE_CONTENT)}", path=temporary)
        return f"{size} bytes"

    try:
        connected = step("connect and log in", lambda: _connect(transport))
        report.fingerprint = transport.server_fingerprint
        report.host_key = _host_key_line(transport)
        if not connected:
            return report
        report.warnings += _legacy_warnings(endpoint, transport)
        steps: list[tuple[str, Callable[[], str | None]]] = [
            ("create the folder", lambda: (transport.makedirs(remote_dir), report.remote_dir)[1]),
            ("write a file", write),
            ("check its size", check_size),
            ("rename it", lambda: (transport.rename(temporary, final), f"{temporary} -> {final}")[1]),
            ("delete it", lambda: (transport.remove(final), final)[1]),
        ]
        for title, action in steps:
            if not step(title, action):
                _clean_up(transport, temporary, final)
                break
        folder_made = len(report.steps) > 1 and report.steps[1].ok
        try:
            report.capabilities = learn_server(transport, endpoint, remote_dir if folder_made else None,
                                               sessions=sessions, transport_factory=transport_factory)  # fmt: skip
        except FtpexportError as exc:
            message = exc.reason if isinstance(exc, TransportError) else str(exc)
            report.warnings.append(redact(f"could not learn what the server does: {message}"))
    finally:
        transport.close()
    return report


def learn_server(
    transport: Transport,
    endpoint: Endpoint,
    folder: str | None,
    *,
    sessions: int,
    transport_factory: Callable[[Endpoint], Transport] = open_transport,
) -> ServerCapabilities:
    """Everything the probe learns of a server over the connected ``transport`` (which has tried a
    rename already): FEAT or the SFTP extensions; with ``folder`` (it exists), whether a rename
    replaces an existing file and whether making that folder again fails; and how many sessions the
    server accepts at once, ``transport``'s included, up to ``sessions``."""
    transport.learn()
    known = transport.known
    if folder is not None:
        if known.rename:
            known.rename_replaces = _rename_replaces(transport, folder)
        known.mkdir_existing_fails = transport.mkdir_existing_fails(folder)
    opened: list[Transport] = []
    try:
        for _ in range(sessions - 1):
            another = transport_factory(endpoint)
            try:
                another.connect()
            except TooManySessionsError:
                another.close()
                known.sessions = 1 + len(opened)
                break
            except TransportError as exc:  # not a refusal of one more session: nothing learned of the limit
                another.close()
                log.info("a session of the probe failed: %s", exc.reason, extra={"destination": endpoint.display})
                break
            opened.append(another)
        else:
            known.sessions_tried = sessions
    finally:
        for another in opened:
            another.close()
    return known


def _rename_replaces(transport: Transport, folder: str) -> bool | None:
    """Rename a probe file onto another: True when it replaced it, False when it had to be deleted first."""
    name = f".ftpexport-probe-{secrets.token_hex(4)}"
    target, source = posixpath.join(folder, name), posixpath.join(folder, f"{name}.part")
    transport.known.rename_replaces = None
    try:
        transport.put(io.BytesIO(b"old\n"), target)
        transport.put(io.BytesIO(PROBE_CONTENT), source)
        transport.rename(source, target)
        replaced = transport.known.rename_replaces is not False
    finally:
        _clean_up(transport, source, target)
    return replaced


def _connect(transport: Transport) -> str:
    transport.connect()
    fingerprint = transport.server_fingerprint
    return f"server key {fingerprint}" if fingerprint else "logged in"


def _legacy_warnings(endpoint: Endpoint, transport: Transport) -> list[str]:
    """A warning for each legacy SSH algorithm the connection uses, and for each named one it does not need."""
    in_use = transport.legacy_in_use
    warnings = [f"in use: {legacy_warning(name)}" for name in in_use]
    warnings += [
        f"ssh_legacy_algorithms names {name}, which this server did not need: remove it if the server offers "
        "a modern one for good"
        for name in endpoint.ssh_legacy_algorithms
        if name not in in_use
    ]
    return warnings


def _host_key_line(transport: Transport) -> str | None:
    return transport.server_key_line


def _clean_up(transport: Transport, *paths: str) -> None:
    """Best effort: leave no probe file behind after a failed step."""
    for path in paths:
        with contextlib.suppress(FtpexportError):
            transport.remove(path)


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
