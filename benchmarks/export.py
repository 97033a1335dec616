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
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import servers_install
from daemons import HOST, free_port_range
from servers import openssh_server
from servers_ftpd import vsftpd_server

from .common import (
    REPO,
    TLS_NAMES,
    ensure_commands,
    filesystem_type,
    log,
    make_inbox,
    pyftpdlib_server,
    tool_version,
    work_root,
)
from .export_model import (
    CLIENT_ID,
    DEFAULT_TOOLS,
    TOOLS,
    WAN_HOST,
    Context,
    Measure,
    Payload,
    Scenario,
    scenarios,
)
from .export_report import profile, report
from .export_runs import build_zips, rules_text, run_once, startup_time

#: the tests' vsftpd, unpacked by tests/servers_install.py
VSFTPD = servers_install.program("vsftpd", "usr/sbin/vsftpd")


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
