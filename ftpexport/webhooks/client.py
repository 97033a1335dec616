"""The webhooks' hardened HTTPS client: one POST of a notification, to an address netguard allowed.

SSRF: https only; the host is resolved once and every address it resolves to must be globally
routable unless the rule file says ``allow_private: true``; the connection goes to a checked address
(no second lookup that could answer differently), with the host name kept for SNI, certificate
and ``Host``; redirects are never followed. Every socket is registered in an ``Inflight`` (inflight.py) so that
a request overdue (three times its timeout) or under way when the notifier closes is cut.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import PermanentError, TransientError
from ..netguard import Resolver, checked_addresses
from ..rules import NotifySpec
from .inflight import Inflight, Interrupted


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a given address: no DNS lookup of its own; SNI, certificate check and Host use the host name."""

    def __init__(
        self, host: str, port: int, *, address: str, timeout: float, context: ssl.SSLContext, inflight: Inflight
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context
        self._inflight = inflight
        self.token: int | None = None

    def connect(self) -> None:
        family = socket.AF_INET6 if ":" in self._address else socket.AF_INET
        raw = socket.socket(family, socket.SOCK_STREAM)
        try:
            # registered before connecting: close() can cut a connect that a silent firewall holds up
            self.token = self._inflight.add(raw, time.monotonic() + 3 * (self.timeout or 10.0))
            raw.settimeout(self.timeout)
            raw.connect((self._address, self.port))
            self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self._inflight.replace(self.token, self.sock)  # the TLS socket took over the raw one's descriptor


@dataclass(frozen=True)
class Answer:
    """What the endpoint answered: its status, reason phrase (printable, short) and Retry-After seconds."""

    status: int
    reason: str
    retry_after: float | None


def post(
    spec: NotifySpec,
    body: bytes,
    headers: Callable[[], dict[str, str]],
    *,
    label: str,
    resolver: Resolver,
    inflight: Inflight,
    stopping: Callable[[], bool],
) -> Answer:
    """One POST of ``body`` to ``spec.url``; ``headers()`` makes the request's headers once the address is
    checked (a fresh timestamp). Raises TransientError / PermanentError, ``Interrupted`` when ``stopping()``."""
    host, port = spec.host, spec.port
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise TransientError(f"cannot resolve host {host}: {exc}", destination=label) from None
    addresses = checked_addresses(host, addresses, allow_private=spec.allow_private, label=label)
    try:
        context = ssl.create_default_context(cafile=str(spec.ca_file) if spec.ca_file else None)
    except OSError as exc:
        raise PermanentError(f"cannot read notify.ca_file {spec.ca_file}: {exc.strerror or exc}",
                             destination=label) from None  # fmt: skip
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    parts = urlsplit(spec.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request_headers = headers()
    connection = None
    errors = []
    for address in addresses:  # the first address that accepts the connection gets the request
        candidate = _PinnedHTTPSConnection(host, port, address=address, timeout=spec.timeout, context=context,
                                           inflight=inflight)  # fmt: skip
        try:
            candidate.connect()
        except OSError as exc:
            cut = inflight.done(candidate.token)
            candidate.close()
            if stopping():
                raise Interrupted(f"connecting to {host}", destination=label) from None
            errors.append(f"{address}: {_network_error(exc, spec, cut)}")
            if isinstance(exc, ssl.SSLError) or cut:
                break  # a TLS refusal is the endpoint's answer, not a dead address
            continue
        connection = candidate
        break
    if connection is None:
        raise TransientError(f"cannot reach {host}: {'; '.join(errors)}", destination=label)
    failure: BaseException | None = None
    try:
        connection.request("POST", target, body=body, headers=request_headers)
        response = connection.getresponse()
        # the reason phrase is the endpoint's text: printable and short before it reaches the ledger and logs
        reason = "".join(c for c in (response.reason or "")[:80] if c.isprintable())
        answer = Answer(response.status, reason, _seconds(response.getheader("Retry-After")))
    except (OSError, http.client.HTTPException) as exc:
        failure = exc
    finally:
        # a cut socket reads as the end of the answer: a cut request failed, whatever it read
        cut = inflight.done(connection.token)
        connection.close()
    if failure is None and not cut:
        return answer
    if stopping():
        raise Interrupted(f"waiting for {host}'s answer", destination=label)
    raise TransientError(f"{host}: {_network_error(failure, spec, cut)}", destination=label)


def _seconds(value: str | None) -> float | None:
    """A Retry-After header given in seconds; None for anything else."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _network_error(exc: BaseException | None, spec: NotifySpec, cut: bool) -> str:
    """A one-line reason for a failed request."""
    if cut:
        return f"no complete answer within {3 * spec.timeout:g} s; the request was cut"
    if isinstance(exc, ssl.SSLCertVerificationError):
        hint = "" if spec.ca_file else "; set notify.ca_file if the endpoint uses a private CA"
        return f"TLS certificate refused: {exc.verify_message}{hint}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {spec.timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the endpoint closed the connection without answering"
    if isinstance(exc, http.client.HTTPException):
        return f"not a valid HTTP answer: {type(exc).__name__}"
    return f"network error: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
