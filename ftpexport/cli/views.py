"""The ledger's views and the one command that changes it: status, report, history, retry."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from ..display import (
    history_text,
    host_rows,
    hosts_text,
    notification_rows,
    notifications_text,
    report_csv,
    report_rows,
    report_text,
    shown,
    status_rows,
    status_text,
)
from ..errors import ConfigError, printable_name
from ..ledger import display_state
from ..secret import redact
from .base import EnvvarCommand
from .options import App, existing_ledger, json_option, state_option


class _Since(click.ParamType):
    """A point in time: an ISO date or date-time (UTC unless it has an offset), or ``90m``/``6h``/``7d`` ago."""

    name = "when"
    _AGO = {"m": 60, "h": 3600, "d": 86400}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if isinstance(value, datetime):
            moment = value
        else:
            text = str(value).strip()
            try:
                if text[-1:] in self._AGO and text[:-1].isdigit():
                    moment = datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * self._AGO[text[-1]])
                else:
                    moment = datetime.fromisoformat(text)
            except ValueError:
                self.fail(f"{value!r}: expected a date (2026-11-20), a date-time (2026-11-20T08:00+01:00) "
                          "or an age (90m, 6h, 7d)", param, ctx)  # fmt: skip
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds")


_SINCE = _Since()


@click.command(cls=EnvvarCommand)
@state_option
@json_option
@click.option("--client", help="Only this client.")
@click.option("--failed", "only_failed", is_flag=True, help="Only destinations with failed deliveries, and those.")
@click.option("--since", type=_SINCE, help="Only deliveries changed since: 2026-11-20, 2026-11-20T08:00+01:00, 6h.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Deliveries listed at most.")
@click.pass_obj
def status(
    app: App, state: str | Path, as_json: bool, client: str | None, only_failed: bool, since: str | None, limit: int
) -> None:
    """Per client and destination: delivered, pending, failed, the last success, the oldest undelivered
    delivery's age and the last error; then the failed deliveries, the refused record folders and the
    webhook notifications not sent; on a shared ledger (--state postgresql://...), every host with its
    last heartbeat and which host holds which delivery.

    With --json, "deliveries" lists the newest deliveries (only the failed ones with --failed),
    "refused_records" the record folders refused (not valid, no rule file, a name that renders badly),
    "notifications" the pending and failed webhook notifications per client and endpoint, "hosts"
    the hosts of a shared ledger and "held" the deliveries they hold (both empty for a SQLite file).
    Each destination's "server" is what was learned of its server (its "capabilities", "probed_at"
    and "changed_at"), or null when nothing was.
    """
    app.start_logging()
    now = datetime.now(UTC)
    with existing_ledger(state) as ledger:
        routes = ledger.routes(client_id=client, since=since)
        if only_failed:
            routes = [r for r in routes if r["failed"]]
        failed_only = only_failed or not as_json
        listed = ledger.deliveries(status="failed" if failed_only else None, client_id=client, since=since,
                                   limit=limit)  # fmt: skip
        unsent = notification_rows(ledger.notification_totals(client_id=client, since=since), now)
        refused = ledger.refused(client_id=client, since=since)
        coordination = ledger.coordination
        shared = coordination.shared
        hosts = host_rows(coordination.hosts(), now) if shared else []
        held = [d for d in coordination.held() if client in (None, d["client_id"])] if shared else []
        servers = ledger.capabilities() if as_json else {}
    if only_failed:
        unsent = [n for n in unsent if n["failed"]]
    rows = status_rows(routes, now)
    if as_json:
        rows = [{**row, "server": _server(servers.get(row["destination"]))} for row in rows]
        document = {"generated_at": now.isoformat(timespec="seconds"), "state": display_state(state),
                    "since": since, "destinations": rows, "deliveries": [d.as_dict() for d in listed],
                    "refused_records": refused, "notifications": unsent, "hosts": hosts,
                    "held": held}  # fmt: skip
        click.echo(redact(json.dumps(document, indent=2)))
        return
    click.echo(redact(status_text(rows, listed, now, refused)))
    if unsent:
        click.echo(redact("\n" + notifications_text(unsent, now)))
    if shared:
        click.echo(redact("\n" + hosts_text(display_state(state), hosts, held, now)))


def _server(learned: Any) -> dict[str, Any] | None:
    """What was learned of a destination's server, for ``status --json``."""
    if learned is None:
        return None
    return {key: learned[key] for key in ("capabilities", "probed_at", "changed_at")}


@click.command(cls=EnvvarCommand)
@state_option
@click.option("--since", type=_SINCE, required=True, help="From: 2026-11-01, 2026-11-01T08:00+01:00, or 7d (ago).")
@click.option("--until", type=_SINCE, help="Up to, not included (default: now).")
@click.option("--client", help="Only this client.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
    help="A table for people, CSV for a spreadsheet, or JSON.",
)  # fmt: skip
@click.pass_obj
def report(app: App, state: str | Path, since: str, until: str | None, client: str | None, fmt: str) -> None:
    """What was sent to whom: every vehicle delivered in a period, with its destination, remote files,
    bytes and correlation id.

    \b
    ftpexport report --since 2026-11-01 --until 2026-12-01 --client acme-motors --format csv > acme.csv
    """
    app.start_logging()
    with existing_ledger(state) as ledger:
        rows = report_rows(ledger.delivered(since=since, until=until, client_id=client))
    if fmt == "csv":
        report_csv(rows, sys.stdout)
    elif fmt == "json":
        click.echo(json.dumps({"since": since, "until": until, "client": client, "deliveries": rows}, indent=2))
    else:
        click.echo(report_text(rows))


@click.command(cls=EnvvarCommand)
@state_option
@click.option("--client", help="Only this client.")
@click.option(
    "--day", type=click.DateTime(["%Y-%m-%d"]), help="Only attempts started on this day (UTC), e.g. 2026-11-20."
)
@json_option
@click.pass_obj
def history(app: App, state: str | Path, client: str | None, day: datetime | None, as_json: bool) -> None:
    """The audit trail: every delivery attempt with its record, destination, remote paths, bytes and result.

    Answers "what was sent to client X on day D": ftpexport history --client X --day D
    """
    app.start_logging()
    since = until = None
    if day is not None:
        start = day.replace(tzinfo=UTC)
        since, until = start.isoformat(), (start + timedelta(days=1)).isoformat()
    with existing_ledger(state) as ledger:
        rows = ledger.history(client_id=client, since=since, until=until)
        refused = len(ledger.refused(client_id=client))
    if as_json:
        click.echo(json.dumps({"client": client, "day": day.date().isoformat() if day else None, "attempts": rows},
                              indent=2))  # fmt: skip
        return
    click.echo(history_text(rows))
    if refused:  # never attempted, so not in this trail; status lists them
        click.echo(f"{refused} record folder(s) refused and never attempted: ftpexport status lists them")


@click.command(cls=EnvvarCommand)
@state_option
@click.option("--client", help="Only this client's failed deliveries.")
@click.option("--destination", help="Only this destination (e.g. acme-motors/dms).")
@click.option("--record", "record_id", help="Only this record id.")
@click.option("--all", "everything", is_flag=True, help="Every failed delivery.")
@json_option
@click.pass_obj
def retry(
    app: App,
    state: str | Path,
    client: str | None,
    destination: str | None,
    record_id: str | None,
    everything: bool,
    as_json: bool,
) -> None:
    """Requeue failed deliveries: the next run, or the running watch daemon, tries them again.

    Each requeued delivery gets a fresh attempt budget; its earlier attempts stay in the ledger.
    """
    app.start_logging()
    if not (client or destination or record_id or everything):
        raise ConfigError(
            "say which failed deliveries to requeue", hint="--client C, --destination D, --record ID or --all"
        )
    with existing_ledger(state) as ledger:
        requeued = ledger.requeue(client_id=client, destination=destination, record_id=record_id)
    if as_json:
        click.echo(json.dumps({"requeued": [d.as_dict() for d in requeued]}, indent=2))
        return
    for d in requeued:
        click.echo(f"requeued  {d.destination}  {printable_name(d.record_id)}  (was: {shown(d.last_error)})")
    click.echo(f"{len(requeued)} failed deliveries requeued" + ("; run or watch will send them" if requeued else ""))
