"""The export pipeline: record -> routes -> names -> package -> upload -> ledger.

Work is one task per (record, destination) on a pool of ``jobs`` threads, so one slow or dead
destination never holds up another. Each destination also has its own limit of simultaneous
connections (``max_connections``). A record's package is built once and shared by its
destinations; transient failures are retried with exponential backoff and jitter.
"""

from __future__ import annotations

import itertools
import logging
import posixpath
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import FtpexportError, RecordError, TransportError
from .ledger import Ledger
from .package import Package, PackageNames, build_package, render_names, template_context
from .record import Record, is_complete, load_record
from .rules import ClientRules, Route, RuleSet, SFTPDestination, routes_for
from .secret import redact
from .transport import Endpoint, open_transport, upload_file

log = logging.getLogger(__name__)

Result = Literal["delivered", "skipped", "unchanged", "failed"]


@dataclass(frozen=True)
class Options:
    """How hard the pipeline works and how patiently it retries."""

    jobs: int = 4
    #: extra attempts after a transient failure, within one run
    retries: int = 2
    #: first retry delay in seconds; doubled each time, with jitter
    backoff: float = 1.0
    #: where archives are built; a temporary folder when None
    spool_dir: Path | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened to one record at one destination."""

    record_id: str
    record_path: str
    client_id: str
    destination: str
    result: Result
    remote_paths: tuple[str, ...] = ()
    bytes: int = 0
    error: str | None = None
    correlation_id: str | None = None
    attempts: int = 0


@dataclass
class Summary:
    """The result of exporting a batch of records."""

    outcomes: list[Outcome] = field(default_factory=list)
    record_errors: list[RecordError] = field(default_factory=list)
    incomplete: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every record found was delivered (or already was) everywhere."""
        return not self.record_errors and all(o.result != "failed" for o in self.outcomes)

    def count(self, result: Result) -> int:
        return sum(1 for o in self.outcomes if o.result == result)


@dataclass(frozen=True)
class Plan:
    """A record ready to send: its names and the remote folder at each destination."""

    record: Record
    rules: ClientRules
    source: str
    names: PackageNames
    routes: tuple[tuple[Route, str], ...]


def endpoint_for(route: Route, source: str) -> Endpoint:
    """The transport endpoint of a route; secrets are resolved here, at the last moment."""
    destination = route.destination
    where = f"{source}: destination {destination.name}"
    password = destination.password.resolve(where=f"{where}: password") if destination.password else None
    common = {
        "scheme": destination.scheme,
        "host": destination.host,
        "port": destination.port,
        "username": destination.username,
        "password": password,
        "timeout": destination.timeout,
        "label": route.key,
    }
    if isinstance(destination, SFTPDestination):
        passphrase = destination.key_passphrase
        return Endpoint(
            **common,  # type: ignore[arg-type]
            host_keys=tuple(destination.host_key or ()),
            known_hosts=destination.known_hosts,
            key_file=destination.key_file,
            key_passphrase=passphrase.resolve(where=f"{where}: key_passphrase") if passphrase else None,
        )
    return Endpoint(**common, ca_file=destination.ca_file, passive=destination.passive)  # type: ignore[arg-type]


def plan_record(record: Record, ruleset: RuleSet, routes: list[Route]) -> Plan:
    """Render every name of the record for its destinations; raises ``NamingError``."""
    rules = routes[0].client
    source = ruleset.source(rules.client_id)
    spec = rules.package
    names = render_names(
        record,
        fmt=spec.format,
        archive_name=spec.archive_name,
        image_name=spec.image_name,
        metadata_name=spec.metadata.name if spec.metadata else None,
        done_marker=spec.done_marker,
        origin=source,
    )
    context = template_context(record)
    planned = []
    for route in routes:
        base = route.destination.base_path
        template = route.destination.remote_dir
        if template is None:
            planned.append((route, base))
            continue
        sub = template.render(
            context,
            record=str(record.folder),
            origin=f"{source}: destination {route.destination.name}: remote_dir",
        )
        planned.append((route, posixpath.join(base, sub)))
    return Plan(record=record, rules=rules, source=source, names=names, routes=tuple(planned))


def make_package(plan: Plan, workdir: Path) -> Package:
    """Build the files of a planned record in ``workdir``."""
    metadata = plan.rules.package.metadata
    return build_package(plan.record, plan.names, metadata.fields if metadata else None, workdir)


def send(
    package: Package,
    endpoint: Endpoint,
    remote_dir: str,
    *,
    atomic: bool,
    if_exists: Literal["overwrite", "skip", "fail"],
    callback: Callable[[int], None] | None = None,
) -> tuple[list[str], int, bool]:
    """Upload a package over one connection; returns (remote paths, bytes sent, all skipped)."""
    paths: list[str] = []
    sent = 0
    skipped = True
    with open_transport(endpoint) as transport:
        if remote_dir:
            transport.makedirs(remote_dir)
        for artifact in package.files:
            upload = upload_file(
                transport,
                artifact.open,
                artifact.size,
                remote_dir,
                artifact.name,
                atomic=atomic,
                if_exists=if_exists,
                callback=callback,
            )
            paths.append(upload.path)
            sent += upload.size
            skipped = skipped and upload.skipped
        if package.done_marker is not None and not skipped:
            marker = package.done_marker
            upload = upload_file(transport, marker.open, marker.size, remote_dir, marker.name, atomic=atomic)
            paths.append(upload.path)
    return paths, sent, skipped


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _describe(exc: BaseException) -> str:
    """A one-line message for any failure of a delivery."""
    if isinstance(exc, TransportError):
        return exc.reason  # the destination is recorded beside the message
    if isinstance(exc, FtpexportError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"local file error: {exc}"
    return f"unexpected error {type(exc).__name__}: {exc}"


class _SharedPackages:
    """Builds each record's package once, for all its destinations, and removes it after the last."""

    def __init__(self, spool: Path) -> None:
        self._spool = spool
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[threading.Lock, list[Package | FtpexportError | None], int]] = {}

    def expect(self, plan: Plan, users: int) -> None:
        with self._lock:
            self._entries[id(plan)] = (threading.Lock(), [None], users)

    def get(self, plan: Plan) -> Package:
        with self._lock:
            build_lock, slot, _ = self._entries[id(plan)]
        with build_lock:
            if slot[0] is None:
                workdir = self._workdir(plan)
                try:
                    workdir.mkdir(parents=True, exist_ok=True)
                    slot[0] = make_package(plan, workdir)
                except OSError as exc:
                    slot[0] = RecordError(str(plan.record.folder), f"cannot build the package: {exc}")
                except FtpexportError as exc:
                    slot[0] = exc
            value = slot[0]
        if isinstance(value, FtpexportError):
            raise value
        assert value is not None
        return value

    def release(self, plan: Plan) -> None:
        with self._lock:
            build_lock, slot, users = self._entries[id(plan)]
            if users > 1:
                self._entries[id(plan)] = (build_lock, slot, users - 1)
                return
            del self._entries[id(plan)]
        shutil.rmtree(self._workdir(plan), ignore_errors=True)

    def _workdir(self, plan: Plan) -> Path:
        return self._spool / f"{id(plan):x}"


class Exporter:
    """Exports records to their destinations and keeps the ledger."""

    def __init__(
        self,
        ruleset: RuleSet,
        ledger: Ledger,
        options: Options | None = None,
        *,
        on_outcome: Callable[[Outcome], None] | None = None,
        on_bytes: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.ledger = ledger
        self.options = options or Options()
        self._on_outcome = on_outcome or (lambda outcome: None)
        self._on_bytes = on_bytes
        self._stop = stop or threading.Event()
        self._limits: dict[str, threading.BoundedSemaphore] = {}
        self._limits_lock = threading.Lock()

    def prepare(self, folders: Iterable[Path], summary: Summary) -> list[tuple[Plan, list[tuple[Route, str]]]]:
        """Load and plan records; returns what still needs sending, fills in errors and unchanged."""
        work = []
        for folder in folders:
            if not is_complete(folder):
                summary.incomplete.append(folder)
                continue
            try:
                record = load_record(folder)
                plan = plan_record(record, self.ruleset, routes_for(self.ruleset, record))
            except RecordError as exc:
                log.warning("record refused: %s", exc, extra={"record_path": str(folder)})
                summary.record_errors.append(exc)
                continue
            pending = []
            for route, remote_dir in plan.routes:
                done = self.ledger.find(record.id, record.content_hash, route.key)
                if done is not None and done.status == "delivered":
                    outcome = Outcome(
                        record.id,
                        str(folder),
                        record.client_id,
                        route.key,
                        "unchanged",
                        remote_paths=done.remote_paths,
                        bytes=done.bytes,
                    )
                    summary.outcomes.append(outcome)
                    self._on_outcome(outcome)
                else:
                    pending.append((route, remote_dir))
            if pending:
                work.append((plan, pending))
        return work

    def export(self, folders: Iterable[Path]) -> Summary:
        """Send every complete record of ``folders`` that the ledger has not delivered yet."""
        summary = Summary()
        work = self.prepare(folders, summary)
        if not work:
            return summary
        spool_root = self.options.spool_dir
        if spool_root is not None:
            spool_root.mkdir(parents=True, exist_ok=True)
        spool = Path(tempfile.mkdtemp(prefix="ftpexport-", dir=spool_root))
        packages = _SharedPackages(spool)
        results_lock = threading.Lock()
        try:
            with ThreadPoolExecutor(max_workers=max(1, self.options.jobs), thread_name_prefix="ftpexport") as pool:
                futures = []
                for plan, pending in work:
                    packages.expect(plan, len(pending))
                    for route, remote_dir in pending:
                        futures.append(pool.submit(self._deliver, plan, route, remote_dir, packages))
                for future in futures:
                    outcome = future.result()
                    with results_lock:
                        summary.outcomes.append(outcome)
        finally:
            shutil.rmtree(spool, ignore_errors=True)
        return summary

    def _limit(self, route: Route) -> threading.BoundedSemaphore:
        with self._limits_lock:
            if route.key not in self._limits:
                self._limits[route.key] = threading.BoundedSemaphore(route.destination.max_connections)
            return self._limits[route.key]

    def _deliver(self, plan: Plan, route: Route, remote_dir: str, packages: _SharedPackages) -> Outcome:
        """Deliver one record to one destination, with retries; never raises."""
        record = plan.record
        correlation_id = uuid.uuid4().hex[:16]
        fields = {
            "correlation_id": correlation_id,
            "client": record.client_id,
            "destination": route.key,
            "record_id": record.id,
            "record_path": str(record.folder),
        }

        def finish(result: Result, **details: Any) -> Outcome:
            outcome = Outcome(
                record.id, str(record.folder), record.client_id, route.key, result,
                correlation_id=correlation_id, **details,
            )  # fmt: skip
            self._on_outcome(outcome)
            return outcome

        delivery = self.ledger.open_delivery(
            record_id=record.id,
            content_hash=record.content_hash,
            client_id=record.client_id,
            destination=route.key,
            record_path=str(record.folder),
        )
        try:
            for attempt in itertools.count(1):
                if self._stop.is_set():
                    return finish("failed", error="stopped before the upload started; still pending")
                attempt_id = self.ledger.start_attempt(delivery.id, correlation_id)
                started = time.monotonic()
                try:
                    package = packages.get(plan)  # built before taking one of the destination's slots
                    endpoint = endpoint_for(route, plan.source)
                    with self._limit(route):
                        paths, sent, skipped = send(
                            package,
                            endpoint,
                            remote_dir,
                            atomic=plan.rules.upload.atomic,
                            if_exists=plan.rules.upload.if_exists,
                            callback=self._on_bytes,
                        )
                except Exception as exc:  # any failure belongs to this delivery only
                    message = redact(_describe(exc))
                    retriable = isinstance(exc, TransportError) and exc.retriable
                    if not isinstance(exc, FtpexportError | OSError):
                        log.exception("unexpected error, please report it", extra=fields)
                    final = not retriable or attempt > self.options.retries or self._stop.is_set()
                    self.ledger.fail(delivery.id, attempt_id, message, final=final)
                    log.warning(
                        "delivery attempt failed",
                        extra={**fields, "attempt": attempt, "error": message, "retriable": retriable,
                               "duration_ms": _ms_since(started)},
                    )  # fmt: skip
                    if final:
                        return finish("failed", error=message, attempts=attempt)
                    self._stop.wait(self.options.backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))  # noqa: S311
                    continue
                self.ledger.succeed(delivery.id, attempt_id, paths, sent)
                log.info(
                    "already on the server, skipped" if skipped else "delivered",
                    extra={**fields, "attempt": attempt, "host": route.destination.host, "remote_paths": paths,
                           "bytes": sent, "duration_ms": _ms_since(started)},
                )  # fmt: skip
                return finish(
                    "skipped" if skipped else "delivered", remote_paths=tuple(paths), bytes=sent, attempts=attempt
                )
            raise AssertionError("unreachable: itertools.count never ends")
        finally:
            packages.release(plan)


def preview_record(folder: Path, ruleset: RuleSet) -> dict[str, Any]:
    """What exporting ``folder`` would send where, without any network; raises ``RecordError``."""
    record = load_record(folder)
    plan = plan_record(record, ruleset, routes_for(ruleset, record))
    with tempfile.TemporaryDirectory(prefix="ftpexport-preview-") as tmp:
        package = make_package(plan, Path(tmp))
    destinations = []
    for route, remote_dir in plan.routes:
        destination = route.destination
        marker = [package.done_marker] if package.done_marker is not None else []
        files = [posixpath.join(remote_dir, f.name) for f in (*package.files, *marker)]
        destinations.append(
            {
                "destination": route.key,
                "level": "user" if route.user_id else "client",
                "url": f"{destination.scheme}://{destination.username}@{destination.host}:{destination.port}",
                "remote_dir": remote_dir,
                "files": files,
            }
        )
    return {
        "record": str(folder),
        "id": record.id,
        "client_id": record.client_id,
        "user_id": record.user_id,
        "content_hash": record.content_hash,
        "rule_file": plan.source,
        "format": plan.rules.package.format,
        "files": [{"name": f.name, "bytes": f.size} for f in package.files],
        "archive_listing": list(package.archive_listing),
        "sources": [image.path.name for image in record.images],
        "destinations": destinations,
    }
