"""The commands that export: run (once), watch (the daemon), demo."""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import collector
from ..daemon import WatchSettings, export_once, spool_dir, watch_inbox
from ..display import summary_json, summary_text
from ..secret import redact
from .base import EnvvarCommand, Seconds
from .options import (
    App,
    hardlinks_option,
    jobs_option,
    json_option,
    lease_option,
    notify_option,
    retries_option,
    rules_option,
    state_option,
    timing_options,
)

if TYPE_CHECKING:
    from ..pipeline import Options

# The pipeline, the rules (pydantic models), paramiko, rich and the webhooks are imported by the
# commands that use them: `status`, `history` or `--version` start in a fraction of the time.


def _inbox_folders(inbox: Path, command: str) -> list[Path]:
    """The record folders of INBOX; refused (exit 2) when it is a record, a file or the inbox's parent."""
    from ..folders import inbox_folders

    return inbox_folders(inbox, command)


def _options(
    jobs: int, retries: int, backoff: float, pause: float, lease: float, state: str | Path, app: App,
    allow_hardlinks: bool,
) -> Options:  # fmt: skip
    """The export Options of run and watch. A SQLite ledger's spool is beside it (only the lock holder
    uses it); on a shared ledger (a URL) each process builds its archives in a temporary folder of its own."""
    from ..pipeline import Options

    return Options(jobs=jobs, retries=retries, backoff=backoff, pause=pause, lease=lease, spool_dir=spool_dir(state),
                   allow_hardlinks=allow_hardlinks, protected=app.own_files(state))  # fmt: skip


@click.command(cls=EnvvarCommand)
@click.argument("inbox", type=click.Path(path_type=Path))
@rules_option
@state_option
@jobs_option
@retries_option
@timing_options
@lease_option
@notify_option
@hardlinks_option
@json_option
@click.pass_obj
def run(
    app: App,
    inbox: Path,
    rules_dir: Path,
    state: str | Path,
    jobs: int,
    retries: int,
    backoff: float,
    pause: float,
    grace: float,
    lease: float,
    notify_wait: float,
    allow_hardlinks: bool,
    as_json: bool,
) -> None:
    """Export every pending record of INBOX once, then print a summary.

    Failed deliveries of earlier runs are left alone until `ftpexport retry` requeues them.
    Exit status: 0 all delivered, 1 some delivery failed or is still pending, 2 usage or configuration error.
    """
    from ..progress import progress_for

    # The progress display and the summary tell about failures; stderr logs only the unexpected.
    app.start_logging(default=logging.ERROR)
    folders = _inbox_folders(inbox, "run")  # the argument first: its error before those of --rules
    ruleset = app.rules(rules_dir)
    if not folders and not app.quiet:
        from ..folders import no_record_note

        # exit 0 all the same: an inbox the platform has emptied is the normal case for a cron job
        click.echo(f"ftpexport: {no_record_note(inbox)}", err=True)
    progress = progress_for(sys.stderr, quiet=app.quiet or as_json)
    started = time.monotonic()
    # what the end of the run waits for (webhooks): a line on stderr, like the progress
    tell = None if app.quiet else functools.partial(click.echo, err=True)
    options = _options(jobs, retries, backoff, pause, lease, state, app, allow_hardlinks)
    collector.started()
    summary = export_once(folders, ruleset, state, options, app.store, grace=grace, notify_wait=notify_wait,
                          progress=progress, announce=tell)  # fmt: skip
    elapsed = time.monotonic() - started
    if as_json:
        click.echo(redact(json.dumps(summary_json(summary, elapsed), indent=2, default=str)))
    elif not app.quiet:
        click.echo(redact(summary_text(summary, elapsed)))
    if summary.state_error is not None:  # the run stopped there; the summary says what was done before
        click.echo(f"ftpexport: error: {redact(str(summary.state_error))}", err=True)
    sys.exit(0 if summary.ok else 1)


@click.command(cls=EnvvarCommand)
@click.argument("inbox", type=click.Path(path_type=Path))
@rules_option
@state_option
@jobs_option
@retries_option
@timing_options
@lease_option
@click.option(
    "--settle",
    type=Seconds(0),
    default=1.0,
    show_default=True,
    envvar="FTPEXPORT_SETTLE",
    help="Seconds a vehicle.json that does not parse (yet) must stay unchanged before it is taken (and refused).",
)
@click.option(
    "--rescan",
    type=Seconds(0, min_open=True),
    default=60.0,
    show_default=True,
    envvar="FTPEXPORT_RESCAN",
    help="Seconds between full inbox rescans.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    envvar="FTPEXPORT_METRICS_PORT",
    help="Serve Prometheus metrics on /metrics and health on /healthz on this port (0: any free port). "
    "No server without it.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    envvar="FTPEXPORT_METRICS_HOST",
    help="Address the metrics server listens on (0.0.0.0 for every interface, e.g. in a container).",
)
@click.option(
    "--health-stale",
    type=Seconds(0, min_open=True),
    default=300.0,
    show_default=True,
    envvar="FTPEXPORT_HEALTH_STALE",
    help="/healthz answers 503 when an upload made no progress for this many seconds "
    "(or the watcher loop did not tick for this long, at least 15 s).",
)
@notify_option
@hardlinks_option
@click.pass_obj
def watch(
    app: App,
    inbox: Path,
    rules_dir: Path,
    state: str | Path,
    jobs: int,
    retries: int,
    backoff: float,
    pause: float,
    grace: float,
    lease: float,
    settle: float,
    rescan: float,
    metrics_port: int | None,
    metrics_host: str,
    health_stale: float,
    notify_wait: float,
    allow_hardlinks: bool,
) -> None:
    """Export records as they arrive in INBOX, until SIGTERM or SIGINT.

    On start, the deliveries the ledger has pending (an earlier run stopped or was killed) are
    resumed. Rule files are reloaded when they change; a broken one keeps its last good version.
    With --state postgresql://..., the watch processes of several hosts share the work.
    """
    app.start_logging(default=logging.INFO)
    options = _options(jobs, retries, backoff, pause, lease, state, app, allow_hardlinks)
    settings = WatchSettings(
        grace=grace,
        settle=settle,
        rescan=rescan,
        notify_wait=notify_wait,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        health_stale=health_stale,
    )
    collector.started()
    if not watch_inbox(inbox, rules_dir, state, options, app.store, settings):
        sys.exit(1)


@click.command(cls=EnvvarCommand)
@click.option(
    "--samples", type=click.Path(path_type=Path, file_okay=False), help="Inbox to export instead of samples/."
)
@click.pass_obj
def demo(app: App, samples: Path | None) -> None:
    """Start an FTP server on loopback, export the sample records to it, print what arrived."""
    from ..demo import run_demo

    app.start_logging()
    summary = run_demo(sys.stdout, samples)
    sys.exit(0 if summary.ok else 1)
