"""What ``benchmarks.export`` prints: the table of a run (``report``), and where an ftpexport run's
time goes under py-spy (``profile``)."""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from .common import log
from .export_model import TOOL_TITLES, TOOLS, Context, Measure, Scenario
from .export_runs import command, run_timed

# --- report


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _target(row: tuple[str, str, str, int], rates: dict[str, float]) -> str:
    """The issue's speed targets for this row: "ok", "MISS (...)" or ""."""
    net, protocol, _, conns = row
    me = rates.get("ftpexport")
    if me is None:
        return ""
    wants: list[tuple[str, float]] = []
    if net == "loopback" and protocol == "sftp" and conns == 1:
        wants = [("sftp-b", 0.8), ("rclone", 1.0)]
    elif net == "loopback" and protocol == "sftp":
        wants = [("rclone", 1.0)]
    elif net == "loopback" or (net == "wan" and conns == 4):
        wants = [("lftp", 1.0), ("rclone", 1.0)]
    wants.append(("bare", 0.9))  # the pipeline's overhead: ftpexport at least 0.9x its bare transport
    misses = [f"{TOOL_TITLES[t].split()[0]}<{x:g}x" for t, x in wants if t in rates and me < x * rates[t]]
    checked = [t for t, _ in wants if t in rates]
    if not checked:
        return ""
    return "ok" if not misses else "MISS " + ",".join(misses)


def _short(tool: str) -> str:
    return "before" if tool == "before" else TOOL_TITLES[tool].split()[0]


def report(
    results: dict[Scenario, list[Measure]], ctx: Context, args: argparse.Namespace, facts: dict[str, str]
) -> str:
    lines = []
    mb = 1e6
    lines.append(
        f"ftpexport vs reference tools: median of {args.repeats} runs, MB/s (1 MB = 10^6 bytes of payload); "
        "ratio = ftpexport / tool, above 1 = ftpexport faster"
    )
    for net, p in ctx.payloads.items():
        lines.append(
            f"payload ({net}): {p.inbox.records} vehicles x {p.inbox.images} images: loose {p.inbox.files} "
            f"files {p.inbox.bytes / mb:.1f} MB; zip {p.zip_count} files {p.zip_bytes / mb:.1f} MB"
        )
    lines.append(
        "ftpexport times include Python start-up, the ledger, hashing the records and building the zips "
        "(the tools upload zips made beforehand); its uploads are atomic (temporary name, size check, rename)"
    )
    lines.append(
        "tools: sftp -b (put -r); rclone copy --transfers N --checkers N (sftp: disable_hashcheck; ftps: TLS 1.2, "
        "vsftpd 3.0.3 refuses Go's TLS 1.3); lftp mirror -R -P N (ftps: TLS 1.2, GnuTLS TLS 1.3 uploads to vsftpd "
        f"fail with 426); WAN: benchmarks.wanproxy, {args.wan_delay * 1000:g} ms each way, "
        f"{args.wan_window // 1024} KiB TCP window per connection"
    )
    lines.append("  " + "; ".join(f"{k}: {v}" for k, v in facts.items()))
    lines.append("")
    rows: dict[tuple[str, str, str, int], dict[str, float]] = {}
    cpu: dict[tuple[str, str, str, int], dict[str, float]] = {}
    failed: dict[tuple[str, str, str, int], dict[str, int]] = {}
    for s, measures in results.items():
        good = [m for m in measures if m.ok]
        nbytes = ctx.payloads[s.net].source(s.layout)[2]
        if good:
            rows.setdefault(s.row, {})[s.tool] = nbytes / _median([m.seconds for m in good]) / mb
            cpu.setdefault(s.row, {})[s.tool] = _median([m.cpu for m in good]) / (nbytes / 1e9)
        if len(good) < len(measures):
            failed.setdefault(s.row, {})[s.tool] = len(measures) - len(good)
            rows.setdefault(s.row, {})
    header = f"{'net':8} {'proto':5} {'layout':6} {'conn':>4} | {'ftpexport':>9} |"
    columns = [tool for tool in TOOLS[1:] if any(s.tool == tool for s in results)]
    for tool in columns:
        header += f" {TOOL_TITLES[tool]:>16} |"
    header += " target"
    lines.append(header)
    lines.append("-" * len(header))
    for row in sorted(
        rows, key=lambda r: (r[0] != "loopback", ["sftp", "ftp", "ftps"].index(r[1]), r[2] != "zip", r[3])
    ):
        rates = rows[row]
        me = rates.get("ftpexport")
        text = f"{row[0]:8} {row[1]:5} {row[2]:6} {row[3]:>4} | "
        text += (
            f"{me:9.1f} |" if me is not None else f"{'FAILED' if failed.get(row, {}).get('ftpexport') else '-':>9} |"
        )
        for tool in columns:
            if tool in rates:
                ratio = f"{me / rates[tool]:.2f}x" if me is not None else "-"
                text += f" {rates[tool]:7.1f} {ratio:>8} |"
            elif failed.get(row, {}).get(tool):
                text += f" {'FAILED':>16} |"
            else:
                text += f" {'-':>16} |"
        text += " " + _target(row, rates)
        lines.append(text)
    lines.append("")
    lines.append("client CPU seconds per GB (process and children; 2 cores = the whole machine):")
    for row in sorted(
        cpu, key=lambda r: (r[0] != "loopback", ["sftp", "ftp", "ftps"].index(r[1]), r[2] != "zip", r[3])
    ):
        lines.append(
            f"  {row[0]:8} {row[1]:5} {row[2]:6} x{row[3]}: "
            + ", ".join(f"{_short(t)} {v:.1f}" for t, v in cpu[row].items())
        )
    notes = [f"{s}: {m.note}" for s, ms in results.items() for m in ms if not m.ok]
    if notes:
        lines.append("")
        lines.append("failures (first 10):")
        lines += ["  " + n[:400] for n in notes[:10]]
    return "\n".join(lines)


# --- profile


def profile(ctx: Context, out: Path, chosen: list[Scenario], rate: int, conns: set[int]) -> None:
    """Run each ftpexport scenario (of ``conns`` connections) twice under py-spy; print where the time goes.

    First run, every thread sampled also when it waits (``--idle``): the wall time of the run
    split by phase (imports, hashing, zip, connect, data transfer, size check, rename, ledger ...).
    Second run, only the thread holding the GIL (``--gil``): the functions that burn the CPU.
    The collapsed stacks stay in ``out`` (speedscope.app opens them).
    """
    if shutil.which("py-spy") is None:
        log("installing py-spy with pip ...")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=False)
    out.mkdir(parents=True, exist_ok=True)
    for s in chosen:
        if s.tool != "ftpexport" or s.conns not in conns:
            continue
        name = str(s).replace("/", "-")
        for mode in ("idle", "gil"):
            server = ctx.servers["sftp" if s.protocol == "sftp" else "ftp"]
            server.clear_root()
            scratch = ctx.scratch("profile")
            argv, env = command(ctx, s, scratch)
            raw = out / f"{name}-{mode}.txt"
            spy = [
                "py-spy",
                "record",
                "--format",
                "raw",
                "--rate",
                str(rate),
                "--threads",
                "--nonblocking",
                f"--{mode}",
                "-o",
                str(raw),
                "--",
                *argv,
            ]
            seconds, _, code, _ = run_timed(spy, env, scratch / "stderr.log")
            log(f"profiled {s} ({mode}): {seconds:.1f} s, exit {code}, {raw}")
            if mode == "idle":
                print(f"\n== {s}: {seconds:.2f} s under py-spy ({raw.name})")
                print(phase_breakdown(raw, rate))
            else:
                print(f"  CPU (GIL held), {raw.name}:")
                print(hot_functions(raw))


#: phases of an ftpexport run, by the frames a stack holds: the first rule that matches wins
PHASES: list[tuple[str, tuple[str, ...]]] = [
    ("paramiko reader thread (waits for packets)", ("Transport.run (paramiko",)),
    ("idle worker / main thread waiting", ("Dispatcher._next", "Dispatcher.drain", "Dispatcher.wait_idle")),
    ("upload: size check (stat / SIZE)", ("_check_size",)),
    ("upload: rename", ("SFTPTransport.rename", "FTPTransport.rename", "resume_rename")),
    ("upload: open remote file", ("SFTPClient.open", "SFTPClient._open")),
    ("upload: close remote file", ("SFTPFile.close", "SFTPFile.__exit__")),
    ("upload: wait for the last write acks", ("AckedWriter.finish",)),
    ("upload: SFTP writes (encrypt, send, read acks)", ("AckedWriter.write",)),
    ("upload: STOR: PASV + data connection (+TLS handshake)", ("ntransfercmd",)),
    ("upload: STOR: TLS close of the data connection", ("SSLSocket.unwrap",)),
    ("upload: STOR: wait for 226", ("FTP.voidresp",)),
    ("upload: STOR: send data", ("FTP.storbinary",)),
    ("upload: read the zip from the images (hash, check)", ("ZipStream.",)),
    ("upload: read source", ("SFTPTransport.put", "FTPTransport.put")),
    ("makedirs (stat / mkdir / MKD)", ("makedirs",)),
    ("pool: alive check before reuse", (".alive (ftpexport",)),
    ("pool: connect + login", ("ConnectionPool.acquire",)),
    ("package: zip build", ("SharedPackages._ensure_built",)),
    ("ledger (SQLite)", ("Ledger.", "(ftpexport/ledger/")),
    ("load records + content hash", ("load_record",)),
    ("start-up: imports", ("_find_and_load",)),
    ("rules, planning, rest of the job", ("Exporter._attempt", "Exporter.submit", "Exporter.prepare")),
    ("close: connections, spool", ("Exporter.close", "ConnectionPool.close")),
    ("idle: other waiting threads", ("Condition.wait", "Event.wait", "Thread.join")),
]


def _read_raw(raw: Path) -> list[tuple[str, list[str], int]]:
    """(thread, frames root first, samples) from a py-spy ``--format raw --threads`` file."""
    stacks = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = stack.split(";")
            stacks.append((frames[0], frames[1:], int(count)))
    return stacks


def phase_breakdown(raw: Path, rate: int) -> str:
    """Seconds per phase, summed over the threads that were not idle (1 connection: about the wall time)."""
    phases: dict[str, int] = {}
    for _, frames, count in _read_raw(raw):
        joined = ";".join(frames)
        label = next((label for label, keys in PHASES if any(k in joined for k in keys)), "other")
        phases[label] = phases.get(label, 0) + count
    busy = {k: v for k, v in phases.items() if not k.startswith(("idle", "paramiko reader"))}
    # several busy threads at once (prefetch, 4 connections) would add up to more than the wall time
    total = sum(busy.values())
    lines = [f"  busy samples: {total} ({total / rate:.2f} s at {rate}/s); per phase:"]
    for label, count in sorted(busy.items(), key=lambda x: -x[1]):
        lines.append(f"    {count / rate:6.2f} s {100 * count / max(total, 1):5.1f}%  {label}")
    return "\n".join(lines)


def _function(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1].rstrip(')')})" if where else name


def hot_functions(raw: Path, top: int = 14) -> str:
    """Self and inclusive shares of the busiest functions (samples taken with ``--gil``)."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for _, frames, count in _read_raw(raw):
        total += count
        if frames:
            leaf = _function(frames[-1])
            own[leaf] = own.get(leaf, 0) + count
        for function in {_function(f) for f in frames}:
            inclusive[function] = inclusive.get(function, 0) + count
    if not total:
        return "    (no samples)"
    lines = [f"    {total} samples; self:"]
    lines += [f"      {100 * c / total:5.1f}%  {f}" for f, c in sorted(own.items(), key=lambda x: -x[1])[:top]]
    lines.append("    inclusive (paramiko / ftplib / ssl / zipfile / ftpexport):")
    keep = ("paramiko", "ftplib", "ssl.py", "zipfile", "ftpexport", "packet", "sftp", "hmac", "channel", "transport")
    picked = [(f, c) for f, c in inclusive.items() if any(k in f for k in keep) or "(" not in f]
    lines += [f"      {100 * c / total:5.1f}%  {f}" for f, c in sorted(picked, key=lambda x: -x[1])[:top]]
    return "\n".join(lines)
