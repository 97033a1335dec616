"""The Dockerfile and the systemd unit: a non-root daemon with its data in volumes, configured only
through settings the command line really reads (a misspelt variable would be silently ignored)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
from paths import ROOT

from ftpexport.cli import cli

DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "ftpexport.service"


def envvars(command: click.Command = cli) -> set[str]:
    """Every environment variable an option of the command line reads."""
    found = {p.envvar for p in command.params if isinstance(p.envvar, str)}
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            found |= envvars(sub)
    return found


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def test_the_image_runs_watch_as_a_non_root_user() -> None:
    instructions = dockerfile()
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ("ENTRYPOINT", '["ftpexport"]') in instructions
    assert ("CMD", '["watch", "/data/inbox"]') in instructions
    assert ("STOPSIGNAL", "SIGTERM") in instructions


def test_inbox_rules_state_and_secrets_are_volumes_and_the_settings_point_into_them() -> None:
    volumes = [args for instruction, args in dockerfile() if instruction == "VOLUME"]
    assert volumes == ['["/data/inbox", "/data/rules", "/data/state", "/data/secrets"]']
    env = docker_env()
    assert env["FTPEXPORT_RULES"] == "/data/rules"
    assert env["FTPEXPORT_STATE"].startswith("/data/state/")
    assert env["FTPEXPORT_SECRETS"].startswith("/data/secrets/")
    assert env["FTPEXPORT_SECRETS_KEY_FILE"].startswith("/data/secrets/")
    assert env["FTPEXPORT_LOG_FORMAT"] == "json"


def test_every_setting_of_the_image_is_read_by_the_command_line() -> None:
    ours = {k for k in docker_env() if k.startswith("FTPEXPORT_")}
    assert ours <= envvars(), ours - envvars()


def test_the_health_check_asks_healthz_on_the_metrics_port() -> None:
    env = docker_env()
    checks = [args for instruction, args in dockerfile() if instruction == "HEALTHCHECK"]
    assert len(checks) == 1
    assert f"127.0.0.1:{env['FTPEXPORT_METRICS_PORT']}/healthz" in checks[0]
    assert env["FTPEXPORT_METRICS_HOST"] == "0.0.0.0"  # reachable through the published port
    assert ("EXPOSE", env["FTPEXPORT_METRICS_PORT"]) in dockerfile()


def unit_settings() -> list[tuple[str, str]]:
    return [
        tuple(line.split("=", 1))  # type: ignore[misc]
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    ]


def test_the_unit_sets_only_settings_the_command_line_reads_and_stops_after_the_grace_time() -> None:
    settings = unit_settings()
    env = dict(value.split("=", 1) for key, value in settings if key == "Environment")
    assert set(env) <= envvars(), set(env) - envvars()
    values = dict(settings)
    assert values["ExecStart"].endswith("ftpexport watch /srv/ftpexport/inbox")
    assert values["User"] == "ftpexport"
    assert values["KillSignal"] == "SIGTERM"
    assert int(values["TimeoutStopSec"]) > float(env["FTPEXPORT_GRACE"])
    assert values["RestartPreventExitStatus"] == "2"  # a configuration error: restarting would not fix it
    assert env["FTPEXPORT_STATE"].startswith(f"/var/lib/{values['StateDirectory']}/")


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # systemd checks that the program exists: this interpreter stands in for the installed script
    unit = tmp_path / "ftpexport.service"
    unit.write_text(UNIT.read_text().replace("/opt/ftpexport/bin/ftpexport", f"{sys.executable} -m ftpexport"))

    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
    assert "ftpexport.service" not in result.stderr, result.stderr  # no warning about our unit
