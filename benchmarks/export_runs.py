"""One timed run of ``benchmarks.export``: the rule file and zips of the payload, the command line of
each tool, and the run itself (wall time and the CPU of the process tree)."""

from __future__ import annotations

import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from servers import RunningServer

from .common import log, tree_size
from .export_model import (
    BARE_CLIENT,
    CLIENT_ID,
    RUN_TIMEOUT,
    TARGET,
    Context,
    Measure,
    Payload,
    Scenario,
)

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


def ftpexport_run(inbox: Path, rules: Path, scratch: Path, *options: str) -> list[str]:
    """``ftpexport run`` of ``inbox`` with a new ledger in ``scratch``, quiet, its summary in JSON."""
    state = scratch / "state" / "ledger.sqlite3"
    return [sys.executable, "-m", "ftpexport", "-q", "run", str(inbox), "--rules", str(rules), "--state", str(state),
            *options, "--json"]  # fmt: skip


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
        argv = ftpexport_run(payload.inbox.path, rules, scratch, "--jobs", str(max(4, s.conns)))
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


def run_timed(argv: list[str], env: dict[str, str], log_file: Path) -> tuple[float, float, int, str]:
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
        argv = ftpexport_run(scratch / "empty", rules, scratch)
        env = ctx.ftpexport_env()
        times.append(run_timed(argv, env, scratch / "stderr.log")[0])
    return statistics.median(times)


def run_once(ctx: Context, s: Scenario) -> Measure:
    server = ctx.servers["sftp" if s.protocol == "sftp" else "ftp"]
    server.clear_root()
    # the target folder exists, as a DMS's incoming folder would (rclone 1.60 fails to list a missing
    # folder on pyftpdlib)
    server.make_dir(TARGET)
    scratch = ctx.scratch(str(s).replace("/", "-"))
    argv, env = command(ctx, s, scratch)
    seconds, cpu, code, stdout = run_timed(argv, env, scratch / "stderr.log")
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
