"""The Dockerfile, the systemd unit and the compose file: a non-root daemon with its data in volumes,
configured only through settings the command line really reads (a misspelt variable would be
silently ignored); the compose file's workers share one PostgreSQL ledger and one inbox."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml
from paths import ROOT

from ftpexport.cli import cli

DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "ftpexport.service"


def envvars(command: click.Command = cli) -> set[str]:
    """Every environment variable an option of the command line reads."""
    found = {p.envvar for p in command.params if isinstance(p.envvar, str)}
    if isinstance(command, click.Group):
        context = click.Context(command)  # click's API: the main group loads its commands on use
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            assert sub is not None, name
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


# --- deploy/compose.yaml: PostgreSQL and two watch workers sharing the ledger and an inbox

COMPOSE = ROOT / "deploy" / "compose.yaml"
#: what `docker compose` would take from deploy/.env
COMPOSE_ENV = {
    "FTPEXPORT_DB_PASSWORD": "pw-in-dotenv",
    "FTPEXPORT_INBOX": "/srv/inbox",
    "FTPEXPORT_RULES_DIR": "/srv/ftpexport/rules",
    "FTPEXPORT_SECRETS_DIR": "/srv/ftpexport/secrets",
}


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def workers() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if s.get("command", [""])[0] == "watch"}


def _seconds(text: str) -> float:
    assert text.endswith("s"), text
    return float(text[:-1])


def test_compose_runs_two_watch_workers_of_the_image_on_one_postgresql() -> None:
    services = compose()["services"]
    assert len(workers()) == 2, services.keys()
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    for name, worker in workers().items():
        assert worker["build"]["context"] == "..", name  # the Dockerfile of this repository
        assert worker["command"] == ["watch", "/data/inbox"]
        assert worker["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        env = worker["environment"]
        state = env["FTPEXPORT_STATE"]
        assert state.startswith("postgresql://") and urlsplit(state).hostname == "postgres", state
        assert urlsplit(state).password is None  # the password comes from PGPASSWORD, never the URL
        assert env["PGPASSWORD"].startswith("${FTPEXPORT_DB_PASSWORD:?")  # from deploy/.env, not written here
        assert _seconds(worker["stop_grace_period"]) > float(env["FTPEXPORT_GRACE"])
    assert len({w["hostname"] for w in workers().values()}) == 2  # one name per worker in `status`
    assert len({p for w in workers().values() for p in w["ports"]}) == 2


def test_compose_workers_share_one_inbox_volume_read_only_and_the_rules() -> None:
    mounts = [set(w["volumes"]) for w in workers().values()]
    assert mounts[0] == mounts[1]
    assert "inbox:/data/inbox:ro" in mounts[0]
    assert any(m.endswith(":/data/rules:ro") for m in mounts[0])
    assert "inbox" in compose()["volumes"]


def test_every_setting_of_the_compose_file_is_read_by_the_command_line() -> None:
    for worker in workers().values():
        ours = {k for k in worker["environment"] if k.startswith("FTPEXPORT_")}
        assert ours <= envvars(), ours - envvars()


@pytest.mark.skipif(
    subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode != 0
    if shutil.which("docker") else True,
    reason="no docker compose on this machine (the structure tests above stand in)",
)  # fmt: skip
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True,
                            text=True, check=False, env={**os.environ, **COMPOSE_ENV})  # fmt: skip
    assert result.returncode == 0, result.stderr
