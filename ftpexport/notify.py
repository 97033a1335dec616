"""Client webhooks: a signed JSON POST (Standard Webhooks) when a vehicle is delivered or finally fails.

The exporter's workers only write the notification to the ledger's outbox (``Notifier.outcome``,
one insert) and wake the sender: a webhook never holds up an upload. A scheduler thread takes the
due notifications from the ledger, those an earlier process left pending too, and hands them to a
few sender threads, one request at a time per endpoint, so a dead endpoint ties up one sender at
most. A failed request is tried again after an exponential backoff with jitter, up to ``attempts``
times: same ``webhook-id`` every time, fresh ``webhook-timestamp`` and signature. Every attempt is
recorded in the ledger (status code or error); what is left at ``close`` stays pending there.

Signing (https://www.standardwebhooks.com): HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}``
with the base64-decoded part of the client's ``whsec_...`` secret, sent as ``webhook-signature: v1,<base64>``.

SSRF: https only; the host is resolved once and every address it resolves to must be globally
routable unless the rule file says ``allow_private: true``; the connection goes to a checked address
(no second lookup that could answer differently), with the host name kept for SNI, certificate
and ``Host``; redirects are never followed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import heapq
import hmac
import http.client
import ipaddress
import json
import logging
import random
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from . import __version__
from .errors import ConfigError, FtpexportError, PermanentError, TransientError, TransportError
from .events import Observer, Outcome
from .ledger import Ledger, now
from .outbox import waiting_message
from .rules import NotifySpec, RuleSet, address_refusal, private_hint
from .secret import SecretSource, redact

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every Standard Webhooks secret, not one
#: the outcome results that make a notification, and the event each one is
EVENTS = {"delivered": "vehicle.delivered", "failed": "vehicle.failed"}
#: answers of the endpoint that say "never try again"
_GONE = 410
#: answers whose Retry-After header is honoured (up to ``max_backoff``)
_RETRY_AFTER = (429, 503)

#: seconds ``close`` waits before it says what it waits for (the last notifications usually go out within it)
_QUIET = 1.0

#: ``resolver(host, port)``: the addresses of a host, as text (``socket.getaddrinfo`` by default)
Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class NotifySettings:
    """How patiently webhooks are retried and how long ``close`` waits for them."""

    #: first delay before a retry, in seconds; doubled at each attempt, with jitter, up to ``max_backoff``
    backoff: float = 10.0
    max_backoff: float = 3600.0
    #: attempts of one notification before it is failed for good
    attempts: int = 12
    #: requests sent at once, over all endpoints (one at a time per endpoint)
    workers: int = 4
    #: seconds between two looks at the ledger for due notifications (a new outcome wakes it at once)
    poll: float = 5.0
    #: seconds ``close()`` lets due notifications go out before it stops (the rest stays pending)
    close_wait: float = 10.0
    #: notifications read from the ledger per look
    batch: int = 500


# --- signing (Standard Webhooks)


def signing_key(secret: SecretStr, where: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ``where`` names the rule file field in the error."""
    text = secret.get_secret_value().strip()
    hint = "store a secret of the form whsec_<base64 of 24 to 64 random bytes> (the endpoint's owner gives it)"
    if not text.startswith(SECRET_PREFIX):
        raise ConfigError(f"{where}: the webhook secret does not start with {SECRET_PREFIX}", hint=hint)
    encoded = text[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: the webhook secret after {SECRET_PREFIX} is not base64", hint=hint) from None
    if not 24 <= len(key) <= 64:
        raise ConfigError(f"{where}: the webhook secret holds {len(key)} bytes, not 24 to 64", hint=hint)
    return key


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``."""
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def webhook_headers(key: bytes, webhook_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers of one attempt: content type, ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": f"ftpexport/{__version__}",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(key, webhook_id, stamp, body),
    }


# --- the payload


def payload(outcome: Outcome, ledger: Ledger | None = None) -> dict[str, Any]:
    """The JSON document of an outcome: ``{"type", "timestamp", "data": {...}}``.

    The delivery's ledger row, when there is one, gives the remote paths, bytes, correlation id and
    time: the webhook says exactly what the ledger says.
    """
    event = EVENTS[outcome.result]
    remote_paths, size = list(outcome.remote_paths), outcome.bytes
    correlation_id, attempts, error = outcome.correlation_id, outcome.attempts, outcome.error
    at = outcome.finished_at or now()
    if ledger is not None and outcome.delivery_id is not None:
        row = ledger.get(outcome.delivery_id)
        remote_paths, size, correlation_id = list(row.remote_paths), row.bytes, row.correlation_id
        attempts, error = row.attempts, row.last_error or error
        at = (row.delivered_at if outcome.result == "delivered" else row.updated_at) or at
    data: dict[str, Any] = {
        "record_id": outcome.record_id,
        "vin": outcome.vin,
        "client_id": outcome.client_id,
        "user_id": outcome.user_id,
        "destination": outcome.destination,
        "remote_paths": remote_paths if outcome.result == "delivered" else [],
        "bytes": size if outcome.result == "delivered" else 0,
        "delivered_at" if outcome.result == "delivered" else "failed_at": at,
        "attempts": attempts,
        "correlation_id": correlation_id,
    }
    if outcome.result == "failed":
        data["error"] = redact(error or "")
    return {"type": event, "timestamp": at, "data": data}


def encode(document: dict[str, Any]) -> str:
    """The exact body that is stored, signed and sent."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


# --- where a request may go (SSRF)


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order, each once."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def checked_addresses(host: str, addresses: list[str], *, allow_private: bool, label: str) -> list[str]:
    """``addresses`` if every one of them may be called; raises ``PermanentError`` saying which may not."""
    if not addresses:
        raise TransientError(f"host {host} resolves to no address", destination=label)
    if allow_private:
        return addresses
    for text in addresses:
        reason = address_refusal(ipaddress.ip_address(text))
        if reason is not None:
            raise PermanentError(
                f"refused: host {host} resolves to {text}, a {reason} address; webhooks to private, loopback, "
                "link-local and reserved addresses are refused (they could reach internal services)",
                destination=label,
                hint=private_hint("the notify block of the rule file"),
            )
    return addresses


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a given address: no DNS lookup of its own; SNI, certificate check and Host use the host name."""

    def __init__(
        self, host: str, port: int, *, address: str, timeout: float, context: ssl.SSLContext, inflight: _Inflight
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


class _Inflight:
    """The sockets of the requests under way, to cut the overdue ones and every one at ``close``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: dict[int, tuple[socket.socket, float]] = {}
        self._cut: set[int] = set()
        self._next = 0
        #: cut() without a deadline was called: no new connection
        self._closed = False

    def add(self, sock: socket.socket, deadline: float) -> int:
        with self._lock:
            if self._closed:
                raise OSError("ftpexport is stopping")
            self._next += 1
            self._sockets[self._next] = (sock, deadline)
            return self._next

    def replace(self, token: int, sock: socket.socket) -> None:
        with self._lock:
            if token in self._sockets:
                self._sockets[token] = (sock, self._sockets[token][1])

    def done(self, token: int | None) -> bool:
        """Forget a socket; True when it was cut (overdue or closing)."""
        with self._lock:
            self._sockets.pop(token or 0, None)
            cut = (token or 0) in self._cut
            self._cut.discard(token or 0)
            return cut

    def cut(self, *, overdue_at: float | None = None) -> float | None:
        """Cut every socket (or the ones past their deadline at ``overdue_at``); returns the next deadline."""
        with self._lock:
            self._closed = self._closed or overdue_at is None
            victims = [
                (token, sock)
                for token, (sock, deadline) in self._sockets.items()
                if overdue_at is None or deadline <= overdue_at
            ]
            self._cut.update(token for token, _ in victims)
            remaining = [deadline for token, (_, deadline) in self._sockets.items() if token not in self._cut]
        for _, sock in victims:
            with contextlib.suppress(OSError):  # closed already
                # the plain socket's shutdown, also for a TLS socket: the thread reading it gets an error at once
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        return min(remaining, default=None)


class _Interrupted(TransientError):
    """A request cut by ``close``: it stays pending, due at once, without using up an attempt's budget."""


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    retry_after: float | None


# --- the notifier


class Notifier(Observer):
    """Queues a notification for each delivered or finally failed vehicle of a client with ``notify:``,
    and sends the ledger's due notifications from its own threads until ``close``.

    ``ruleset`` is the rules in force, assigned anew when they are reloaded (watch), as the
    exporter's; ``secrets`` is the store
    of ``${secret:NAME}``; ``resolver`` is for tests. ``announce`` gets what ``close`` waits for and
    what it leaves pending, for people (``run`` prints it); without it, that is logged.
    """

    def __init__(
        self,
        ledger: Ledger,
        ruleset: RuleSet,
        secrets: SecretSource | None = None,
        settings: NotifySettings | None = None,
        *,
        resolver: Resolver = resolve,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.announce = announce
        self.ruleset = ruleset
        self.secrets = secrets
        self.settings = settings or NotifySettings()
        self.resolver = resolver
        self._cond = threading.Condition()
        self._stopping = False
        self._woken = False
        #: monotonic times of the retries this process scheduled (a heap)
        self._wake_times: list[float] = []
        self._running: set[int] = set()
        self._busy_urls: set[str] = set()
        self._inflight = _Inflight()
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, self.settings.workers), thread_name_prefix="ftpexport-webhook"
        )
        self._closed = False
        self._thread = threading.Thread(target=self._schedule, name="ftpexport-webhooks", daemon=True)
        self._thread.start()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- from the exporter's workers: quick

    def outcome(self, outcome: Outcome) -> None:
        """Queue the notification of a delivered or finally failed delivery in the ledger, wake the sender."""
        event = EVENTS.get(outcome.result)
        if event is None:
            return
        rules = self.ruleset.clients.get(outcome.client_id)
        spec = rules.notify if rules is not None else None
        if spec is None or event not in spec.events:
            return
        webhook_id = f"msg_{uuid.uuid4().hex}"
        self.ledger.add_notification(
            webhook_id=webhook_id,
            delivery_id=outcome.delivery_id,
            client_id=outcome.client_id,
            event=event,
            url=spec.url,
            payload=encode(payload(outcome, self.ledger)),
            correlation_id=outcome.correlation_id,
        )
        log.debug(
            "webhook queued",
            extra={"correlation_id": outcome.correlation_id, "client": outcome.client_id, "webhook_id": webhook_id,
                   "event": event, "record_id": outcome.record_id, "destination": outcome.destination},
        )  # fmt: skip
        self.wake()

    def wake(self) -> None:
        """Look at the ledger for due notifications now."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    # --- stopping

    def close(self, wait: float | None = None) -> None:
        """Let the notifications due within ``wait`` seconds (default ``settings.close_wait``) go out,
        then stop; requests still under way are cut and stay pending in the ledger for the next run."""
        if self._closed:
            return
        self._closed = True
        wait = self.settings.close_wait if wait is None else wait
        started = time.monotonic()
        deadline = started + wait
        self.wake()
        told = False
        while True:
            with self._cond:
                busy = bool(self._running)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            waited_for = self._due_before(remaining)
            if not busy and not waited_for:
                break
            if not told and time.monotonic() - started >= _QUIET:  # once: what is under way or due before the deadline
                told = True
                message = waiting_message(waited_for, wait)
                if message is not None:
                    self._tell(message, notifications=len(waited_for), wait_s=wait)
            with self._cond:
                self._cond.wait(min(remaining, 0.2))
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._inflight.cut()
        self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)
        pending = len(self.ledger.notifications(status="pending"))
        if pending:
            self._tell(f"{pending} webhook notification(s) left pending; the next run or watch sends them",
                       "webhook notifications left pending; the next run or watch sends them",
                       level=logging.WARNING, notifications=pending)  # fmt: skip

    def _tell(self, message: str, log_message: str | None = None, *, level: int = logging.INFO, **fields: Any) -> None:
        """Say ``message`` to people with ``announce`` when given; else log it (or ``log_message``) with ``fields``."""
        if self.announce is not None:
            self.announce(message)
        else:
            log.log(level, log_message or message, extra=fields)

    def _due_before(self, seconds: float) -> list[dict[str, Any]]:
        """The pending notifications (those under way too) that could go out within ``seconds``."""
        at = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
        ruleset = self.ruleset
        rows = self.ledger.due_notifications(at=at, limit=self.settings.batch)
        return [row for row in rows if not _held(ruleset, row["client_id"])]

    # --- the scheduler thread

    def _schedule(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._woken = False
            next_deadline = self._inflight.cut(overdue_at=time.monotonic())
            try:
                self._dispatch(self.ledger.due_notifications(limit=self.settings.batch))
            except Exception:  # a ledger hiccup must not end the sender: look again later
                log.exception("cannot read the webhook notifications from the ledger")
            with self._cond:
                if self._stopping:
                    return
                if self._woken:
                    continue
                while self._wake_times and self._wake_times[0] <= time.monotonic():
                    heapq.heappop(self._wake_times)
                timeout = self.settings.poll
                for moment in (self._wake_times[0] if self._wake_times else None, next_deadline):
                    if moment is not None:
                        timeout = min(timeout, max(0.0, moment - time.monotonic()) + 0.001)
                self._cond.wait(timeout)

    def _dispatch(self, rows: list[dict[str, Any]]) -> None:
        ruleset = self.ruleset
        for row in rows:
            if _held(ruleset, row["client_id"]):
                continue
            rules = ruleset.clients.get(row["client_id"])
            spec = rules.notify if rules is not None else None
            url = spec.url if spec is not None else row["url"]
            with self._cond:
                if self._stopping or len(self._running) >= max(1, self.settings.workers):
                    return
                if row["id"] in self._running or url in self._busy_urls:
                    continue  # under way, or its endpoint is busy with another one
                self._running.add(row["id"])
                self._busy_urls.add(url)
            self._pool.submit(self._work, row, spec, ruleset.source(row["client_id"]), url)

    # --- one attempt, in a sender thread

    def _work(self, row: dict[str, Any], spec: NotifySpec | None, source: str, url: str) -> None:
        try:
            self._attempt(row, spec, source)
        except FtpexportError as exc:  # the ledger could not record it (a full disk): sent again later
            log.error("webhook attempt not recorded: %s", exc, extra={"webhook_id": row["webhook_id"]})
        except Exception:  # the sender thread must go on
            log.exception("webhook attempt crashed, please report it", extra={"webhook_id": row["webhook_id"]})
        finally:
            with self._cond:
                self._running.discard(row["id"])
                self._busy_urls.discard(url)
                self._woken = True
                self._cond.notify_all()

    def _attempt(self, row: dict[str, Any], spec: NotifySpec | None, source: str) -> None:
        attempt = row["attempts"] + 1
        label = f"{row['client_id']} webhook"
        fields: dict[str, Any] = {
            "correlation_id": row["correlation_id"],
            "client": row["client_id"],
            "webhook_id": row["webhook_id"],
            "event": row["event"],
            "attempt": attempt,
        }
        started = time.monotonic()
        answer: _Answer | None = None
        try:
            if spec is None:
                raise PermanentError(
                    f"the rules of client {row['client_id']} ({source}) have no notify block any more",
                    destination=label,
                )
            fields["host"] = spec.host
            if spec.url != row["url"]:
                log.info("the client's webhook URL changed; sending to the new one", extra=fields)
            answer = self._post(row, spec, source, label)
        except _Interrupted as exc:
            message = redact(f"interrupted, ftpexport stopped: {exc.reason}")
            self.ledger.notification_attempt(row["id"], ok=False, code=None, error=message, next_at=now())
            log.warning("webhook request cut, left pending", extra={**fields, "error": message, "result": "pending"})
            return
        except TransportError as exc:
            self._failed(row, fields, started, exc.reason, permanent=not exc.retriable, code=None)
            return
        except FtpexportError as exc:
            # a secret that cannot be resolved or is malformed: a configuration error, retrying will not fix it
            self._failed(row, fields, started, str(exc), permanent=True, code=None)
            return
        if 200 <= answer.status < 300:
            self.ledger.notification_attempt(row["id"], ok=True, code=answer.status, error=None, next_at=None)
            log.info("webhook sent", extra={**fields, "status_code": answer.status, "result": "sent",
                                            "duration_ms": _ms_since(started)})  # fmt: skip
            return
        message = f"the endpoint answered {answer.status} {answer.reason}".rstrip()
        if 300 <= answer.status < 400:
            message += " (redirects are not followed: put the final URL in notify.url)"
        self._failed(row, fields, started, message, permanent=answer.status == _GONE, code=answer.status,
                     retry_after=answer.retry_after if answer.status in _RETRY_AFTER else None)  # fmt: skip

    def _post(self, row: dict[str, Any], spec: NotifySpec, source: str, label: str) -> _Answer:
        """One POST of the notification's stored body; raises TransientError / PermanentError / ConfigError."""
        where = f"{source}: notify.secret"
        key = signing_key(spec.secret.resolve(where=where, store=self.secrets), where)
        body = row["payload"].encode("utf-8")
        host, port = spec.host, spec.port
        try:
            addresses = self.resolver(host, port)
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
        headers = webhook_headers(key, row["webhook_id"], body)
        connection = None
        errors = []
        for address in addresses:  # the first address that accepts the connection gets the request
            candidate = _PinnedHTTPSConnection(host, port, address=address, timeout=spec.timeout, context=context,
                                               inflight=self._inflight)  # fmt: skip
            try:
                candidate.connect()
            except OSError as exc:
                cut = self._inflight.done(candidate.token)
                candidate.close()
                if self._stopping:
                    raise _Interrupted(f"connecting to {host}", destination=label) from None
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
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            # the reason phrase is the endpoint's text: printable and short before it reaches the ledger and logs
            reason = "".join(c for c in (response.reason or "")[:80] if c.isprintable())
            answer = _Answer(response.status, reason, _seconds(response.getheader("Retry-After")))
        except (OSError, http.client.HTTPException) as exc:
            failure = exc
        finally:
            # a cut socket reads as the end of the answer: a cut request failed, whatever it read
            cut = self._inflight.done(connection.token)
            connection.close()
        if failure is None and not cut:
            return answer
        if self._stopping:
            raise _Interrupted(f"waiting for {host}'s answer", destination=label)
        raise TransientError(f"{host}: {_network_error(failure, spec, cut)}", destination=label)

    def _failed(
        self,
        row: dict[str, Any],
        fields: dict[str, Any],
        started: float,
        message: str,
        *,
        permanent: bool,
        code: int | None,
        retry_after: float | None = None,
    ) -> None:
        message = redact(message)
        attempt = row["attempts"] + 1
        settings = self.settings
        next_at = None
        delay = 0.0
        if not permanent and attempt < settings.attempts:
            delay = backoff(attempt, settings.backoff, settings.max_backoff)
            if retry_after is not None:
                delay = max(delay, min(retry_after, settings.max_backoff))
            next_at = (datetime.now(UTC) + timedelta(seconds=delay)).isoformat(timespec="milliseconds")
            with self._cond:
                heapq.heappush(self._wake_times, time.monotonic() + delay)
                self._cond.notify_all()
        self.ledger.notification_attempt(row["id"], ok=False, code=code, error=message, next_at=next_at)
        details = {**fields, "status_code": code, "error": message, "duration_ms": _ms_since(started)}
        if next_at is None:
            log.error("webhook failed for good", extra={**details, "result": "failed"})
        else:
            log.warning("webhook attempt failed, retrying later",
                        extra={**details, "result": "retry", "retry_in_s": round(delay, 3)})  # fmt: skip


def _held(ruleset: RuleSet, client_id: str) -> bool:
    """A client whose rule file is broken: its notifications wait for the file to be fixed."""
    return client_id not in ruleset.clients and client_id in ruleset.errors


def backoff(attempt: int, first: float, most: float) -> float:
    """Seconds before attempt ``attempt + 1``: ``first`` doubled per attempt, capped, half of it random."""
    delay = min(most, first * 2 ** min(attempt - 1, 62))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not cryptography


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


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
