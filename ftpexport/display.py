"""What people read after a command: summary tables, status, history; text for people, dicts for JSON."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from .errors import printable, printable_name
from .ledger import Delivery

if TYPE_CHECKING:
    from .events import Summary


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def duration(seconds: float) -> str:
    """``75`` -> ``1m15s``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain text table with aligned columns."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def summary_by_client(summary: Summary) -> dict[str, dict[str, Any]]:
    """``{client: {delivered, skipped, unchanged, failed, parked, deferred, bytes, first_error}}``."""
    clients: dict[str, dict[str, Any]] = {}
    for o in summary.outcomes:
        entry = clients.setdefault(
            o.client_id,
            {"delivered": 0, "skipped": 0, "unchanged": 0, "failed": 0, "parked": 0, "deferred": 0, "bytes": 0,
             "first_error": None},
        )  # fmt: skip
        entry[o.result] += 1
        entry["bytes"] += o.bytes if o.result == "delivered" else 0
        if o.result in ("failed", "deferred") and entry["first_error"] is None:
            entry["first_error"] = f"{o.destination}: {o.error}"
    return clients


def summary_text(summary: Summary, elapsed: float) -> str:
    """The end-of-run report."""
    by_client = summary_by_client(summary)
    columns = ["delivered", "unchanged", "skipped", "failed", "deferred", "parked"]
    rows = [[client, *(str(c[k]) for k in columns), human_bytes(c["bytes"])] for client, c in sorted(by_client.items())]
    parts = []
    if rows:
        parts.append(table(rows, ["client", *columns, "sent"]))
    for client, c in sorted(by_client.items()):
        if c["first_error"]:
            parts.append(f"{client}: first error: {c['first_error']}")
    for error in summary.record_errors:
        parts.append(f"record refused: {error}")
    if summary.incomplete:
        parts.append(f"{len(summary.incomplete)} record folder(s) without vehicle.json yet, left for later")
    if summary.count("deferred"):
        parts.append(f"{summary.count('deferred')} deliveries deferred: still pending, the next run tries them again")
    if summary.count("parked") or summary.count("failed"):
        parts.append("failed deliveries are parked: fix the cause, then `ftpexport retry --client C` requeues them")
    sent = sum(c["bytes"] for c in by_client.values())
    parts.append(
        f"{summary.count('delivered')} delivered, {summary.count('unchanged') + summary.count('skipped')} unchanged, "
        f"{summary.count('failed')} failed, {summary.count('deferred')} deferred, "
        f"{summary.count('parked')} parked earlier, {len(summary.record_errors)} refused records; "
        f"{human_bytes(sent)} in {elapsed:.1f} s"
    )
    return "\n".join(parts)


def summary_json(summary: Summary, elapsed: float) -> dict[str, Any]:
    """The end-of-run report as a JSON-ready dict."""
    return {
        "ok": summary.ok,
        "elapsed_seconds": round(elapsed, 3),
        "delivered": summary.count("delivered"),
        "skipped": summary.count("skipped"),
        "unchanged": summary.count("unchanged"),
        "failed": summary.count("failed"),
        "deferred": summary.count("deferred"),
        "parked": summary.count("parked"),
        "clients": summary_by_client(summary),
        "deliveries": [o.__dict__ | {"remote_paths": list(o.remote_paths)} for o in summary.outcomes],
        "record_errors": [{"path": e.path, "reason": str(e)} for e in summary.record_errors],
        "incomplete": [str(p) for p in summary.incomplete],
    }


def _when(stamp: str | None, now: datetime) -> str:
    """``2026-11-22T09:16:02+00:00 (3m ago)`` from a ledger time."""
    if not stamp:
        return "-"
    return f"{datetime.fromisoformat(stamp).isoformat(timespec='seconds')} ({duration(age_seconds(stamp, now))} ago)"


def age_seconds(stamp: str | None, now: datetime) -> float | None:
    """Seconds from a ledger time (ISO 8601 with offset) to ``now``."""
    if not stamp:
        return None
    return max(0.0, (now - datetime.fromisoformat(stamp)).total_seconds())


def status_rows(routes: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The ledger's per-destination rows with the age of the oldest undelivered delivery added."""
    return [{**r, "oldest_undelivered_age_seconds": age_seconds(r["oldest_undelivered"], now)} for r in routes]


def status_text(
    routes: list[dict[str, Any]], failed: list[Delivery], now: datetime, refused: Sequence[dict[str, Any]] = ()
) -> str:
    """``ftpexport status`` for people: one line per client and destination, then what needs an eye."""
    if not routes:
        if refused:
            return "the ledger has no delivery for these filters\n\n" + refused_text(refused, now)
        return "nothing matches: the ledger has no delivery for these filters"
    rows = [
        [r["client_id"], r["destination"], str(r["delivered"]), str(r["pending"]), str(r["failed"]),
         _when(r["last_success"], now),
         duration(r["oldest_undelivered_age_seconds"]) if r["oldest_undelivered"] else "-"]
        for r in routes
    ]  # fmt: skip
    headers = ["client", "destination", "delivered", "pending", "failed", "last success", "oldest undelivered"]
    parts = [table(rows, headers)]
    errors = [r for r in routes if r["last_error"]]
    if errors:
        parts += ["", "last errors:"]
        parts += [f"  {r['destination']}  at {_when(r['last_error_at'], now)}: {shown(r['last_error'])}"
                  for r in errors]  # fmt: skip
    if failed:
        parts += ["", "failed deliveries (parked: fix the cause, then `ftpexport retry --client C` requeues them):"]
        parts += [f"  {d.destination}  {printable_name(d.record_id)}  (attempts: {d.attempts}): {shown(d.last_error)}"
                  for d in failed]  # fmt: skip
    if refused:
        parts += ["", refused_text(refused, now)]
    return "\n".join(parts)


def notification_rows(totals: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The ledger's unsent webhook notifications per (client, endpoint), the URL without its query, with
    the age of the oldest pending one."""
    from .webhooks import endpoint  # the webhooks package brings the rules: only when there is one to show

    return [{**t, "url": endpoint(t["url"]), "oldest_pending_age_seconds": age_seconds(t["oldest_pending"], now)}
            for t in totals]  # fmt: skip


def notifications_text(rows: list[dict[str, Any]], now: datetime) -> str:
    """``status``: the webhook notifications not sent, per client and endpoint, and their last error."""
    table_rows = [
        [r["client_id"], r["url"], str(r["pending"]), str(r["failed"]),
         duration(r["oldest_pending_age_seconds"]) if r["oldest_pending"] else "-"]
        for r in rows
    ]  # fmt: skip
    parts = ["webhook notifications not sent:",
             table(table_rows, ["client", "endpoint", "pending", "failed", "oldest pending"])]  # fmt: skip
    errors = [r for r in rows if r["last_error"]]
    if errors:
        parts += ["", "webhook last errors (failed ones are not sent again):"]
        parts += [f"  {r['client_id']}  at {_when(r['last_error_at'], now)}: {shown(r['last_error'])}" for r in errors]
    return "\n".join(parts)


def refused_text(refused: Sequence[dict[str, Any]], now: datetime) -> str:
    """The refused record folders: each with its reason, then what is known of it and when."""
    lines = ["refused records (not sent until fixed; a changed record or rule file is read again):"]
    for r in refused:
        known = [r["kind"]]
        known += [f"{label} {r[key]}" for label, key in (("client", "client_id"), ("record", "record_id"),
                                                         ("rule file", "rule_file")) if r[key]]  # fmt: skip
        times = "once" if r["times"] == 1 else f"{r['times']} times since {_when(r['first_seen'], now)}"
        lines.append(f"  {printable_name(r['record_path'])}: {shown(r['reason'])}")
        lines.append(f"    {', '.join(known)}; refused {times}, last {_when(r['last_seen'], now)}")
    return "\n".join(lines)


def host_rows(hosts: Sequence[Mapping[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The hosts of a shared ledger (``Coordination.hosts``) with the age of each one's last heartbeat."""
    return [{**h, "heartbeat_age_seconds": age_seconds(h["heartbeat_at"], now)} for h in hosts]


def hosts_text(state: str, hosts: Sequence[Mapping[str, Any]], held: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """``status`` on a shared ledger: each host with its last heartbeat and what it holds, then which
    host holds which delivery. ``state`` is the ledger as it may be shown (``display_state``)."""
    if not hosts:
        parts = [f"hosts sharing {state}: none (no run or watch is using it)"]
    else:
        rows = [[h["name"], "yes" if h["alive"] else "NO, its lease ran out", _when(h["heartbeat_at"], now),
                 str(h["deliveries"]), str(h["connections"])] for h in hosts]  # fmt: skip
        parts = [f"hosts sharing {state}:",
                 table(rows, ["host", "alive", "last heartbeat", "deliveries", "connections"])]  # fmt: skip
    if not held:
        parts += ["", "deliveries held by a host: none"]
        return "\n".join(parts)
    rows = [[d["holder"], d["destination"], d["record_id"], _when(d["since"], now), _until(d["lease_until"], now)]
            for d in held]  # fmt: skip
    parts += ["", "deliveries held by a host:", table(rows, ["host", "destination", "record", "claimed", "lease"])]
    return "\n".join(parts)


def _until(stamp: str, now: datetime) -> str:
    """``until 2026-11-22T09:22:39+00:00 (18s left)``, or ``ran out 3s ago``, from a ledger time."""
    left = (datetime.fromisoformat(stamp) - now).total_seconds()
    if left < 0:
        return f"ran out {duration(-left)} ago"
    return f"until {datetime.fromisoformat(stamp).isoformat(timespec='seconds')} ({duration(left)} left)"


REPORT_COLUMNS = ["delivered_at", "client_id", "user_id", "destination", "record_id", "vin", "remote_paths", "bytes",
                  "attempts", "correlation_id"]  # fmt: skip


def report_rows(deliveries: list[Delivery]) -> list[dict[str, Any]]:
    """``ftpexport report``: one row per vehicle delivered to a destination."""
    return [{k: (list(d.remote_paths) if k == "remote_paths" else getattr(d, k)) for k in REPORT_COLUMNS}
            for d in deliveries]  # fmt: skip


def report_csv(rows: list[dict[str, Any]], stream: TextIO) -> None:
    """The report as CSV (remote paths joined by ``;``), for a spreadsheet."""
    writer = csv.DictWriter(stream, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "remote_paths": ";".join(row["remote_paths"])})


def report_text(rows: list[dict[str, Any]]) -> str:
    """The report as a table, with a total per client."""
    if not rows:
        return "nothing was delivered in this period"
    lines = table(
        [[r["delivered_at"][:19].replace("T", " "), printable_name(r["client_id"]), r["destination"],
          printable_name(r["record_id"]), printable_name(r["vin"] or ""),
          human_bytes(r["bytes"]), printable_name(", ".join(r["remote_paths"]))] for r in rows],
        ["delivered (UTC)", "client", "destination", "record", "VIN", "bytes", "remote paths"],
    )  # fmt: skip
    totals: dict[str, list[Any]] = {}
    for r in rows:
        entry = totals.setdefault(r["client_id"], [set(), set(), 0])
        entry[0].add(r["record_id"])
        entry[1].add(r["destination"])
        entry[2] += r["bytes"]
    summary = [
        f"{printable_name(client)}: {len(records)} vehicle(s) to {len(destinations)} destination(s), "
        f"{human_bytes(size)}"
        for client, (records, destinations, size) in sorted(totals.items())
    ]
    return "\n".join([lines, "", *summary])


def probe_text(reports: list[Any]) -> str:
    """``ftpexport test-connection`` for people: each destination, each step, and the server key."""
    parts = []
    for report in reports:
        parts.append(
            f"{report.destination}  {report.url}  folder {report.remote_dir}: {'OK' if report.ok else 'FAILED'}"
        )
        for step in report.steps:
            mark = "ok  " if step.ok else "FAIL"
            parts.append(f"  {mark} {step.name:<20} {step.ms:>6} ms" + (f"  {step.detail}" if step.detail else ""))
        parts += [f"  warning: {warning}" for warning in getattr(report, "warnings", [])]
        if report.fingerprint:
            parts.append(f"  server key fingerprint: {report.fingerprint}")
            if report.host_key:
                parts.append(
                    f'  to pin it, after checking it with the server\'s operator: host_key: "{report.host_key}"'
                )
        if report.capabilities is not None:
            parts.append("  what the server does:")
            parts += [f"    {line}" for line in capability_lines(report.capabilities.as_dict())]
            if report.kept:
                parts.append(f"    ({report.kept})")
    return "\n".join(parts)


def shown(text: str | None) -> str:
    """A server's words the ledger kept (an error, a banner) as one line of text: a server's escape
    sequences and line breaks, in what it said and in errors kept before errors were made text
    (``errors.printable``), shown as their escapes and spaces."""
    return printable(text or "", one_line=True)


def _yes_no(value: Any, yes: str = "yes", no: str = "no") -> str:
    return "not known" if value is None else yes if value else no


def capability_lines(caps: dict[str, Any]) -> list[str]:
    """What was learned of a server (``ServerCapabilities.as_dict``), a line per subject, for people."""
    lines = []
    if caps.get("banner"):  # the server's words: shown as text (an escape sequence as its escape)
        lines.append(f"banner: {shown(str(caps['banner']))}")
    if caps.get("protocol") == "ftp" or "feat" in caps:
        if caps.get("feat") is None:
            lines.append("features: not known (the server does not answer FEAT)")
        else:
            from .transport.capabilities import FEAT_FIELDS  # here: status, which imports display, stays light

            features = (f"{label} {_yes_no(caps.get(key))}" for label, key in FEAT_FIELDS.items())
            lines.append("features: " + ", ".join(features))
    if caps.get("protocol") == "sftp":
        extensions = shown(", ".join(sorted(caps.get("extensions") or {}))) or "none"
        lines.append(f"SFTP version {caps.get('sftp_version')}, extensions: {extensions}")
        limits = caps.get("limits")
        if limits:
            lines.append("limits: " + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in limits.items()))
    if caps.get("size") is False:
        lines.append("sizes: not reported (SIZE): the size of an upload is not checked on this server")
    rename = caps.get("rename")
    replaces = caps.get("rename_replaces")
    if rename is False:
        lines.append("rename: refused (uploads with upload.atomic: true fail here; see the rename step)")
    elif rename is not None:
        how = {True: "replaces an existing file",
               False: "does not replace an existing file: it is deleted first"}.get(replaces, "")  # fmt: skip
        lines.append("rename: works" + (f", {how}" if how else ""))
    if caps.get("pipelining") is False:
        lines.append("RNFR and RNTO: one at a time (the server did not take them sent together)")
    if caps.get("mkdir_existing_fails") is not None:
        lines.append("making a folder that exists: " + _yes_no(caps["mkdir_existing_fails"], "refused", "accepted"))
    if caps.get("sessions"):
        lines.append(f"sessions at once: {caps['sessions']}, one more was refused (connections are capped at that)")
    elif caps.get("sessions_tried"):
        lines.append(f"sessions at once: {caps['sessions_tried']} accepted (as many as tried)")
    return lines


def history_text(rows: list[dict[str, Any]]) -> str:
    """``ftpexport history`` for people: one line per attempt."""
    if not rows:
        return "no delivery attempt matches"
    table_rows = [
        [
            r["started_at"][:19].replace("T", " "),
            r["destination"],
            printable_name(r["record_id"]),
            r["result"] or "running",
            human_bytes(r["bytes"] or 0),
            printable_name(r["correlation_id"]),
            "yes" if r.get("transcript") else "-",
            printable_name(", ".join(r["remote_paths"])) or shown(r["error"] or ""),
        ]
        for r in rows
    ]
    sent = sum(r["bytes"] or 0 for r in rows if r["result"] == "delivered")
    delivered = sum(1 for r in rows if r["result"] == "delivered")
    kept = sum(1 for r in rows if r.get("transcript"))
    headers = ["started (UTC)", "destination", "record", "result", "bytes", "correlation id", "transcript",
               "remote paths / error"]  # fmt: skip
    text = table(table_rows, headers) + f"\n{len(rows)} attempts, {delivered} delivered, {human_bytes(sent)} sent"
    if kept:
        text += f"\n{kept} with a transcript of what was said with the server: ftpexport transcript CORRELATION_ID"
    return text


def check_text(files: dict[str, dict[str, Any]]) -> str:
    """What ``check`` found, per rule file: ok or INVALID, then its errors and warnings."""
    lines = []
    for name, entry in sorted(files.items()):
        lines.append(f"{name}: {'ok' if entry['ok'] else 'INVALID'}")
        lines.extend(f"  error: {error['field'] or '(file)'}: {error['reason']}" for error in entry["errors"])
        lines.extend(f"  warning: {warning}" for warning in entry["warnings"])
    return "\n".join(lines)


def preview_text(info: dict[str, Any]) -> str:
    """What ``preview`` shows of a record: its files (and an archive's listing), where they would go."""
    user = f", user {info['user_id']}" if info["user_id"] else ""
    lines = [f"record {info['record']} ({info['id']}, client {info['client_id']}{user})",
             f"rules: {info['rule_file']}, format {info['format']}", "files:"]  # fmt: skip
    for f in info["files"]:
        lines.append(f"  {f['name']}  {human_bytes(f['bytes'])}")
    if info["archive_listing"]:
        sources = info["sources"] + [""]
        for name, source in zip(info["archive_listing"], sources, strict=False):
            lines.append(f"    {name}" + (f"  <- {source}" if source else "  (metadata)"))
    lines.append("destinations:")
    for d in info["destinations"]:
        lines.append(f"  {d['destination']} ({d['level']} level)  {d['url']}")
        for path in d["files"]:
            lines.append(f"    {path}")
    return "\n".join(lines)
