"""Servers that cannot be talked to, through the real command line in a child process.

For each of: a port where nothing listens, a server that accepts and never speaks, an FTP server
behind an sftp:// URL, an sshd that offers only refused algorithms, an sshd behind ftps:// and
ftps+implicit:// URLs:

- ``test-connection`` and ``run`` print no traceback and none of paramiko's own lines on stderr
  (its "Exception (client): Error reading SSH protocol banner" came with twenty lines of traceback);
- with ``--log-format json -vv`` every stderr line is a JSON object (the library's lines included);
- the error names host:port and the phase;
- a server speaking another protocol, or offering only refused algorithms, fails at once:
  one attempt, however many retries are allowed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import servers
from daemons import HOST
from faults import closed_port
from records import make_record
from rulefiles import write_rules
from servers import RunningServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "FAILURES_PASSWORD"
ANY_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
#: seconds each connection may wait: small, since one scenario is a server that never answers
TIMEOUT = 1


@dataclass
class Scenario:
    url: str
    #: fragments the error of the connection must hold
    expected: list[str]
    #: True when no retry can help: the delivery fails after one attempt
    permanent: bool
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def cbc_only_server() -> Iterator[RunningServer]:
    """An sshd that offers only the aes128-cbc cipher."""
    with servers.openssh_server(extra_config=("Ciphers aes128-cbc",)) as server:
        yield server


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose connections are accepted (by the kernel) and never answered."""
    with socket.create_server((HOST, 0)) as listener:
        yield listener.getsockname()[1]


SCENARIOS = ["nothing listens", "never speaks", "ftp on sftp", "refused algorithms", "ssh on ftps", "ssh on implicit"]


@pytest.fixture(params=SCENARIOS)
def scenario(request: pytest.FixtureRequest) -> Scenario:
    name = request.param
    pinned = {"host_key": ANY_HOST_KEY}
    if name == "nothing listens":
        port = closed_port()
        return Scenario(f"sftp://u@{HOST}:{port}/in", [f"connection refused by {HOST}:{port} while connecting"], False,
                        pinned)  # fmt: skip
    if name == "never speaks":
        port = request.getfixturevalue("silent_port")
        expected = [f"timed out after {TIMEOUT} s: no answer from {HOST}:{port} during the SSH handshake"]
        return Scenario(f"sftp://u@{HOST}:{port}/in", expected, False, pinned)
    if name == "ftp on sftp":
        ftp: RunningServer = request.getfixturevalue("ftp_server")
        expected = [f"the server at {HOST}:{ftp.port} speaks FTP, not SSH", "220 ftpexport test ftp server"]
        return Scenario(f"sftp://u@{HOST}:{ftp.port}/in", expected, True, pinned)
    if name == "refused algorithms":
        sshd: RunningServer = request.getfixturevalue("cbc_only_server")
        expected = [f"no SSH algorithm in common with the server at {HOST}:{sshd.port}", "ssh_legacy_algorithms"]
        return Scenario(f"sftp://u@{HOST}:{sshd.port}/in", expected, True, {"host_key": sshd.host_key})
    sshd = request.getfixturevalue("sftp_server")
    scheme = "ftps" if name == "ssh on ftps" else "ftps+implicit"
    expected = [f"the server at {HOST}:{sshd.port} speaks SSH, not FTP", "use sftp://"]
    return Scenario(f"{scheme}://u@{HOST}:{sshd.port}/in", expected, True)


def _write_rules(tmp_path: Path, scenario: Scenario) -> Path:
    rules = tmp_path / "rules"
    destination = {"name": "dms", "url": scenario.url, "password": "${" + PASSWORD_ENV + "}", "timeout": TIMEOUT}
    write_rules(rules, {"client_id": "acme", "destinations": [destination | scenario.extra]})
    return rules


def ftpexport(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, PASSWORD_ENV: "not-the-password", "PYTHONPATH": str(ROOT)}
    for name in ("FTPEXPORT_JSON", "FTPEXPORT_LOG_FORMAT"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "ftpexport", *[str(a) for a in args]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def assert_quiet_about_the_library(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "Exception (client)" not in stderr, stderr
    assert "paramiko" not in stderr, stderr


def assert_json_lines(stderr: str) -> list[dict[str, Any]]:
    documents = []
    for line in stderr.splitlines():
        try:
            documents.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a stderr line is not JSON: {line!r}\n{stderr}")
        assert isinstance(documents[-1], dict), line
    return documents


def test_test_connection_says_where_and_when_and_prints_nothing_of_the_library(
    tmp_path: Path, scenario: Scenario
) -> None:
    rules = _write_rules(tmp_path, scenario)

    result = ftpexport(tmp_path, "test-connection", "acme", "--rules", rules, "--json")

    assert result.returncode == 1, result.stdout + result.stderr
    assert_quiet_about_the_library(result.stderr)
    [destination] = json.loads(result.stdout)["destinations"]
    [connect] = destination["steps"]
    assert connect["name"] == "connect and log in" and not connect["ok"]
    for fragment in scenario.expected:
        assert fragment in connect["detail"], connect["detail"]


def test_with_json_logs_at_debug_every_stderr_line_is_json(tmp_path: Path, scenario: Scenario) -> None:
    rules = _write_rules(tmp_path, scenario)

    result = ftpexport(tmp_path, "--log-format", "json", "-vv", "test-connection", "acme", "--rules", rules)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert_json_lines(result.stderr)
    assert scenario.expected[0] in result.stdout


def test_run_fails_the_delivery_with_the_message_and_retries_only_what_may_pass(
    tmp_path: Path, scenario: Scenario
) -> None:
    rules = _write_rules(tmp_path, scenario)
    make_record(tmp_path / "inbox", 1, "acme")

    result = ftpexport(
        tmp_path, "--log-format", "json", "run", tmp_path / "inbox", "--rules", rules,
        "--retries", "1", "--backoff", "0.01", "--json",
    )  # fmt: skip

    assert result.returncode == 1
    assert_quiet_about_the_library(result.stderr)
    assert_json_lines(result.stderr)
    [delivery] = json.loads(result.stdout)["deliveries"]
    for fragment in scenario.expected:
        assert fragment in delivery["error"], delivery["error"]
    if scenario.permanent:
        assert (delivery["result"], delivery["attempts"]) == ("failed", 1)
    else:
        assert delivery["attempts"] == 2
