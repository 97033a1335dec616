"""An export as a process: stopping on SIGTERM/SIGINT, recovering what a killed process left (its
open attempts, its spool), and assembling ``run`` (export_once) and ``watch`` (watch_inbox) from the
exporter, the webhooks, the watcher and the metrics.

``state`` is a SQLite file (a ``Path``: held alone behind its lock file) or a URL (a ``str``: a
shared ledger such as PostgreSQL, where this process is one host among others: no lock file, a
spool of its own, announced with ``register`` and gone with ``leave``)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkup import no_rule_files
from .errors import StateError
from .ledger import DEFAULT_LEASE, Ledger, display_state, is_url, open_ledger
from .lock import exclusive

if TYPE_CHECKING:
    from .events import Outcome, Summary
    from .pipeline import Exporter, Options
    from .progress import Tally
    from .rules import RuleSet
    from .secret import SecretSource

# The pipeline, the webhooks, the watcher and the metrics are imported by export_once and
# watch_inbox: the reading
# commands import this module (for the spool's place) and start in a fraction of the time.


class Stopper:
    """SIGTERM/SIGINT: the first stops new work and gives running uploads ``grace`` seconds, a second cuts them."""

    def __init__(self, exporter: Exporter, grace: float, log: logging.Logger) -> None:
        self.exporter = exporter
        self.grace = grace
        self.log = log
        self.event = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Stopper:
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self.join()

    def _handle(self, signum: int, _frame: object) -> None:
        grace = 0.0 if self.event.is_set() else self.grace
        self.log.warning(
            f"stopping: no new uploads; running ones get {grace:g} s, then stay pending",
            extra={"signal": signal.Signals(signum).name},
        )
        self.event.set()
        # not in the handler itself: stopping waits, and the handler runs in the main thread
        thread = threading.Thread(target=self.exporter.stop, args=(grace,), name="ftpexport-stop", daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()


def spool_dir(state: str | Path) -> Path | None:
    """Where a ledger's exports build their archives; only the lock holder uses it. None for a
    shared ledger (a URL): each process builds its own in ``shared_spool_root``."""
    if is_url(state):
        return None
    path = Path(state)
    return path.with_name(path.name + ".spool")


def shared_spool_root() -> Path:
    """Where the processes of this user on this machine that share a ledger (a URL ``--state``)
    build their archives, each in a folder ``ftpexport-PID-*`` of its own."""
    return Path(tempfile.gettempdir()) / f"ftpexport-spool-{os.getuid()}"


def sweep_orphaned_spools(root: Path) -> int:
    """Remove the spool folders under ``root`` of processes that no longer run (killed with -9:
    their archives would stay forever); returns how many."""
    removed = 0
    for folder in root.glob("ftpexport-*-*"):
        pid = folder.name.split("-")[1]
        if not pid.isdigit() or _running(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: not ours to judge
    return True


@contextmanager
def exclusive_ledger(state: Path) -> Iterator[Ledger]:
    """The ledger, for this process alone; attempts a killed process left open are closed."""
    with exclusive(state), open_ledger(state) as ledger:
        # archives a killed process was building or sending: nobody else can be using them
        shutil.rmtree(spool_dir(state), ignore_errors=True)
        interrupted = ledger.close_interrupted()
        if interrupted:
            logging.getLogger("ftpexport").warning(
                "the last run was interrupted; its deliveries are resumed", extra={"attempts": interrupted}
            )
        yield ledger


@contextmanager
def shared_ledger(url: str, lease: float = DEFAULT_LEASE) -> Iterator[Ledger]:
    """A shared ledger (``--state`` is a URL), this process one of its hosts while inside; the
    attempts of hosts whose lease ran out are closed (their deliveries are then taken over)."""
    with open_ledger(url, lease=lease) as ledger:
        coordination = ledger.coordination
        coordination.register()
        try:
            interrupted = ledger.close_interrupted()
            if interrupted:
                logging.getLogger("ftpexport").warning(
                    "attempts of a host that stopped were closed; their deliveries are taken over",
                    extra={"attempts": interrupted, "state": display_state(url)},
                )
            yield ledger
        finally:
            try:
                coordination.leave()
            except StateError as exc:  # what it holds is let go all the same, when its leases run out
                logging.getLogger("ftpexport").warning(
                    "could not leave the shared ledger: %s; what this process held is free in %g s",
                    exc, lease, extra={"state": display_state(url)},
                )  # fmt: skip


@contextmanager
def ledger_for(state: str | Path, options: Options) -> Iterator[tuple[Ledger, Options]]:
    """The ledger ``state`` names as an export uses it, and the options to export with: a SQLite
    file for this process alone (``exclusive_ledger``), or a shared ledger (``shared_ledger``) with
    the spool in a folder of this process under ``shared_spool_root`` (those of killed processes
    are removed first)."""
    if is_url(state):
        root = shared_spool_root()
        with shared_ledger(str(state), options.lease) as ledger:
            swept = sweep_orphaned_spools(root)
            if swept:
                logging.getLogger("ftpexport").info("spool folders of killed processes removed",
                                                    extra={"folders": swept, "spool": str(root)})  # fmt: skip
            yield ledger, replace(options, spool_dir=root)
    else:
        with exclusive_ledger(Path(state)) as ledger:
            yield ledger, options


def export_once(
    folders: list[Path],
    ruleset: RuleSet,
    state: str | Path,
    options: Options,
    store: Callable[[], SecretSource],
    *,
    grace: float,
    notify_wait: float,
    progress: Tally,
    announce: Callable[[str], None] | None,
) -> Summary:
    """Export ``folders`` once over the ledger ``state`` (``ledger_for``), their webhooks
    given ``notify_wait`` seconds at the end; SIGTERM/SIGINT stop it (``grace``). ``progress`` watches
    the exporter; ``announce`` tells what the end waits for. ``store`` as for ``watch_inbox``."""
    from .pipeline import Exporter
    from .transcripts import Purge
    from .webhooks import Notifier, NotifySettings

    settings = NotifySettings(close_wait=notify_wait)
    with (
        ledger_for(state, options) as (ledger, options),
        Notifier(ledger, ruleset, store(), settings, announce=announce) as notifier,
        Exporter(ruleset, ledger, options, observers=[progress, notifier], secrets=store()) as exporter,
        Stopper(exporter, grace, logging.getLogger("ftpexport")),
    ):
        Purge(ledger)()  # the transcripts older than transcripts.KEEP_DAYS
        progress.lanes = exporter.lanes
        progress.start()
        try:
            return exporter.export(folders)
        finally:
            progress.close()


@dataclass(frozen=True)
class WatchSettings:
    """How ``watch`` runs, beside the export Options (the command's options of the same names)."""

    grace: float = 30.0
    settle: float = 1.0
    rescan: float = 60.0
    notify_wait: float = 10.0
    metrics_port: int | None = None  # no metrics server without it
    metrics_host: str = "127.0.0.1"
    health_stale: float = 300.0


def watch_inbox(
    inbox: Path,
    rules_dir: Path,
    state: str | Path,
    options: Options,
    store: Callable[[], SecretSource],
    settings: WatchSettings,
) -> bool:
    """Export records as they arrive in ``inbox`` until SIGTERM or SIGINT: the watcher, the exporter,
    the webhooks, the metrics server and the rules reloaded when they change, over the ledger ``state``.

    ``store`` opens the secrets store (the webhooks and the uploads each get theirs, opened on first use).
    False when the daemon stopped because the ledger or the spool could not be written.
    """
    from .events import Observer
    from .folders import inbox_folders, no_record_note
    from .pipeline import Exporter
    from .rules import RulesReloader
    from .transcripts import Purge
    from .watch import InboxWatcher
    from .webhooks import Notifier, NotifySettings

    log = logging.getLogger("ftpexport.watch")
    if not inbox_folders(inbox, "watch"):
        log.warning("%s; watching for new ones (check the path if records were expected)", no_record_note(inbox))
    reloader = RulesReloader(rules_dir)
    if not reloader.ruleset.clients and not reloader.ruleset.errors:
        log.warning("%s: every record is refused until rule files are added", no_rule_files(rules_dir))
    for errors in reloader.ruleset.errors.values():
        for error in errors:
            log.error("rule file refused: %s", error)

    def report(outcome: Outcome) -> None:
        if outcome.result == "deferred":
            return  # logged by the pipeline
        log.info(
            "record %s", outcome.result,
            extra={"record_id": outcome.record_id, "destination": outcome.destination, "result": outcome.result,
                   "correlation_id": outcome.correlation_id, "error": outcome.error},
        )  # fmt: skip

    observers: list[Observer] = []
    metrics = None
    if settings.metrics_port is not None:
        from .health import Health
        from .metrics import Metrics

        # the watcher loop ticks every ~5 s: it gets at least three ticks
        metrics = Metrics(Health(settings.health_stale, watcher_stale=max(settings.health_stale, 15.0)))
        observers.append(metrics)

    @contextmanager
    def serving_metrics(exporter: Exporter, ledger: Ledger) -> Iterator[None]:
        """/metrics and /healthz while the watcher runs (with --metrics-port)."""
        if metrics is None or settings.metrics_port is None:
            yield
            return
        from .metrics import MetricsServer

        metrics.attach(lanes=exporter.lanes, oldest_pending=ledger.oldest_pending, refused=ledger.refused_counts)
        with MetricsServer(metrics, settings.metrics_host, settings.metrics_port) as server:
            log.info("metrics on %s/metrics", server.url, extra={"host": settings.metrics_host, "port": server.port})
            yield

    with (
        ledger_for(state, options) as (ledger, options),
        # webhooks pending in the ledger go out at startup, new ones as deliveries end
        Notifier(ledger, reloader.ruleset, store(), NotifySettings(close_wait=settings.notify_wait)) as notifier,
        Exporter(
            reloader.ruleset,
            ledger,
            options,
            on_outcome=report,
            observers=[*observers, notifier],
            secrets=store(),
        ) as exporter,
        Stopper(exporter, settings.grace, log) as stopper,
        serving_metrics(exporter, ledger),
    ):
        watcher: InboxWatcher | None = None
        purge_transcripts = Purge(ledger)  # older than transcripts.KEEP_DAYS, once an hour

        def stop_if_broken() -> None:
            # the ledger or the spool cannot be written: the daemon stops (exit 1) rather than take
            # records it cannot record; its supervisor starts it again, which tries the disk again
            if exporter.state_error is not None and not stopper.event.is_set():
                log.error("stopping: %s", exporter.state_error, extra={"state": display_state(state)})
                stopper.event.set()

        def submit(folders: list[Path]) -> None:
            exporter.submit(folders)
            stop_if_broken()

        def housekeeping() -> list[Path]:
            if metrics is not None:
                metrics.health.tick()  # the watcher loop is alive
            ruleset = reloader.current()
            if ruleset is not exporter.ruleset:
                exporter.ruleset = notifier.ruleset = ruleset  # the rules in force: both hold the same
                if watcher is not None:
                    watcher.forget()  # records refused under the old rules get another chance
            exporter.housekeeping()
            purge_transcripts()
            notifier.wake()  # retries due, rules changed: a look at the webhook outbox
            folders = exporter.pending_folders()
            stop_if_broken()
            return folders

        log.info("watching", extra={"inbox": str(inbox), "rules": str(rules_dir), "state": display_state(state)})
        watcher = InboxWatcher(
            inbox,
            submit,
            stop=stopper.event,
            settle=settings.settle,
            rescan_every=settings.rescan,
            housekeeping=housekeeping,
        )
        watcher.run()
    log.info("stopped")
    return exporter.state_error is None
