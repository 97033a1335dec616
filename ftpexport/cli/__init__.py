"""The command line: parsing and printing only; the work is done by the pipeline and friends.

Here the main group (the options every command shares), the one place our errors become a message
and an exit code, and the entry point; the commands are in export.py (run, watch, demo), views.py
(status, report, history, retry), rules.py (check, preview, test-connection) and secrets.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..errors import FtpexportError
from ..secret import redact
from ..vault import DEFAULT_STORE, KEY_ENV, KEY_FILE_ENV, STORE_ENV
from .base import EnvvarGroup, end_quietly_if_reader_gone
from .export import demo, run, watch
from .options import App
from .rules import check, preview, test_connection
from .secrets import secrets
from .views import history, report, retry, status

# The pipeline, the rules (pydantic models), paramiko, rich and the webhooks are imported by the
# commands that use them (inside the function): `status`, `history` or `--version` start fast.


class _Group(EnvvarGroup):
    """Turns our errors into one line on stderr and their exit code: no traceback for expected failures."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FtpexportError as exc:
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
    ctx.obj = App(
        quiet=quiet,
        verbose=verbose,
        log_format=log_format,
        log_file=log_file,
        secrets_file=secrets_file,
        secrets_key_file=secrets_key_file,
    )


for command in (run, watch, demo, check, preview, test_connection, status, report, history, retry, secrets):
    cli.add_command(command)


def main() -> None:
    """Console entry point."""
    try:
        cli(prog_name="ftpexport")
    except SystemExit:
        end_quietly_if_reader_gone()  # `ftpexport demo | head -1`: no BrokenPipeError at exit
        raise
