"""The commands about rule files: check them, preview where a record would go, test-connection."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..checkup import check_rules, probe_destinations, rules_to_check
from ..display import check_text, preview_text, probe_text
from ..secret import redact
from .base import EnvvarCommand
from .options import App, hardlinks_option, json_option, ledger_if_any, rules_option, state_option


@click.command(cls=EnvvarCommand)
@click.argument("directory", metavar="DIR|FILE", type=click.Path(path_type=Path))
@json_option
@click.pass_obj
def check(app: App, directory: Path, as_json: bool) -> None:
    """Validate every rule file of DIR, or the one rule FILE; exit 2 if any is wrong or DIR holds none."""
    app.start_logging()
    ruleset = rules_to_check(directory)
    files = check_rules(ruleset, app.store())
    if as_json:
        click.echo(json.dumps({"directory": str(directory), "files": files}, indent=2))
    elif files:
        click.echo(check_text(files))
    if ruleset.errors:
        sys.exit(2)


@click.command(cls=EnvvarCommand)
@click.argument("record", type=click.Path(path_type=Path))
@rules_option
@state_option
@hardlinks_option
@json_option
@click.pass_obj
def preview(app: App, record: Path, rules_dir: Path, state: str | Path, allow_hardlinks: bool, as_json: bool) -> None:
    """Show where RECORD would go and under which names, without connecting anywhere.

    Its files are checked as run and watch check them (--state names the ledger they never send).
    """
    from ..folders import record_folder
    from ..pipeline import Options
    from ..plan import preview_record

    app.start_logging()
    options = Options(allow_hardlinks=allow_hardlinks, protected=app.own_files(state))
    info = preview_record(record_folder(record), app.rules(rules_dir), options)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(preview_text(info))


@click.command("test-connection", cls=EnvvarCommand)
@click.argument("client")
@rules_option
@click.option("--user", "user_id", help="Test this user's own destinations instead of the client's.")
@click.option("--destination", "only", help="Only the destination of this name.")
@state_option
@json_option
@click.pass_obj
def test_connection(
    app: App, client: str, rules_dir: Path, user_id: str | None, only: str | None, state: str | Path, as_json: bool
) -> None:
    """Connect to CLIENT's destinations; write, rename and delete a probe file; report each step; then
    learn what each server does (features, renames, folders, sessions at once) and show it.

    What was learned is kept in the ledger (--state) when there is one, for run and watch to work by.
    For SFTP the server key fingerprint is shown, to check it with the server's operator and pin it.
    Exit status 0 when every destination passed, 1 otherwise.
    """
    from ..ledger import display_state

    app.start_logging()
    # an SFTP destination may have no key pinned yet: the probe shows the key to pin, and refuses it
    ruleset = app.rules(rules_dir, allow_unpinned_host_keys=True)
    # a ledger that exists keeps what was learned; none is made here (test-connection may run anywhere)
    ledger = ledger_if_any(state)
    try:
        reports = probe_destinations(ruleset, client, user_id, only, app.store(), ledger, display_state(state))
    finally:
        if ledger is not None:
            ledger.close()
    if as_json:
        document = {"client": client, "user": user_id, "destinations": [r.as_dict() for r in reports]}
        click.echo(redact(json.dumps(document, indent=2)))
    else:
        click.echo(redact(probe_text(reports)))
    sys.exit(0 if all(r.ok for r in reports) else 1)
