"""The command line: parsing and printing only; the work is done by the pipeline and friends."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from . import __version__
from .display import Progress, human_bytes, status_text, summary_json, summary_text
from .errors import ConfigError, FtpexportError
from .ledger import Ledger
from .logs import setup_logging
from .pipeline import Exporter, Options, Summary, preview_record
from .record import iter_record_folders
from .rules import RuleSet, load_rules, rule_warnings
from .secret import redact

DEFAULT_STATE = Path(".ftpexport") / "ledger.sqlite3"


@dataclass
class App:
    """What every command shares: output and logging settings."""

    quiet: bool = False
    verbose: int = 0
    log_format: str = "text"
    log_file: Path | None = None

    def start_logging(self, default: int = logging.WARNING) -> None:
        if self.log_file is not None:
            default = min(default, logging.INFO)  # a log file is the audit trail: every delivery
        level = {0: default, 1: min(default, logging.INFO)}.get(self.verbose, logging.DEBUG)
        if self.quiet:
            level = logging.ERROR
        setup_logging(level=level, fmt=self.log_format, file=self.log_file)

    def rules(self, directory: Path) -> RuleSet:
        """Load the rules and tell the user about the broken files (their clients' records will fail)."""
        ruleset = load_rules(directory)
        for errors in ruleset.errors.values():
            for error in errors:
                click.echo(f"ftpexport: rule file refused: {error}", err=True)
        return ruleset


class _Group(click.Group):
    """Turns our errors into one line on stderr and their exit code: no traceback for expected failures."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FtpexportError as exc:
            click.echo(f"ftpexport: error: {redact(str(exc))}", err=True)
            ctx.exit(exc.exit_code)


def _rules_option(f: Any) -> Any:
    return click.option(
        "--rules",
        "rules_dir",
        type=click.Path(path_type=Path),
        required=True,
        envvar="FTPEXPORT_RULES",
        help="Folder of rule files, one <client_id>.yaml per client. [env: FTPEXPORT_RULES]",
    )(f)


def _state_option(f: Any) -> Any:
    return click.option(
        "--state",
        type=click.Path(path_type=Path, dir_okay=False),
        default=DEFAULT_STATE,
        show_default=True,
        envvar="FTPEXPORT_STATE",
        help="The SQLite ledger file. [env: FTPEXPORT_STATE]",
    )(f)


def _json_option(f: Any) -> Any:
    return click.option(
        "--json", "as_json", is_flag=True, envvar="FTPEXPORT_JSON", help="Machine-readable output on stdout."
    )(f)


def _jobs_option(f: Any) -> Any:
    return click.option(
        "--jobs",
        type=click.IntRange(1, 256),
        default=4,
        show_default=True,
        envvar="FTPEXPORT_JOBS",
        help="Uploads running at once, over all destinations. [env: FTPEXPORT_JOBS]",
    )(f)


def _retries_option(f: Any) -> Any:
    return click.option(
        "--retries",
        type=click.IntRange(0, 100),
        default=2,
        show_default=True,
        envvar="FTPEXPORT_RETRIES",
        help="Extra attempts after a transient failure (connection lost, timeout, 4xx reply).",
    )(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ftpexport")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Errors only.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="FTPEXPORT_LOG_FORMAT",
    help="Log lines as text or one JSON object a line. [env: FTPEXPORT_LOG_FORMAT]",
)
@click.option(
    "--log-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="FTPEXPORT_LOG_FILE",
    help="Write logs to this file instead of stderr. [env: FTPEXPORT_LOG_FILE]",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, log_format: str, log_file: Path | None) -> None:
    """Deliver processed vehicle photos to clients' DMS servers over FTP, FTPS and SFTP."""
    ctx.obj = App(quiet=quiet, verbose=verbose, log_format=log_format, log_file=log_file)


def _inbox_folders(inbox: Path) -> list[Path]:
    if not inbox.is_dir():
        raise ConfigError(f"{inbox}: the inbox folder does not exist", hint="pass the folder that holds the records")
    return list(iter_record_folders(inbox))


@cli.command()
@click.argument("inbox", type=click.Path(path_type=Path))
@_rules_option
@_state_option
@_jobs_option
@_retries_option
@_json_option
@click.pass_obj
def run(app: App, inbox: Path, rules_dir: Path, state: Path, jobs: int, retries: int, as_json: bool) -> None:
    """Export every pending record of INBOX once, then print a summary.

    Exit status: 0 all delivered, 1 some record failed, 2 usage or configuration error.
    """
    # The progress display and the summary tell about failures; stderr logs only the unexpected.
    app.start_logging(default=logging.ERROR)
    ruleset = app.rules(rules_dir)
    folders = _inbox_folders(inbox)
    progress = Progress(sys.stderr, live=sys.stderr.isatty(), quiet=app.quiet or as_json)
    started = time.monotonic()
    with Ledger(state) as ledger:
        exporter = Exporter(
            ruleset,
            ledger,
            Options(jobs=jobs, retries=retries, spool_dir=state.parent / "spool"),
            on_outcome=progress.outcome,
            on_bytes=progress.sent,
        )
        summary = exporter.export(folders)
    progress.close()
    elapsed = time.monotonic() - started
    if as_json:
        click.echo(redact(json.dumps(summary_json(summary, elapsed), indent=2, default=str)))
    elif not app.quiet:
        click.echo(redact(summary_text(summary, elapsed)))
    sys.exit(0 if summary.ok else 1)


@cli.command()
@click.argument("inbox", type=click.Path(path_type=Path))
@_rules_option
@_state_option
@_jobs_option
@_retries_option
@click.option("--settle", type=float, default=1.0, show_default=True, help="Seconds vehicle.json must stay unchanged.")
@click.option("--rescan", type=float, default=60.0, show_default=True, help="Seconds between full inbox rescans.")
@click.pass_obj
def watch(
    app: App, inbox: Path, rules_dir: Path, state: Path, jobs: int, retries: int, settle: float, rescan: float
) -> None:
    """Export records as they arrive in INBOX, until SIGTERM or SIGINT."""
    from .watch import InboxWatcher, RulesReloader

    app.start_logging(default=logging.INFO)
    log = logging.getLogger("ftpexport.watch")
    _inbox_folders(inbox)
    reloader = RulesReloader(rules_dir)
    for errors in reloader.ruleset.errors.values():
        for error in errors:
            log.error("rule file refused: %s", error)
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping: finishing the uploads in flight", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    options = Options(jobs=jobs, retries=retries, spool_dir=state.parent / "spool")
    with Ledger(state) as ledger:

        def export(folders: list[Path]) -> Summary:
            summary = Exporter(reloader.current(), ledger, options, stop=stop).export(folders)
            log.info(
                "batch done",
                extra={
                    "delivered": summary.count("delivered"),
                    "unchanged": summary.count("unchanged"),
                    "failed": summary.count("failed"),
                    "refused": len(summary.record_errors),
                },
            )
            return summary

        log.info("watching", extra={"inbox": str(inbox), "rules": str(rules_dir), "state": str(state)})
        InboxWatcher(inbox, export, stop=stop, settle=settle, rescan_every=rescan).run()
    log.info("stopped")


@cli.command()
@click.argument("record", type=click.Path(path_type=Path, file_okay=False))
@_rules_option
@_json_option
@click.pass_obj
def preview(app: App, record: Path, rules_dir: Path, as_json: bool) -> None:
    """Show where RECORD would go and under which names, without connecting anywhere."""
    app.start_logging()
    info = preview_record(record, app.rules(rules_dir))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    user = f", user {info['user_id']}" if info["user_id"] else ""
    click.echo(f"record {info['record']} ({info['id']}, client {info['client_id']}{user})")
    click.echo(f"rules: {info['rule_file']}, format {info['format']}")
    click.echo("files:")
    for f in info["files"]:
        click.echo(f"  {f['name']}  {human_bytes(f['bytes'])}")
    if info["archive_listing"]:
        sources = info["sources"] + [""]
        for name, source in zip(info["archive_listing"], sources, strict=False):
            click.echo(f"    {name}" + (f"  <- {source}" if source else "  (metadata)"))
    click.echo("destinations:")
    for d in info["destinations"]:
        click.echo(f"  {d['destination']} ({d['level']} level)  {d['url']}")
        for path in d["files"]:
            click.echo(f"    {path}")


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@_json_option
@click.pass_obj
def check(app: App, directory: Path, as_json: bool) -> None:
    """Validate every rule file of DIRECTORY; exit 2 if any is wrong."""
    app.start_logging()
    ruleset = load_rules(directory)
    files: dict[str, dict[str, Any]] = {}
    for client_id, rules in ruleset.clients.items():
        files[ruleset.source(client_id)] = {"ok": True, "errors": [], "warnings": rule_warnings(rules)}
    for errors in ruleset.errors.values():
        for error in errors:
            entry = files.setdefault(error.file, {"ok": False, "errors": [], "warnings": []})
            entry["errors"].append({"field": error.field, "reason": error.reason})
    if as_json:
        click.echo(json.dumps({"directory": str(directory), "files": files}, indent=2))
    else:
        if not files:
            click.echo(f"{directory}: no rule files (*.yaml)")
        for name, entry in sorted(files.items()):
            click.echo(f"{name}: {'ok' if entry['ok'] else 'INVALID'}")
            for error in entry["errors"]:
                click.echo(f"  error: {error['field'] or '(file)'}: {error['reason']}")
            for warning in entry["warnings"]:
                click.echo(f"  warning: {warning}")
    if ruleset.errors:
        sys.exit(2)


@cli.command()
@_state_option
@_json_option
@click.option("--client", help="Only this client.")
@click.option("--failed", "only_failed", is_flag=True, help="Only failed deliveries.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Deliveries listed at most.")
@click.pass_obj
def status(app: App, state: Path, as_json: bool, client: str | None, only_failed: bool, limit: int) -> None:
    """Show the ledger: delivered, pending and failed deliveries, with the last error."""
    app.start_logging()
    if not state.exists():
        raise ConfigError(f"{state}: no ledger here yet", hint="run an export first, or pass --state")
    with Ledger(state) as ledger:
        counts = ledger.counts()
        if client:
            counts = {k: v for k, v in counts.items() if k == client}
        # text lists the failed deliveries; JSON lists the newest ones, or only the failed with --failed
        listed = ledger.deliveries(
            status="failed" if only_failed or not as_json else None, client_id=client, limit=limit
        )
    if as_json:
        click.echo(json.dumps({"clients": counts, "deliveries": [d.as_dict() for d in listed]}, indent=2))
        return
    click.echo(status_text(counts, listed))


@cli.command()
@click.option(
    "--samples", type=click.Path(path_type=Path, file_okay=False), help="Inbox to export instead of samples/."
)
@click.pass_obj
def demo(app: App, samples: Path | None) -> None:
    """Start an FTP server on loopback, export the sample records to it, print what arrived."""
    from .demo import run_demo

    app.start_logging()
    summary = run_demo(sys.stdout, samples)
    sys.exit(0 if summary.ok else 1)


def main() -> None:
    """Console entry point."""
    cli(prog_name="ftpexport")
