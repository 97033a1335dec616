"""The live display of ``ftpexport run`` on a terminal (rich), apart so that a run without a terminal
(cron, a pipe, ``--json``) does not import rich: see ``progress``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .dispatch import LaneState
from .display import duration, human_bytes
from .events import Outcome
from .progress import FAILED, Tally, _Destination
from .secret import redact

#: destinations listed at most in the live display; the rest are summed up in one line
ROWS = 12


class LiveProgress(Tally):
    """The live display of a terminal (rich); failures are printed above it as they happen."""

    def __init__(self, stream: TextIO, lanes: Callable[[], dict[str, LaneState]] | None = None) -> None:
        super().__init__()
        self.lanes = lanes or dict
        self.console = Console(file=stream, highlight=False)
        self._live = Live(console=self.console, get_renderable=self.render, refresh_per_second=4, transient=False,
                          redirect_stdout=False, redirect_stderr=True)  # fmt: skip

    def start(self) -> None:
        self._live.start()

    def close(self) -> None:
        self._live.stop()

    def outcome(self, outcome: Outcome) -> None:
        super().outcome(outcome)
        if outcome.result == "deferred":
            with self.lock:
                first = self.destinations[outcome.destination].deferred == 1
            if not first:
                return  # one line per destination: the table counts the others
        if outcome.result in FAILED:
            label = "FAILED" if outcome.result == "failed" else "DEFERRED"
            self.console.print(
                f"[bold red]{label}[/] {escape(outcome.destination)}  {escape(outcome.record_id)}: "
                f"{escape(redact(outcome.error or ''))}"
            )

    def render(self) -> RenderableType:
        done, total = self.records()
        sent, planned = self.byte_totals()
        rate = self.rate()
        elapsed = self.clock() - self.started
        eta = f", ETA {duration((planned - sent) / rate)}" if rate > 0 and planned > sent else ""
        settled, deliveries = self.deliveries()
        head = Text.assemble(
            ("Records ", "bold"), f"{done}/{total}   ", ("Deliveries ", "bold"), f"{settled}/{deliveries}   ",
            ("Sent ", "bold"), f"{human_bytes(sent)} / {human_bytes(planned)}",
            f" ({100 * sent / planned:.0f}%)" if planned else "", "   ",
            ("Rate ", "bold"), f"{human_bytes(rate)}/s   ",
            ("Elapsed ", "bold"), f"{duration(elapsed)}{eta}",
        )  # fmt: skip
        shown = ("delivered", "unchanged", "skipped", "failed", "deferred", "parked")
        counts = Text(" ".join(f"{k} {self.results[k]}" for k in shown if self.results.get(k)) or "starting",
                      style="dim")  # fmt: skip
        return Group(head, counts, self._table())

    def _table(self) -> Table:
        lanes = self.lanes()
        with self.lock:
            rows = [(key, entry, lanes.get(key)) for key, entry in self.destinations.items()]
        # the destinations that need an eye first: failing or paused, then busy, then the rest
        rows.sort(key=lambda r: (-(r[1].failed > 0 or bool(r[2] and r[2].paused_for)), -r[1].active, r[0]))
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", expand=True)
        table.add_column("destination", no_wrap=True, overflow="ellipsis", max_width=40)
        table.add_column("state", no_wrap=True)
        for column in ("done", "failed", "sent"):
            table.add_column(column, no_wrap=True, justify="right", min_width=len(column))
        table.add_column("last error", no_wrap=True, overflow="ellipsis", ratio=1)
        for key, entry, lane in rows[:ROWS]:
            error = entry.last_error or (lane.last_error if lane is not None else None)
            table.add_row(
                escape(key), _state(entry, lane), str(entry.delivered + entry.unchanged), str(entry.failed),
                human_bytes(entry.bytes), escape(redact(error or "")),
            )  # fmt: skip
        if len(rows) > ROWS:
            rest = rows[ROWS:]
            table.add_row(f"... {len(rest)} more", f"{sum(r[1].active for r in rest)} uploading", "", "", "", "")
        return table


def _state(entry: _Destination, lane: LaneState | None) -> str:
    deferred = f", {entry.deferred} deferred" if entry.deferred else ""
    if lane is not None and lane.paused_for > 0:
        return f"[red]paused {duration(lane.paused_for)}{deferred}[/]"
    if entry.active:
        queued = f", {lane.queued} queued" if lane is not None and lane.queued else ""
        return f"[green]uploading {entry.active}[/]{queued}"
    if lane is not None and lane.queued:
        return f"[yellow]{lane.queued} queued[/]"
    if entry.deferred:
        return f"[yellow]{entry.deferred} deferred[/]"
    return "[red]failing[/]" if entry.failed and not entry.delivered else "done"
