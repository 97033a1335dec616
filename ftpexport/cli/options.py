"""What the commands share: the App (output, logging, the secrets store, the rules) and the options
several commands take (--rules, --state, --json, --jobs, --retries, the timings, --lease,
--notify-wait, --allow-hardlinks)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import click

from ..checkup import some_rules
from ..errors import ConfigError
from ..ledger import DEFAULT_LEASE, Ledger, display_state, is_url, open_ledger, state_passwords
from ..logs import setup_logging
from ..recordfiles import ALLOW_HARDLINKS_ENV, own_files
from ..secret import remember
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

    def own_files(self, state: str | Path) -> tuple[tuple[Path, str], ...]:
        """ftpexport's own files (store, key, ledger ``state`` when it is a file, log), which no record
        may deliver."""
        key_file = key_file_path(self.secrets_key_file)
        ledger = None if is_url(state) else Path(state)
        return own_files(store=store_path(self.secrets_file), key_file=key_file, ledger=ledger, log_file=self.log_file)

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


class StateParam(click.ParamType):
    """``--state``: a URL stays a ``str`` (``postgresql://USER@HOST:PORT/DB``, see ``ledger.is_url``),
    anything else is the ``Path`` of a SQLite file. A password the URL carries, and ``PGPASSWORD``,
    are remembered as secrets from here on, so ``redact`` scrubs them from every output."""

    name = "state"
    _file = click.Path(path_type=Path, dir_okay=False)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "PATH|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str | Path:
        if isinstance(value, str) and is_url(value):
            remember_state_secrets(value)
            return value
        return self._file.convert(value, param, ctx)  # type: ignore[no-any-return]


def remember_state_secrets(url: str) -> None:
    """The passwords that may come with a ``--state`` URL: in the URL and in its query
    (``?password=``), each as written and decoded, and libpq's ``PGPASSWORD``."""
    for value in state_passwords(url):
        remember(value)
        remember(unquote(value))
    remember(os.environ.get("PGPASSWORD", ""))


def state_option(f: Any) -> Any:
    return click.option(
        "--state",
        type=StateParam(),
        default=DEFAULT_STATE,
        show_default=True,
        envvar="FTPEXPORT_STATE",
        help="The ledger: the path of a SQLite file (one host), or the URL of a PostgreSQL database several "
        "hosts share, postgresql://USER@HOST:PORT/DB (the password from PGPASSWORD or ~/.pgpass; TLS with "
        "?sslmode=verify-full). A password is never shown.",
    )(f)


def lease_option(f: Any) -> Any:
    return click.option(
        "--lease",
        type=Seconds(1, 3600),
        default=DEFAULT_LEASE,
        show_default=True,
        envvar="FTPEXPORT_LEASE",
        help="On a shared ledger (--state postgresql://...): seconds a host's claims last without its heartbeat "
        "(renewed every third of it); the deliveries of a host that died are taken over by the others after "
        "this long. No effect on a SQLite file.",
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


#: seconds a command an operator waits for (status, history, report, retry) tries a database ledger
#: that cannot be reached before it says so; a daemon's uploads wait out longer failovers
INTERACTIVE_RETRY_FOR = 5.0


def ledger_if_any(state: str | Path) -> Ledger | None:
    """The ledger for a command an operator waits for, or None where its SQLite file does not exist
    yet (none is made; a database is the backend's to open). A database that cannot be reached is
    tried for ``INTERACTIVE_RETRY_FOR`` seconds, not a daemon's 30."""
    if not is_url(state) and not Path(state).exists():
        return None
    return open_ledger(state, retry_for=INTERACTIVE_RETRY_FOR)


def existing_ledger(state: str | Path) -> Ledger:
    """The ledger for a reading command (``ledger_if_any``); a SQLite file must exist."""
    ledger = ledger_if_any(state)
    if ledger is None:
        raise ConfigError(f"{display_state(state)}: no ledger here yet", hint="run an export first, or pass --state")
    return ledger
