"""Scale: hundreds of destinations in one ``ftpexport run``, and a 1 GB record.

Issue 6, point 3. Two parts:

* fleet: ``--ftp`` FTP destinations (one pyftpdlib server, one user and home folder each) plus
  ``--sftp`` SFTP ones (one OpenSSH server, one folder each), ``--records`` records each, in one
  ``ftpexport run``. Checks every delivery made it; prints the peak RSS of the run (wait4, this
  process only), the most connections it held open at once to the servers (polled from /proc)
  next to ``--jobs``, and its wall time next to the sum of single-destination times (measured
  runs of one destination, extrapolated; and the sum of attempt durations in the ledger).
* big record: one record of ``--big-gb`` GB of images (40 images) to one FTP and/or SFTP
  destination, files on tmpfs; peak RSS next to the same record with tiny images.

    python -m benchmarks.scale                       # the issue's sizes
    python -m benchmarks.scale --ftp 20 --sftp 4 --big-gb 0.1   # a quick look

Exit status 1 when a delivery did not arrive (a real failure); a missed target is printed, not fatal.
SFTP needs root and /usr/sbin/sshd (tests/servers.py starts it with a temporary system user).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .ftp_server import ftp_server
from .product import exit_on_sigterm, ftpexport, machine_note, product_env, run_measured
from .report import mb, median, open_ro, parse_ts, pyspy_summary, table, verdict
from .synthetic import PASSWORD_ENV, SFTP_PASSWORD_ENV, ftp_rule, sftp_rule, vin, write_record

RSS_FLEET_MB = 300
RSS_BIG_MB = 150


def _workdir(base: str | None) -> Path:
    root = base or ("/dev/shm" if Path("/dev/shm").is_dir() else None)
    return Path(tempfile.mkdtemp(prefix="ftpexport-bench-scale-", dir=root))


@contextlib.contextmanager
def _sftp(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    if os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists():
        print("SFTP skipped: needs root and /usr/sbin/sshd")
        yield None
        return
    from servers import openssh_server

    with openssh_server() as server:
        yield server


def _make_inbox(inbox: Path, clients: list[str], records: int, images: list[int]) -> int:
    count = 0
    for c, client in enumerate(clients):
        for k in range(1, records + 1):
            count += 1
            write_record(
                inbox / f"{client}-{k}",
                record_id=f"veh-{client}-{k}",
                client_id=client,
                vin_=vin(c * 100 + k),
                images=images,
                user_id=f"u-{k}",
                seed=count,
            )
    return count


def _write_rules(folder: Path, ftp: Any, ftp_clients: list[str], sftp: Any, sftp_clients: list[str],
                 sub: str = "") -> None:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    for client in ftp_clients:
        (folder / f"{client}.yaml").write_text(ftp_rule(client, client, ftp.port, f"{sub}incoming"))
    for client in sftp_clients:
        (folder / f"{client}.yaml").write_text(sftp_rule(client, sftp.url(f"{sub}{client}"), sftp.host_key))


def _ledger_figures(state: Path) -> dict[str, Any]:
    """From the ledger: deliveries by status, attempts, the sum of attempt durations by scheme, and
    the most attempts that overlapped in time."""
    db = open_ro(state)
    try:
        status = dict(db.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall())
        rows = db.execute(
            "SELECT d.destination, a.started_at, a.finished_at, a.result, a.error FROM attempts a"
            " JOIN deliveries d ON d.id = a.delivery_id"
        ).fetchall()
    finally:
        db.close()
    durations: dict[str, float] = defaultdict(float)
    first_start = min((parse_ts(row["started_at"]) for row in rows), default=float("nan"))
    edges = []
    results: dict[str, int] = defaultdict(int)
    errors: dict[str, int] = defaultdict(int)
    for row in rows:
        results[row["result"] or "unfinished"] += 1
        if row["error"]:
            errors[f"{row['destination'][0]}: {row['error'][:90]}"] += 1
        if not row["finished_at"]:
            continue
        start, end = parse_ts(row["started_at"]), parse_ts(row["finished_at"])
        kind = "sftp" if row["destination"].startswith("s") else "ftp"
        durations[kind] += end - start
        edges += [(start, 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        running += step
        peak = max(peak, running)
    return {"status": status, "attempts": len(rows), "results": dict(results), "durations": dict(durations),
            "overlap": peak, "errors": dict(errors),
            "first_start": first_start}  # fmt: skip


def _remote_files(root: Path | None, suffix: str = ".zip") -> int:
    if root is None or not root.exists():
        return 0
    return sum(1 for p in root.rglob(f"*{suffix}") if not p.name.startswith("."))


def _baseline(kind: str, clients: list[str], work: Path, server_rules: dict[str, Any], args: argparse.Namespace,
              env: dict[str, str], images: list[int]) -> list[tuple[float, float]]:  # fmt: skip
    """One ``ftpexport run`` per client, alone: (elapsed in the run, wall time of the process)."""
    times = []
    for client in clients:
        base = work / f"baseline-{client}"
        inbox = base / "inbox"
        _make_inbox(inbox, [client], args.records, images)
        rules = base / "rules"
        if kind == "ftp":
            _write_rules(rules, server_rules["ftp"], [client], None, [], sub="baseline/")
        else:
            _write_rules(rules, None, [], server_rules["sftp"], [client], sub="baseline-")
        result = run_measured(
            ftpexport(
                "run", inbox, "--rules", rules, "--state", base / "ledger.sqlite3", "--jobs", args.jobs, "--json"
            ),
            env=env,
        )
        if result.returncode != 0:
            print(f"baseline {client}: exit {result.returncode}\n{result.stderr[-2000:]}")
            continue
        times.append((json.loads(result.stdout)["elapsed_seconds"], result.wall))
    return times


def fleet(args: argparse.Namespace, work: Path) -> bool:
    ftp_clients = [f"f{i:03d}" for i in range(1, args.ftp + 1)]
    images = [args.image_kb * 1024] * args.images
    print(f"\n== fleet: {args.ftp} FTP + {args.sftp} SFTP destinations x {args.records} records"
          f" ({args.images} images of {args.image_kb} KB), --jobs {args.jobs}")  # fmt: skip
    with ftp_server(work / "ftp-root", ftp_clients, workers=args.ftp_workers) as ftp, _sftp(args.sftp > 0) as sftp:
        sftp_clients = [f"s{i:02d}" for i in range(1, args.sftp + 1)] if sftp else []
        env = product_env(**{PASSWORD_ENV: ftp.password}, **({SFTP_PASSWORD_ENV: sftp.password} if sftp else {}))
        rules = work / "rules"
        _write_rules(rules, ftp, ftp_clients, sftp, sftp_clients)
        t0 = time.monotonic()
        expected = _make_inbox(work / "inbox", ftp_clients + sftp_clients, args.records, images)
        print(f"inbox: {expected} records written in {time.monotonic() - t0:.1f} s")

        servers = {"ftp": ftp, "sftp": sftp}
        base_ftp = _baseline("ftp", ftp_clients[: args.baseline], work, servers, args, env, images)
        base_sftp = _baseline("sftp", sftp_clients[: args.baseline], work, servers, args, env, images) if sftp else []

        state = work / "state" / "ledger.sqlite3"
        ports = [ftp.port] + ([sftp.port] if sftp else [])
        print("running the fleet ...", flush=True)
        result = run_measured(
            ftpexport("run", work / "inbox", "--rules", rules, "--state", state, "--jobs", args.jobs, "--json"),
            env=env,
            control_ports=ports,
            timeout=args.timeout,
            server_pids=[ftp.process.pid],
        )
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError:
            report = {}
            print(f"run printed no JSON (exit {result.returncode}):\n{result.stderr[-3000:]}")
        empty = {"status": {}, "attempts": 0, "results": {}, "durations": {}, "overlap": 0, "errors": {},
                 "first_start": float("nan")}  # fmt: skip
        figures = _ledger_figures(state) if state.exists() else empty
        on_server = _remote_files(ftp.root) + (_remote_files(sftp.root) if sftp else 0)
        # the baseline copies sit under baseline folders of the same servers
        on_server_fleet = on_server - len(base_ftp) * args.records - len(base_sftp) * args.records
        profile = _profile_fleet(work, rules, env, args) if args.profile else ""

    delivered = figures["status"].get("delivered", 0)
    all_there = result.returncode == 0 and delivered == expected and on_server_fleet >= expected
    t_ftp = median([t[0] for t in base_ftp])
    t_sftp = median([t[0] for t in base_sftp]) if base_sftp else 0.0
    w_ftp = median([t[1] for t in base_ftp])
    w_sftp = median([t[1] for t in base_sftp]) if base_sftp else 0.0
    serial = len(ftp_clients) * t_ftp + len(sftp_clients) * t_sftp
    serial_wall = len(ftp_clients) * w_ftp + len(sftp_clients) * w_sftp
    mon = result.monitor
    assert mon is not None
    rss_mb = result.peak_rss_kb / 1024
    rows = [
        ["records / deliveries expected", expected, ""],
        ["exit status of run", result.returncode, "0 = all delivered"],
        ["delivered (run --json)", report.get("delivered", "?"),
         f"failed {report.get('failed', '?')}, deferred {report.get('deferred', '?')}"],
        ["delivered (ledger)", delivered, json.dumps(figures["status"])],
        ["zip files on the servers", on_server_fleet, ""],
        ["attempts (ledger)", figures["attempts"], json.dumps(figures["results"])],
        ["wall time of the run", f"{result.wall:.1f} s", f"in-run elapsed {report.get('elapsed_seconds', '?')} s"],
        ["sum of single-destination runs", f"{serial:.1f} s",
         f"{len(ftp_clients)} x {t_ftp:.2f} s FTP + {len(sftp_clients)} x {t_sftp:.2f} s SFTP (median of "
         f"{len(base_ftp)}+{len(base_sftp)} runs, in-run elapsed)"],
        ["  same, process wall times", f"{serial_wall:.1f} s", f"{w_ftp:.2f} s FTP, {w_sftp:.2f} s SFTP per process"],
        ["sum of attempt durations (ledger)", f"{sum(figures['durations'].values()):.1f} s",
         ", ".join(f"{k} {v:.1f} s" for k, v in sorted(figures["durations"].items()))],
        ["speed-up (sum of singles / wall)", f"{serial / result.wall:.1f} x" if result.wall else "?", ""],
        ["peak RSS of the run (VmHWM)", f"{rss_mb:.0f} MB",
         f"target < {RSS_FLEET_MB} MB: {verdict(rss_mb < RSS_FLEET_MB)}"],
        ["max open control connections", mon.max_control,
         f"--jobs {args.jobs}: {verdict(mon.max_control <= args.jobs)} ({mon.samples} samples)"],
        ["max established TCP (incl. data)", mon.max_tcp, ""],
        ["max attempts running at once", figures["overlap"], "from the ledger's attempt intervals"],
        ["first attempt started after", f"{figures['first_start'] - result.started_at:.1f} s",
         "process start to the first upload (start-up, 432 rule files, the first record read)"],
        ["max threads of the process", mon.max_threads, ""],
        ["CPU of ftpexport (user+sys)", f"{result.cpu:.1f} s", f"{result.cpu / result.wall:.2f} cores on average"
         f" ({os.cpu_count()} here)"],
        ["CPU of the FTP server", f"{result.server_cpu:.1f} s", "pyftpdlib, one process"],
    ]  # fmt: skip
    print(table(rows, ["fleet", "value", "note"]))
    _connection_profile(mon)
    if profile:
        print(profile)
    for error, n in sorted(figures["errors"].items(), key=lambda e: -e[1]):
        print(f"failed attempt ({n}x): {error}")
    if not all_there:
        print("FAILURE: not every record was delivered")
        if result.stderr:
            print(result.stderr[-3000:])
    return all_there


def _profile_fleet(work: Path, rules: Path, env: dict[str, str], args: argparse.Namespace) -> str:
    """The same run again (new ledger: everything is sent again) under py-spy, idle threads included."""
    if shutil.which("py-spy") is None:
        return "--profile: py-spy is not installed (pip install py-spy)"
    raw = work / "py-spy.txt"
    state = work / "state-profile" / "ledger.sqlite3"
    argv = [
        "py-spy",
        "record",
        "--idle",
        "--rate",
        "200",
        "--format",
        "raw",
        "--output",
        str(raw),
        "--",
        *ftpexport("run", work / "inbox", "--rules", rules, "--state", state, "--jobs", args.jobs, "--json"),
    ]
    result = run_measured(argv, env=env, timeout=args.timeout)
    return (
        f"\n-- py-spy of the fleet run (again, under the profiler: {result.wall:.1f} s, exit {result.returncode})\n"
        + pyspy_summary(raw, top=args.profile_top)
    )


def _connection_profile(mon: Any) -> None:
    """Open control connections over time, in tenths of the run."""
    timeline = mon.control_timeline
    if not timeline:
        return
    end = timeline[-1][0] or 1
    buckets: dict[int, int] = defaultdict(int)
    for t, n in timeline:
        b = min(9, int(10 * t / end))
        buckets[b] = max(buckets[b], n)
    print("open control connections, max per tenth of the run: "
          + " ".join(str(buckets.get(i, 0)) for i in range(10)))  # fmt: skip


def big_record(args: argparse.Namespace, work: Path, scheme: str) -> bool:
    total = int(args.big_gb * (1 << 30))
    count = 40
    size = total // count
    print(f"\n== big record over {scheme}: {count} images of {size / (1 << 20):.1f} MB = {total / (1 << 30):.2f} GB;"
          f" work files in {work}")  # fmt: skip
    need = 3 * total + (64 << 20)
    free = shutil.disk_usage(work).free
    if free < need:
        print(f"skipped: {free >> 20} MB free in {work}, {need >> 20} MB needed")
        return True
    results = {}
    ok = True
    with ftp_server(work / f"big-ftp-{scheme}", ["big"]) as ftp, _sftp(scheme == "sftp") as sftp:
        if scheme == "sftp" and sftp is None:
            return True
        env = product_env(**{PASSWORD_ENV: ftp.password}, **({SFTP_PASSWORD_ENV: sftp.password} if sftp else {}))
        for label, image_size in (("tiny (40 x 25 KB)", 25 * 1024), (f"{args.big_gb:g} GB", size)):
            case = work / f"big-{scheme}-{image_size}"
            rules = case / "rules"
            if scheme == "ftp":
                _write_rules(rules, ftp, ["big"], None, [], sub=f"{image_size}/")
            else:
                _write_rules(rules, None, [], sftp, ["big"], sub=f"{image_size}-")
            t0 = time.monotonic()
            write_record(case / "inbox" / "big-1", record_id="veh-big-1", client_id="big", vin_=vin(424242),
                         images=[image_size] * count)  # fmt: skip
            written = time.monotonic() - t0
            state = case / "ledger.sqlite3"
            result = run_measured(ftpexport("run", case / "inbox", "--rules", rules, "--state", state, "--json"),
                                  env=env, control_ports=[ftp.port] + ([sftp.port] if sftp else []),
                                  timeout=args.timeout, server_pids=[ftp.process.pid])  # fmt: skip
            root = ftp.root if scheme == "ftp" else sftp.root
            zips = [p for p in root.rglob("*.zip") if not p.name.startswith(".") and str(image_size) in str(p)]
            arrived = sum(p.stat().st_size for p in zips)
            good = result.returncode == 0 and len(zips) == 1 and arrived >= count * image_size
            ok = ok and good
            results[label] = (result, arrived, written, good)
            for p in zips:
                p.unlink()  # free tmpfs for the next case
            shutil.rmtree(case / "inbox", ignore_errors=True)
            if not good:
                print(f"FAILURE: {label}: exit {result.returncode}, {len(zips)} zip(s) of {arrived} bytes\n"
                      f"{result.stderr[-2000:]}")  # fmt: skip
    rows = []
    for label, (result, arrived, _written, good) in results.items():
        rss = result.peak_rss_kb / 1024
        target = f"< {RSS_BIG_MB} MB: {verdict(rss < RSS_BIG_MB)}" if label.endswith("GB") else "reference"
        rows.append([label, "yes" if good else "NO", f"{arrived / (1 << 20):.0f} MB", f"{result.wall:.1f} s",
                     f"{arrived / (1 << 20) / result.wall:.0f} MB/s" if result.wall else "?",
                     f"{result.cpu:.1f} s", mb(result.peak_rss_kb), target])  # fmt: skip
    print(table(rows, [f"record ({scheme})", "delivered", "zip size", "wall", "throughput", "CPU", "peak RSS",
                       "target"]))  # fmt: skip
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ftp", type=int, default=400, help="FTP destinations (default 400)")
    parser.add_argument("--sftp", type=int, default=32, help="SFTP destinations (default 32; 0: none)")
    parser.add_argument("--records", type=int, default=3, help="records per destination (default 3)")
    parser.add_argument("--images", type=int, default=4, help="images per record (default 4)")
    parser.add_argument("--image-kb", type=int, default=200, help="size of each image in KB (default 200)")
    parser.add_argument("--jobs", type=int, default=16, help="ftpexport --jobs (default 16)")
    parser.add_argument("--baseline", type=int, default=3, help="single-destination runs per scheme (default 3)")
    parser.add_argument("--ftp-workers", type=int, default=1, help="pyftpdlib worker processes (default 1)")
    parser.add_argument("--big-gb", type=float, default=1.0, help="size of the big record in GB (default 1; 0: skip)")
    parser.add_argument("--big-scheme", default="ftp,sftp", help="schemes for the big record (default ftp,sftp)")
    parser.add_argument("--skip-fleet", action="store_true", help="only the big record")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a run may take before it is killed")
    parser.add_argument("--workdir", help="where to put inbox, servers' files and ledgers (default /dev/shm)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--profile", action="store_true", help="run the fleet once more under py-spy and summarise")
    parser.add_argument("--profile-top", type=int, default=25, help="rows of the profile summary (default 25)")
    args = parser.parse_args()
    exit_on_sigterm()
    print(machine_note())
    work = _workdir(args.workdir)
    ok = True
    try:
        if not args.skip_fleet:
            ok = fleet(args, work / "fleet") and ok
            shutil.rmtree(work / "fleet", ignore_errors=True)
        if args.big_gb > 0:
            for scheme in filter(None, args.big_scheme.split(",")):
                ok = big_record(args, work, scheme.strip()) and ok
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
