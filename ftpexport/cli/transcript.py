"""ftpexport transcript CORRELATION_ID: what was said with the server in each attempt of a delivery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..display import shown
from ..errors import ConfigError, FtpexportError
from ..ledger import AttemptTranscript, display_state
from ..secret import redact
from ..transcripts import KEEP_DAYS, KEEP_DELIVERED
from .base import EnvvarCommand
from .options import App, existing_ledger, json_option, state_option

#: the mark before each kind of entry (``transport.transcript.KINDS``): sent, received, noted, failed
MARKS = {"send": ">", "request": ">", "reply": "<", "status": "<", "info": "*", "tls": "*", "data": "*", "error": "!"}


@click.command(cls=EnvvarCommand)
@click.argument("correlation_id")
@state_option
@json_option
@click.pass_obj
def transcript(app: App, correlation_id: str, state: str | Path, as_json: bool) -> None:
    """What was said with the server in each attempt of the delivery with CORRELATION_ID (the id in
    history, report, status --json, the logs and the webhook): FTP commands and replies, SFTP requests
    and status codes, TLS, the server's banner and host key, bytes sent, milliseconds since the
    attempt started. Secrets are never in it.

    Every failed attempt keeps its transcript; of the delivered ones, the last few per destination.
    """
    app.start_logging()
    with existing_ledger(state) as ledger:
        found = ledger.transcripts(correlation_id)
        known = bool(found) or ledger.correlation_known(correlation_id)
    if not known:
        raise ConfigError(
            f"{display_state(state)}: no delivery or attempt has the correlation id {correlation_id!r}",
            hint="ftpexport history lists the attempts with their correlation ids",
        )
    if not found:
        raise FtpexportError(
            f"the attempts of {correlation_id!r} have no transcript kept",
            hint=f"every failed attempt keeps one, and the last {KEEP_DELIVERED} delivered ones of each "
            f"destination; they are purged after {KEEP_DAYS} days",
        )
    if as_json:
        click.echo(redact(json.dumps({"correlation_id": correlation_id, "attempts": found}, indent=2,
                                     ensure_ascii=False)))  # fmt: skip
        return
    click.echo(redact(transcript_text(found)))


def transcript_text(found: list[AttemptTranscript]) -> str:
    """The transcripts for people: a heading per attempt, then one line per entry."""
    blocks = []
    for number, attempt in enumerate(found, 1):
        blocks.append("\n".join([_heading(number, len(found), attempt), *map(_line, attempt["entries"])]))
    return "\n\n".join(blocks)


def _heading(number: int, total: int, attempt: AttemptTranscript) -> str:
    result = attempt["result"] or "running"
    error = f": {shown(attempt['error'])}" if attempt["error"] else ""
    return (
        f"attempt {number} of {total} with a transcript  {attempt['destination']}  correlation id "
        f"{attempt['correlation_id']}\nstarted {attempt['started_at']}, finished {attempt['finished_at'] or '-'}, "
        f"{result}{error}"
    )


def _line(entry: dict[str, Any]) -> str:
    mark = MARKS.get(str(entry.get("kind")), "*")
    lines = str(entry.get("text", "")).splitlines() or [""]
    first = f"{entry.get('ms', 0):>8} ms  {mark} {lines[0]}"
    return "\n".join([first, *(f"{'':>14}{line}" for line in lines[1:])])
