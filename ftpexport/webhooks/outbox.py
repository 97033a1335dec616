"""Client webhooks: a signed JSON POST (Standard Webhooks) when a vehicle is delivered or finally fails.

The exporter's workers only write the notification to the ledger's outbox (``Notifier.outcome``,
one insert) and wake the sender: a webhook never holds up an upload. A scheduler thread takes the
due notifications from the ledger, those an earlier process left pending too, and hands them to a
few sender threads, one request at a time per endpoint, so a dead endpoint ties up one sender at
most. A failed request is tried again after an exponential backoff with jitter, up to ``attempts``
times: same ``webhook-id`` every time, fresh ``webhook-timestamp`` and signature. Every attempt is
recorded in the ledger (status code or error); what is left at ``close`` stays pending there.

The signature is signing.py's (Standard Webhooks); the request itself, SSRF-proof and cut when
overdue or stopping, is client.py's.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..backoff import backoff_delay
from ..errors import FtpexportError, PermanentError, TransportError
from ..events import Observer, Outcome
from ..ledger import Ledger, now
from ..netguard import Resolver, resolve
from ..rules import NotifySpec, RuleSet
from ..secret import SecretSource, redact
from .inflight import Inflight, Interrupted
from .payload import EVENTS, encode, payload
from .signing import signing_key, webhook_headers
from .texts import waiting_message

if TYPE_CHECKING:
    from .client import Answer

#: the webhooks' log keeps the name it had as notify.py (log filters select on it)
log = logging.getLogger("ftpexport.notify")

#: answers of the endpoint that say "never try again"
_GONE = 410
#: answers whose Retry-After header is honoured (up to ``max_backoff``)
_RETRY_AFTER = (429, 503)

#: seconds ``close`` waits before it says what it waits for (the last notifications usually go out within it)
_QUIET = 1.0


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
        self._inflight = Inflight()
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
        answer: Answer | None = None
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
        except Interrupted as exc:
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

    def _post(self, row: dict[str, Any], spec: NotifySpec, source: str, label: str) -> Answer:
        """One POST of the notification's stored body; raises TransientError / PermanentError / ConfigError."""
        # the HTTPS client (http.client) on the first request: a run without webhooks never loads it
        from .client import post

        where = f"{source}: notify.secret"
        key = signing_key(spec.secret.resolve(where=where, store=self.secrets), where)
        body = row["payload"].encode("utf-8")
        return post(spec, body, lambda: webhook_headers(key, row["webhook_id"], body), label=label,
                    resolver=self.resolver, inflight=self._inflight, stopping=lambda: self._stopping)  # fmt: skip

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
            delay = backoff_delay(attempt, settings.backoff, settings.max_backoff)
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


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
