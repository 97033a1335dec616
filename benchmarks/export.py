"""ftpexport against the tools an operator would otherwise script: ``sftp -b``, ``rclone copy``, ``lftp mirror -R``.

    python -m benchmarks.export                 # every scenario, 3 repeats, prints the ratio table
    python -m benchmarks.export --records 173   # ~780 MB, the size of the issue's measurements
    python -m benchmarks.export --only sftp --repeats 1
    python -m benchmarks.export --profile /dev/shm/prof --only sftp   # py-spy profiles of ftpexport
    python -m benchmarks.export --before ../main-checkout            # that checkout's ftpexport too, interleaved

Run as root on a throw-away machine (it creates temporary users, starts sshd and vsftpd on
127.0.0.1, installs missing tools with apt-get). Not part of CI.

What it does: writes a synthetic inbox (vehicles with 12 images of random bytes, 150-600 KB each)
on tmpfs, builds each record's zip once with ftpexport's own packager (the reference tools upload
those zips; ``ftpexport run`` builds them again inside its timed run), starts OpenSSH ``sshd`` and
vsftpd (or pyftpdlib), then for each scenario times ``python -m ftpexport run`` (a fresh ledger
each time, atomic uploads: temporary name, size check, rename) and the reference tools on the same
bytes, each run into an empty target folder on tmpfs. Scenarios: SFTP, FTP, FTPS x zip / loose
files x 1 / 4 connections, and a WAN scenario (25 ms each way, through ``benchmarks.wanproxy``)
over SFTP and FTP. Prints medians in MB/s (10^6 bytes per second of payload) and the ratio of
ftpexport to each tool (above 1: ftpexport is faster), with the load average of the machine.

Besides the tools: the bare client (``benchmarks/bare_client.py``: paramiko or ftplib alone, same
files, same atomic upload and options), whose ratio is what ftpexport's own pipeline costs, and with
``--before PATH`` the ftpexport of another checkout, run right after this one in each repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import servers_install
from daemons import HOST, free_port_range
from servers import RunningServer, openssh_server
from servers_ftpd import vsftpd_server

from .common import (
    REPO,
    TLS_NAMES,
    Inbox,
    ensure_commands,
    filesystem_type,
    log,
    make_inbox,
    pyftpdlib_server,
    tool_version,
    tree_size,
    work_root,
)

TOOLS = ("ftpexport", "before", "bare", "sftp-b", "rclone", "lftp")
TOOL_TITLES = {
    "ftpexport": "ftpexport",
    "before": "ftpexport before",  # ``--before PATH``: another checkout, interleaved with this one
    "bare": "bare client",  # benchmarks/bare_client.py: paramiko / ftplib alone
    "sftp-b": "sftp -b",
    "rclone": "rclone copy",
    "lftp": "lftp mirror -R",
}
#: the tools that run by default (``before`` needs ``--before``)
DEFAULT_TOOLS = ("ftpexport", "bare", "sftp-b", "rclone", "lftp")
BARE_CLIENT = Path(__file__).resolve().with_name("bare_client.py")
WAN_HOST = "127.0.0.2"
RUN_TIMEOUT = 900.0
CLIENT_ID = "bench"
TARGET = "run"  # the folder every run writes into, under the server's login folder
#: the tests' vsftpd, unpacked by tests/servers_install.py
VSFTPD = servers_install.program("vsftpd", "usr/sbin/vsftpd")


@dataclass(frozen=True)
class Scenario:
    net: str  # "loopback" | "wan"
    protocol: str  # "sftp" | "ftp" | "ftps"
    layout: str  # "zip" | "files"
    tool: str  # one of TOOLS
    conns: int

    @property
    def row(self) -> tuple[str, str, str, int]:
        return (self.net, self.protocol, self.layout, self.conns)

    def __str__(self) -> str:
        return f"{self.net}/{self.protocol}/{self.layout}/{self.tool}x{self.conns}"


@dataclass
class Measure:
    seconds: float
    cpu: float  # user + system seconds of the client process tree
    ok: bool
    note: str = ""


@dataclass
class Payload:
    """The bytes of one set of runs: the inbox and the zips ftpexport's packager makes of it."""

    inbox: Inbox
    zips: Path
    zip_count: int = 0
    zip_bytes: int = 0

    def source(self, layout: str) -> tuple[Path, int, int]:
        """(local folder the reference tools upload, files, bytes)."""
        if layout == "zip":
            return self.zips, self.zip_count, self.zip_bytes
        return self.inbox.path, self.inbox.files, self.inbox.bytes


@dataclass
class Context:
    """What the runs need: payloads, servers, where clients connect, scratch folders."""

    work: Path
    payloads: dict[str, Payload] = field(default_factory=dict)  # per net
    servers: dict[str, RunningServer] = field(default_factory=dict)  # "sftp" / "ftp" (FTP and FTPS)
    #: where clients connect: (host, port) per protocol; the WAN proxy for the WAN scenarios
    address: dict[str, tuple[str, int]] = field(default_factory=dict)
    rclone_config: Path | None = None
    #: the folder holding the ``ftpexport`` package to run (this checkout, or a copy with a change to try)
    ftpexport_path: Path = REPO
    #: the checkout the ``before`` tool runs (``--before``)
    before_path: Path | None = None
    counter: int = 0

    def ftpexport_env(self, path: Path | None = None) -> dict[str, str]:
        folder = str(path or self.ftpexport_path)
        return {"PYTHONPATH": os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")]))}

    def scratch(self, name: str) -> Path:
        self.counter += 1
        path = self.work / "runs" / f"{self.counter:05d}-{name}"
        path.mkdir(parents=True)
        return path


# --- payload


def rules_text(ctx: Context, protocol: str, layout: str, conns: int) -> str:
    """The rule file of the benchmark client for one scenario."""
    server = ctx.servers["sftp" if protocol == "sftp" else "ftp"]
    host, port = ctx.address[protocol]
    if protocol == "sftp":
        destination = f"""
  - name: dms
    url: sftp://{server.username}@{host}:{port}{server.remote_path(TARGET)}
    key_file: {server.client_key_file}
    host_key: "{server.host_key}"
"""
    else:
        extra = "    allow_plain_ftp: true\n" if protocol == "ftp" else f"    ca_file: {server.ca_file}\n"
        destination = f"""
  - name: dms
    url: {protocol}://{server.username}@{host}:{port}/{TARGET}
    password: ${{BENCH_FTP_PASSWORD}}
{extra}"""
    destination += f"    max_connections: {conns}\n    timeout: 60\n"
    if layout == "files":
        destination += '    remote_dir: "{{ id }}"\n'
        package = """
package:
  format: files
  image_name: "{{ filename }}"
  metadata:
    name: "vehicle.json"
"""
    else:
        package = "\npackage:\n  format: zip\n"
    return f"client_id: {CLIENT_ID}\ndestinations:{destination}{package}"


def build_zips(payload: Payload, rules_dir: Path) -> None:
    """Each record's zip, made by ftpexport's packager (deterministic: the bytes ftpexport uploads)."""
    from ftpexport.plan import make_package, plan_record
    from ftpexport.record import load_record
    from ftpexport.rules import load_rules, routes_for

    ruleset = load_rules(rules_dir)
    if payload.zips.exists():
        shutil.rmtree(payload.zips)
    payload.zips.mkdir(parents=True)
    for folder in payload.inbox.folders:
        record = load_record(folder)
        plan = plan_record(record, ruleset, routes_for(ruleset, record))
        package = make_package(plan, payload.zips)
        for artifact in package.files:  # a zip read as a stream (one destination) is written out here
            target = payload.zips / artifact.name
            if not target.exists():
                with artifact.open() as stream, target.open("wb") as out:
                    shutil.copyfileobj(stream, out)
    payload.zip_count, payload.zip_bytes = tree_size(payload.zips)


# --- commands


def _ssh_options(server: RunningServer) -> list[str]:
    return [
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
        "-i",
        str(server.client_key_file),
    ]


def command(ctx: Context, s: Scenario, scratch: Path) -> tuple[list[str], dict[str, str]]:
    """The argv and extra environment of one run."""
    payload = ctx.payloads[s.net]
    source, _, _ = payload.source(s.layout)
    server = ctx.servers["sftp" if s.protocol == "sftp" else "ftp"]
    host, port = ctx.address[s.protocol]
    env: dict[str, str] = {}
    if s.tool in ("ftpexport", "before"):
        rules = scratch / "rules"
        rules.mkdir()
        (rules / f"{CLIENT_ID}.yaml").write_text(rules_text(ctx, s.protocol, s.layout, s.conns))
        env["BENCH_FTP_PASSWORD"] = server.password
        env.update(ctx.ftpexport_env(ctx.before_path if s.tool == "before" else None))
        argv = [
            sys.executable,
            "-m",
            "ftpexport",
            "-q",
            "run",
            str(payload.inbox.path),
            "--rules",
            str(rules),
            "--state",
            str(scratch / "state" / "ledger.sqlite3"),
            "--jobs",
            str(max(4, s.conns)),
            "--json",
        ]
        return argv, env
    if s.tool == "bare":
        remote = server.remote_path(TARGET) if s.protocol == "sftp" else TARGET
        argv = [sys.executable, str(BARE_CLIENT), s.protocol, host, str(port), server.username, str(source), remote,
                "--conns", str(s.conns)]  # fmt: skip
        if s.protocol == "sftp":
            argv += ["--key-file", str(server.client_key_file)]
        else:
            env["BARE_PASSWORD"] = server.password
            if s.protocol == "ftps":
                argv += ["--ca-file", str(server.ca_file)]
        return argv, env
    if s.tool == "sftp-b":
        batch = scratch / "batch"
        batch.write_text(f"put -r {source}/* {server.remote_path(TARGET)}/\n")
        return [
            "sftp",
            "-q",
            "-b",
            str(batch),
            "-P",
            str(port),
            *_ssh_options(server),
            f"{server.username}@{host}",
        ], env
    if s.tool == "rclone":
        assert ctx.rclone_config is not None
        env["RCLONE_CONFIG"] = str(ctx.rclone_config)
        if s.protocol == "sftp":
            remote = (
                f":sftp,host={host},port={port},user={server.username},key_file={server.client_key_file},"
                f"disable_hashcheck=true,shell_type=none:{server.remote_path(TARGET)}"
            )
            extra: list[str] = []
        else:
            obscured = subprocess.run(
                ["rclone", "obscure", "--", server.password],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, **env},
            ).stdout.strip()
            # vsftpd 3.0.3 answers rclone's TLS 1.3 handshake with "illegal parameter": TLS 1.2 for rclone
            tls = ",explicit_tls=true,disable_tls13=true" if s.protocol == "ftps" else ""
            remote = f":ftp,host={host},port={port},user={server.username},pass={obscured}{tls}:{TARGET}"
            extra = []
            if s.protocol == "ftps":
                # rclone's FTP backend ignores --ca-cert; Go reads the trusted CAs from SSL_CERT_FILE
                env["SSL_CERT_FILE"] = str(server.ca_file)
        argv = [
            "rclone",
            "copy",
            str(source),
            remote,
            "--transfers",
            str(s.conns),
            "--checkers",
            str(s.conns),
            "-q",
            *extra,
        ]
        return argv, env
    if s.tool == "lftp":
        settings = ["set net:max-retries 2", "set net:timeout 60", "set cmd:fail-exit yes"]
        if s.protocol == "sftp":
            program = "ssh -a -x " + " ".join(shlex.quote(a) for a in _ssh_options(server))
            settings.append(f'set sftp:connect-program "{program}"')
            opening = f"open -u {server.username}, -p {port} sftp://{host}"
            remote = server.remote_path(TARGET)
        else:
            if s.protocol == "ftp":
                settings.append("set ftp:ssl-allow no")
            else:
                # lftp (GnuTLS) uploads to vsftpd 3.0.3 over TLS 1.3 end in "426 Failure reading network
                # stream" on most files, retried for ever: TLS 1.2 for lftp
                settings += [
                    "set ftp:ssl-force yes",
                    "set ftp:ssl-protect-data yes",
                    "set ssl:priority NORMAL:-VERS-TLS1.3",
                    f"set ssl:ca-file {server.ca_file}",
                    "set ssl:verify-certificate yes",
                ]
            opening = f"open -u {server.username},{server.password} -p {port} ftp://{host}"
            remote = TARGET
        script = "; ".join([*settings, opening, f"mirror -R -P {s.conns} {source} {remote}"])
        return ["lftp", "-c", script], env
    raise ValueError(s.tool)


def _run_timed(argv: list[str], env: dict[str, str], log_file: Path) -> tuple[float, float, int, str]:
    """Run ``argv``; (wall seconds, CPU seconds of it and its children, exit status, stdout).

    It runs in the folder of ``log_file``: ``python -m`` puts the current folder first on sys.path.
    """
    out_file = log_file.with_suffix(".out")
    with out_file.open("wb") as out, log_file.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,
            cwd=log_file.parent,
        )
        deadline = started + RUN_TIMEOUT
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(process.pid, 9)
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_utime + usage.ru_stime, process.returncode, out_file.read_text(errors="replace")


def startup_time(ctx: Context, rules: Path) -> float:
    """Seconds of ``ftpexport run`` on an empty inbox: Python, imports, rules, a new ledger."""
    times = []
    for _ in range(3):
        scratch = ctx.scratch("startup")
        (scratch / "empty").mkdir()
        argv = [
            sys.executable,
            "-m",
            "ftpexport",
            "-q",
            "run",
            str(scratch / "empty"),
            "--rules",
            str(rules),
            "--state",
            str(scratch / "state" / "ledger.sqlite3"),
            "--json",
        ]
        env = ctx.ftpexport_env()
        times.append(_run_timed(argv, env, scratch / "stderr.log")[0])
    return statistics.median(times)


def run_once(ctx: Context, s: Scenario) -> Measure:
    server = ctx.servers["sftp" if s.protocol == "sftp" else "ftp"]
    server.clear_root()
    # the target folder exists, as a DMS's incoming folder would (rclone 1.60 fails to list a missing
    # folder on pyftpdlib)
    server.make_dir(TARGET)
    scratch = ctx.scratch(str(s).replace("/", "-"))
    argv, env = command(ctx, s, scratch)
    seconds, cpu, code, stdout = _run_timed(argv, env, scratch / "stderr.log")
    _, want_files, want_bytes = ctx.payloads[s.net].source(s.layout)
    files, size = tree_size(server.root / TARGET) if (server.root / TARGET).exists() else (0, 0)
    note = ""
    ok = code == 0 and files == want_files and abs(size - want_bytes) <= want_bytes * 0.01
    if not ok:
        stderr = (scratch / "stderr.log").read_text(errors="replace").strip()
        note = f"exit {code}, {files}/{want_files} files, {size}/{want_bytes} bytes: {(stderr or stdout)[-300:]}"
        log(f"  FAILED {s}: {note}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return Measure(seconds, cpu, ok, note)


# --- scenarios


def scenarios(
    only: set[str],
    conns_list: tuple[int, ...],
    wan_conns: tuple[int, ...],
    wan_loose_x1: bool,
    layouts: tuple[str, ...],
) -> list[Scenario]:
    """Every run of one repeat, in the order they run."""
    chosen = []
    for protocol in ("sftp", "ftp", "ftps"):
        if protocol not in only:
            continue
        for layout in layouts:
            for conns in conns_list:
                for tool in TOOLS:
                    if tool == "sftp-b" and (protocol != "sftp" or conns != 1):
                        continue  # sftp -b is one SFTP connection
                    chosen.append(Scenario("loopback", protocol, layout, tool, conns))
    if "wan" in only:
        for protocol in ("sftp", "ftp"):
            for layout in layouts:
                for conns in wan_conns:
                    if conns == 1 and layout == "files" and not wan_loose_x1:
                        continue  # one file after the other at 50 ms a round trip: slow, and nobody's target
                    for tool in TOOLS:
                        if tool == "sftp-b" and (protocol != "sftp" or conns != 1):
                            continue
                        if tool in ("bare", "rclone", "lftp") and conns == 1 and 4 in wan_conns:
                            continue  # the WAN targets compare 4 connections
                        chosen.append(Scenario("wan", protocol, layout, tool, conns))
    return chosen


@contextlib.contextmanager
def wan_proxy(ctx: Context, ports: list[int], delay: float, window: int) -> Iterator[None]:
    spec = ",".join(str(p) for p in ports)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.wanproxy",
            "--listen",
            WAN_HOST,
            "--target",
            "127.0.0.1",
            "--ports",
            spec,
            "--delay",
            str(delay),
            "--window",
            str(window),
        ],
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != b"ready":
            raise RuntimeError("the WAN proxy did not start")
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def vsftpd_ready(*, install: bool) -> bool:
    """Whether the tests' vsftpd and its PAM service are there; ``tests/servers_install.py`` runs first if allowed."""
    if install and not (VSFTPD.exists() and servers_install.PAM_FILE.exists()):
        log("unpacking vsftpd with tests/servers_install.py ...")
        servers_install.main()
    return VSFTPD.exists() and servers_install.PAM_FILE.exists()


@contextlib.contextmanager
def servers_for(ctx: Context, net: str, ftp_server: str, wan: tuple[float, int]) -> Iterator[None]:
    """Start sshd and the FTP server (and the WAN proxy in front of them for ``net == "wan"``)."""
    with contextlib.ExitStack() as stack:
        base = ctx.work / "servers"
        base.mkdir(exist_ok=True)
        passive = free_port_range(64) if net == "wan" else None
        announce = WAN_HOST if net == "wan" else None
        ctx.servers["sftp"] = stack.enter_context(
            openssh_server(parent=base, extra_config=("MaxStartups 100:30:200", "MaxSessions 100"), log_level="ERROR")
        )
        if ftp_server == "vsftpd":
            ctx.servers["ftp"] = stack.enter_context(
                vsftpd_server(
                    "ftp+ftps",
                    parent=base,
                    pasv_address=announce or HOST,
                    passive_ports=passive,
                    tls_names=TLS_NAMES,
                    idle_timeout=600,
                    log_protocol=False,
                )
            )
        else:
            ctx.servers["ftp"] = stack.enter_context(
                pyftpdlib_server(base, "ftp+ftps", masquerade_address=announce, passive_ports=passive)
            )
        for server in ctx.servers.values():
            # the login folder belongs to the temporary user; tools create TARGET in it
            server.root.mkdir(parents=True, exist_ok=True)
        host = WAN_HOST if net == "wan" else "127.0.0.1"
        sftp_port, ftp_port = ctx.servers["sftp"].port, ctx.servers["ftp"].port
        ctx.address = {"sftp": (host, sftp_port), "ftp": (host, ftp_port), "ftps": (host, ftp_port)}
        if net == "wan":
            assert passive is not None
            ports = [sftp_port, ftp_port, *range(passive[0], passive[1] + 1)]
            stack.enter_context(wan_proxy(ctx, ports, *wan))
        yield


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
            seconds, _, code, _ = _run_timed(spy, env, scratch / "stderr.log")
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


# --- main


def machine_facts(work: Path) -> dict[str, str]:
    facts = {
        "nproc": str(os.cpu_count()),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.machine(),
        ),
        "kernel": platform.release(),
        "work folder": f"{work} ({filesystem_type(work)})",
        "python": platform.python_version(),
    }
    with contextlib.suppress(ImportError):
        import paramiko

        facts["paramiko"] = paramiko.__version__
    facts["openssh"] = tool_version(["ssh", "-V"])
    facts["rclone"] = tool_version(["rclone", "version"])
    facts["lftp"] = tool_version(["lftp", "--version"]).replace("LFTP | ", "").split(" | Copyright")[0]
    facts["vsftpd"] = tool_version(["sh", "-c", f"{VSFTPD} -v 0>&1"])  # it prints on stdin
    return facts


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: the machine is shared, the figures say how busy it was."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def git_head(folder: Path) -> str:
    """The commit checked out in ``folder`` (short), or "?"."""
    result = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False)  # fmt: skip
    return result.stdout.strip() or "?"


def remove_work_files(work: Path) -> None:
    """Delete what the benchmark wrote in ``work`` (inboxes, zips, runs): tmpfs is memory."""
    for path in work.iterdir():
        if path.name.startswith(("inbox-", "zips-", "runs", "servers", "rclone.conf")):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        work.rmdir()  # only when empty


def ensure_product(repo: Path) -> None:
    """Install ftpexport (and so its dependencies) with pip when they cannot be imported."""
    probe = [sys.executable, "-c", "import ftpexport.pipeline, ftpexport.transport.sftp, ftpexport.cli"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    if subprocess.run(probe, capture_output=True, env=env, cwd=repo, check=False).returncode == 0:
        return
    log(f"installing ftpexport's dependencies: pip install -e {repo} ...")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(repo)], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.export",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument(
        "--records", type=int, default=40, help="vehicles in the inbox (12 images each, ~4.5 MB per vehicle)"
    )
    parser.add_argument("--wan-records", type=int, default=8, help="vehicles for the WAN scenarios")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="sftp,ftp,ftps,wan", help="comma list of sftp, ftp, ftps, wan")
    parser.add_argument("--tools", default=",".join(DEFAULT_TOOLS), help="comma list of " + ", ".join(TOOLS))
    parser.add_argument(
        "--before",
        type=Path,
        help="also run the ftpexport of this checkout (e.g. a git worktree of main), interleaved with this one: "
        "the 'ftpexport before' column",
    )
    parser.add_argument("--conns", default="1,4", help="loopback: connection counts")
    parser.add_argument("--layouts", default="zip,files", help="comma list of zip, files")
    parser.add_argument("--wan-delay", type=float, default=0.025, help="WAN: seconds each way")
    parser.add_argument(
        "--wan-window", type=int, default=4 * 1024 * 1024, help="WAN: TCP window in bytes per direction"
    )
    parser.add_argument("--wan-conns", default="1,4", help="WAN: connection counts for ftpexport")
    parser.add_argument("--wan-loose-x1", action="store_true", help="WAN: also loose files over 1 connection (slow)")
    parser.add_argument("--ftp-server", choices=("vsftpd", "pyftpdlib"), default="vsftpd")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="work folder, tmpfs (default /dev/shm/ftpexport-bench-PID; with --keep /dev/shm/ftpexport-bench)",
    )
    parser.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")
    parser.add_argument(
        "--keep", action="store_true", help="keep the inbox and zips in the work folder for the next run"
    )
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    parser.add_argument(
        "--profile", type=Path, help="instead of the table: profile ftpexport's scenarios with py-spy into this folder"
    )
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--profile-conns", default="1", help="profile the scenarios of these connection counts")
    parser.add_argument(
        "--ftpexport-path",
        type=Path,
        default=REPO,
        help="run the ftpexport package found in this folder (a copy with a change to try); default: this checkout",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root: the benchmark creates temporary users and starts sshd / vsftpd")
    ensure_product(args.ftpexport_path.resolve())
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    tools = {x.strip() for x in args.tools.split(",") if x.strip()}
    if args.before is not None:
        ensure_product(args.before.resolve())
        tools.add("before")
    else:
        tools.discard("before")
    wan_conns = tuple(int(x) for x in args.wan_conns.split(","))
    available = ensure_commands(["sshd", "ssh", "sftp", "ssh-keygen", "rclone", "lftp"], install=not args.no_install)
    if args.ftp_server == "vsftpd" and not vsftpd_ready(install=not args.no_install):
        args.ftp_server = "pyftpdlib"
    for tool, command_name in (("sftp-b", "sftp"), ("rclone", "rclone"), ("lftp", "lftp")):
        if tool in tools and not available[command_name]:
            log(f"{command_name} is not available: its columns stay empty")
            tools.discard(tool)
    if not available["sshd"]:
        log("sshd is not available: no SFTP scenarios")
        only -= {"sftp"}

    workdir = args.workdir
    if workdir is None and not args.keep:
        # a folder of its own: two benchmarks running at once must not delete each other's runs
        workdir = work_root().with_name(f"ftpexport-bench-{os.getpid()}")
    work = work_root(workdir)
    try:
        facts = machine_facts(work)
        facts["ftp server"] = args.ftp_server
        log("machine: " + "; ".join(f"{k}: {v}" for k, v in facts.items()))
        ctx = Context(work=work, ftpexport_path=args.ftpexport_path.resolve())
        if ctx.ftpexport_path != REPO:
            facts["ftpexport from"] = str(ctx.ftpexport_path)
        if args.before is not None:
            ctx.before_path = args.before.resolve()
            facts["ftpexport before from"] = f"{ctx.before_path} ({git_head(ctx.before_path)})"
            facts["ftpexport from"] = f"{ctx.ftpexport_path} ({git_head(ctx.ftpexport_path)})"
        facts["load average at start"] = load_average()
        shutil.rmtree(work / "runs", ignore_errors=True)
        ctx.rclone_config = work / "rclone.conf"
        ctx.rclone_config.write_text("")
        chosen = [
            s
            for s in scenarios(
                only,
                tuple(int(x) for x in args.conns.split(",")),
                wan_conns,
                args.wan_loose_x1,
                tuple(x.strip() for x in args.layouts.split(",")),
            )
            if s.tool in tools
        ]
        results: dict[Scenario, list[Measure]] = {s: [] for s in chosen}
        wan_records = min(args.wan_records or args.records, args.records)

        for net in ("loopback", "wan"):
            here = [s for s in chosen if s.net == net]
            if not here:
                continue
            records = args.records if net == "loopback" else wan_records
            log(f"{net}: writing the inbox ({records} vehicles) ...")
            payload = Payload(
                make_inbox(work / f"inbox-{records}", records, client_id=CLIENT_ID), work / f"zips-{records}"
            )
            ctx.payloads[net] = payload
            with servers_for(ctx, net, args.ftp_server, (args.wan_delay, args.wan_window)):
                rules = ctx.scratch("zip-rules") / "rules"
                rules.mkdir()
                (rules / f"{CLIENT_ID}.yaml").write_text(rules_text(ctx, "sftp", "zip", 1))
                build_zips(payload, rules)
                if args.profile:
                    profile(ctx, args.profile, here, args.profile_rate, {int(c) for c in args.profile_conns.split(",")})
                    continue
                if net == "loopback" and "ftpexport" in tools:
                    facts["ftpexport start-up"] = (
                        f"{startup_time(ctx, rules):.2f} s (run on an empty inbox, median of 3)"
                    )
                for repeat in range(args.repeats):
                    for s in here:
                        measure = run_once(ctx, s)
                        results[s].append(measure)
                        nbytes = payload.source(s.layout)[2]
                        log(
                            f"[{repeat + 1}/{args.repeats}] {s!s:38} {measure.seconds:7.2f} s "
                            f"{nbytes / measure.seconds / 1e6:7.1f} MB/s cpu {measure.cpu:6.2f} s"
                            + f"  load {os.getloadavg()[0]:.2f}"
                            + ("" if measure.ok else "  FAILED")
                        )
        if args.profile:
            return 0
        facts["load average at end"] = load_average()
        text = report(results, ctx, args, facts)
        print(text)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "facts": facts,
                        "records": args.records,
                        "wan_records": wan_records,
                        "runs": [{**asdict(s), "measures": [asdict(m) for m in ms]} for s, ms in results.items()],
                    },
                    indent=2,
                )
            )
        return 0 if all(m.ok for ms in results.values() for m in ms) else 1
    finally:
        if not args.keep:
            remove_work_files(work)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
