"""The command line: parsing and printing only; the work is done by the pipeline and friends.

Here the main group (the options every command shares), the one place our errors become a message
and an exit code, and the entry point; the commands are in export.py (run, watch, demo), views.py
(status, report, history, retry), rules.py (check, preview, test-connection), transcript.py and secrets.py.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import click

from .. import __version__, collector
from ..errors import FtpexportError
from ..vault import DEFAULT_STORE, KEY_ENV, KEY_FILE_ENV, STORE_ENV
from .base import EnvvarGroup, end_quietly_if_reader_gone

#: command -> (module of this package, its function): a command's module is imported when the
#: command runs (or ``--help`` lists them all), so `--version` and a reading command do not pay for
#: the rules (pydantic models, Jinja), the pipeline, paramiko, rich or the webhooks
COMMANDS = {
    "run": ("export", "run"),
    "watch": ("export", "watch"),
    "demo": ("export", "demo"),
    "check": ("rules", "check"),
    "preview": ("rules", "preview"),
    "test-connection": ("rules", "test_connection"),
    "status": ("views", "status"),
    "report": ("views", "report"),
    "history": ("views", "history"),
    "retry": ("views", "retry"),
    "transcript": ("transcript", "transcript"),
    "secrets": ("secrets", "secrets"),
}


class _Group(EnvvarGroup):
    """The commands, loaded on use (``COMMANDS``); turns our errors into one line on stderr and their
    exit code: no traceback for expected failures."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, function = COMMANDS[name]
        command: click.Command = getattr(importlib.import_module(f".{module}", __name__), function)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FtpexportError as exc:
            from ..secret import redact

            click.echo(f"ftpexport: error: {redact(str(exc))}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ftpexport")
@click.option("-v", "--verbose", count=True, envvar="FTPEXPORT_VERBOSE", help="More log output (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, envvar="FTPEXPORT_QUIET", help="Errors only.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="FTPEXPORT_LOG_FORMAT",
    help="Log lines as text or one JSON object a line.",
)
@click.option(
    "--log-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="FTPEXPORT_LOG_FILE",
    help="Write logs to this file instead of stderr.",
)
@click.option(
    "--secrets",
    "secrets_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=STORE_ENV,
    help=f"The encrypted secrets store for ${{secret:NAME}} (default: {DEFAULT_STORE}).",
)
@click.option(
    "--secrets-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=KEY_FILE_ENV,
    help=f"The store's key file, mode 0600 (or the key itself in {KEY_ENV}).",
)
@click.pass_context
def cli(
    ctx: click.Context,
    verbose: int,
    quiet: bool,
    log_format: str,
    log_file: Path | None,
    secrets_file: Path | None,
    secrets_key_file: Path | None,
) -> None:
    """Deliver processed vehicle photos to clients' DMS servers over FTP, FTPS and SFTP."""
    from .options import App

    ctx.obj = App(
        quiet=quiet,
        verbose=verbose,
        log_format=log_format,
        log_file=log_file,
        secrets_file=secrets_file,
        secrets_key_file=secrets_key_file,
    )


def main() -> None:
    """Console entry point."""
    collector.starting()  # run and watch call collector.started() before their first record
    try:
        cli(prog_name="ftpexport")
    except SystemExit:
        end_quietly_if_reader_gone()  # `ftpexport demo | head -1`: no BrokenPipeError at exit
        raise
