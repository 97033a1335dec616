"""What the commands share: the App (output, logging, the secrets store, the rules) and the options
several commands take (--rules, --state, --json, --jobs, --retries, the timings, --notify-wait,
--allow-hardlinks)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..checkup import some_rules
from ..errors import ConfigError
from ..ledger import Ledger, open_ledger
from ..logs import setup_logging
from ..recordfiles import ALLOW_HARDLINKS_ENV, own_files
from ..vault import LazyStore, key_file_path, store_path
from .base import Seconds

if TYPE_CHECKING:
    from ..rules import RuleSet

DEFAULT_STATE = Path(".ftpexport") / "ledger.sqlite3"


@dataclass
class App:
    """What every command shares: output and logging settings."""

    quiet: bool = False
    verbose: int = 0
    log_format: str = "text"
    log_file: Path | None = None
    secrets_file: Path | None = None
    secrets_key_file: Path | None = None

    def store(self) -> LazyStore:
        """The secrets store for ``${secret:NAME}`` references, opened when first needed."""
        return LazyStore(self.secrets_file, self.secrets_key_file)

    def own_files(self, state: Path) -> tuple[tuple[Path, str], ...]:
        """ftpexport's own files (store, key, ledger ``state``, log), which no record may deliver."""
        key_file = key_file_path(self.secrets_key_file)
        return own_files(store=store_path(self.secrets_file), key_file=key_file, ledger=state, log_file=self.log_file)

    def start_logging(self, default: int = logging.WARNING) -> None:
        if self.log_file is not None:
            default = min(default, logging.INFO)  # a log file is the audit trail: every delivery
        level = {0: default, 1: min(default, logging.INFO)}.get(self.verbose, logging.DEBUG)
        if self.quiet:
            level = logging.ERROR
        setup_logging(level=level, fmt=self.log_format, file=self.log_file)

    def rules(self, directory: Path, *, allow_unpinned_host_keys: bool = False) -> RuleSet:
        """Load the rules and tell the user about the broken files (their clients' records will fail)."""
        from ..rules import load_rules

        ruleset = some_rules(load_rules(directory, allow_unpinned_host_keys=allow_unpinned_host_keys))
        for errors in ruleset.errors.values():
            for error in errors:
                click.echo(f"ftpexport: rule file refused: {error}", err=True)
        return ruleset


def rules_option(f: Any) -> Any:
    return click.option(
        "--rules",
        "rules_dir",
        type=click.Path(path_type=Path),
        required=True,
        envvar="FTPEXPORT_RULES",
        help="Folder of rule files, one <client_id>.yaml per client.",
    )(f)


def state_option(f: Any) -> Any:
    return click.option(
        "--state",
        type=click.Path(path_type=Path, dir_okay=False),
        default=DEFAULT_STATE,
        show_default=True,
        envvar="FTPEXPORT_STATE",
        help="The SQLite ledger file.",
    )(f)


def json_option(f: Any) -> Any:
    return click.option(
        "--json", "as_json", is_flag=True, envvar="FTPEXPORT_JSON", help="Machine-readable output on stdout."
    )(f)


def jobs_option(f: Any) -> Any:
    return click.option(
        "--jobs",
        type=click.IntRange(1, 256),
        default=16,
        show_default=True,
        envvar="FTPEXPORT_JOBS",
        help="Uploads running at once, over all destinations.",
    )(f)


def retries_option(f: Any) -> Any:
    return click.option(
        "--retries",
        type=click.IntRange(0, 1000),
        default=3,
        show_default=True,
        envvar="FTPEXPORT_RETRIES",
        help="Extra attempts after a transient failure (connection lost, timeout, 4xx reply) before a delivery "
        "is parked as failed; a rule file's upload.retries wins.",
    )(f)


def timing_options(f: Any) -> Any:
    f = click.option(
        "--grace",
        type=Seconds(0),
        default=30.0,
        show_default=True,
        envvar="FTPEXPORT_GRACE",
        help="On SIGTERM/SIGINT, seconds running uploads get to finish before they are cut (they stay pending).",
    )(f)
    f = click.option(
        "--pause",
        type=Seconds(0.1),
        default=30.0,
        show_default=True,
        envvar="FTPEXPORT_PAUSE",
        help="Seconds a destination is paused after 3 failures in a row (doubled each time, up to 10 min).",
    )(f)
    return click.option(
        "--backoff",
        type=Seconds(0.01),
        default=2.0,
        show_default=True,
        envvar="FTPEXPORT_BACKOFF",
        help="First retry delay in seconds; doubled at each retry, with jitter, up to 5 min.",
    )(f)


def notify_option(f: Any) -> Any:
    return click.option(
        "--notify-wait",
        type=Seconds(0),
        default=10.0,
        show_default=True,
        envvar="FTPEXPORT_NOTIFY_WAIT",
        help="At the end, seconds the due webhook notifications get to go out; the rest stays pending in the "
        "ledger and the next run or watch sends it.",
    )(f)


def hardlinks_option(f: Any) -> Any:
    return click.option(
        "--allow-hardlinks",
        is_flag=True,
        envvar=ALLOW_HARDLINKS_ENV,
        help="Deliver record files that have more than one hard link, for platforms that deduplicate photos "
        "with hard links. Without it they are refused: a hard link can bring any file ftpexport may read into "
        "a record. ftpexport's own files (secrets store, key, ledger, log) are never sent.",
    )(f)


def existing_ledger(state: Path) -> Ledger:
    """The ledger for a reading command; it must exist."""
    if not state.exists():
        raise ConfigError(f"{state}: no ledger here yet", hint="run an export first, or pass --state")
    return open_ledger(state)
