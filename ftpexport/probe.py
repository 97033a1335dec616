"""``ftpexport test-connection``: connect, write, rename and remove a probe file, step by step.

Each step is timed and reported on its own, so an operator sees where a destination fails
(network, TLS or host key, login, folder, write permission, rename, delete). For SFTP the server
key fingerprint is reported even when the key is refused, so that it can be checked and pinned.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import FtpexportError, TransportError
from .secret import redact
from .transport import Endpoint, Transport, open_transport
from .transport.ssh_policy import legacy_warning

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
        }


def probe(endpoint: Endpoint, remote_dir: str, *, url: str) -> ProbeReport:
    """Connect to ``endpoint``, create ``remote_dir``, write, check, rename and delete a probe file there."""
    report = ProbeReport(destination=endpoint.display, url=url, remote_dir=remote_dir or ".")
    name = f".ftpexport-probe-{secrets.token_hex(4)}"
    final = posixpath.join(remote_dir, name)
    temporary = posixpath.join(remote_dir, f"{name}.part")
    transport = open_transport(endpoint)

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
    finally:
        transport.close()
    return report


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
