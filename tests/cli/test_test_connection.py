"""``ftpexport test-connection``: each step reported, the SFTP key shown, nothing left behind, no secret shown."""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cli_runner import invoke
from click.testing import Result
from faults import closed_port
from remote_files import remote_files
from servers import RunningServer, pyftpdlib_server

pytestmark = pytest.mark.integration

STEPS = ["connect and log in", "create the folder", "write a file", "check its size", "rename it", "delete it"]


def _test_connection(*args: str | Path) -> Result:
    return invoke("test-connection", *args)


def _rules(tmp_path: Path, destinations: str, users: str = "") -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "acme-motors.yaml").write_text(f"client_id: acme-motors\ndestinations:\n{destinations}{users}")
    return folder


def _ftp_destination(server: RunningServer, name: str = "dms", folder: str = "probe/in") -> str:
    tls = f"\n    ca_file: {server.ca_file}" if server.scheme != "ftp" else "\n    allow_plain_ftp: true"
    return f"""  - name: {name}
    url: {server.url(folder)}
    password: ${{TC_PASSWORD}}{tls}
"""


def _sftp_destination(server: RunningServer, pin: str | None, folder: str = "probe/in") -> str:
    return f"""  - name: dms
    url: {server.url(folder)}
    password: ${{TC_PASSWORD}}
{pin or ""}"""


def _report(result: Result) -> dict[str, Any]:
    return json.loads(result.stdout)


def _steps(destination: dict[str, Any]) -> list[tuple[str, bool]]:
    return [(step["name"], step["ok"]) for step in destination["steps"]]


def _fingerprint(host_key: str) -> str:
    """The SHA256 fingerprint of an OpenSSH public key line, as ssh-keygen prints it."""
    listing = subprocess.run(["ssh-keygen", "-lf", "-"], input=host_key, capture_output=True, text=True, check=True)
    return listing.stdout.split()[1]


# --- 10. healthy FTP and FTPS


@pytest.mark.parametrize("server_fixture", ["ftp_server", "ftps_server"])
def test_a_healthy_ftp_destination_passes_all_six_steps_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, server_fixture: str
) -> None:
    server: RunningServer = request.getfixturevalue(server_fixture)
    monkeypatch.setenv("TC_PASSWORD", server.password)
    rules = _rules(tmp_path, _ftp_destination(server))

    text = _test_connection("acme-motors", "--rules", rules)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].startswith("acme-motors/dms ") and lines[0].endswith(": OK")
    for step in STEPS:
        assert any(line.split()[:1] == ["ok"] and step in line for line in lines), f"{step}:\n{text.stdout}"

    as_json = _test_connection("acme-motors", "--rules", rules, "--json")
    assert as_json.exit_code == 0, as_json.output
    [destination] = _report(as_json)["destinations"]
    assert destination["ok"] is True
    assert _steps(destination) == [(step, True) for step in STEPS]
    assert all(isinstance(step["ms"], int) and step["ms"] >= 0 for step in destination["steps"])

    # the folder was created, the probe file is gone (also its temporary name)
    assert (server.root / "probe" / "in").is_dir()
    assert remote_files(server.root) == set()
    for output in (text.output, as_json.output):
        assert server.password not in output


# --- 11. SFTP: the server key fingerprint


def test_sftp_shows_the_fingerprint_and_the_line_to_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sftp_server: RunningServer
) -> None:
    monkeypatch.setenv("TC_PASSWORD", sftp_server.password)
    assert sftp_server.host_key
    rules = _rules(tmp_path, _sftp_destination(sftp_server, f'    host_key: "{sftp_server.host_key}"\n'))
    fingerprint = _fingerprint(sftp_server.host_key)

    text = _test_connection("acme-motors", "--rules", rules)
    assert text.exit_code == 0, text.output
    assert f"server key fingerprint: {fingerprint}" in text.stdout
    assert f'host_key: "{sftp_server.host_key}"' in text.stdout

    as_json = _test_connection("acme-motors", "--rules", rules, "--json")
    assert as_json.exit_code == 0, as_json.output
    [destination] = _report(as_json)["destinations"]
    assert _steps(destination) == [(step, True) for step in STEPS]
    assert destination["fingerprint"] == fingerprint
    assert destination["host_key"] == sftp_server.host_key
    assert remote_files(sftp_server.root) == set()
    for output in (text.output, as_json.output):
        assert sftp_server.password not in output


def _assert_refused_key_still_shown(result: Result, sftp_server: RunningServer) -> None:
    assert sftp_server.host_key
    fingerprint = _fingerprint(sftp_server.host_key)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    [login] = [line for line in lines if "connect and log in" in line]
    assert login.split()[0] == "FAIL" and "host key" in login
    assert not any(step in result.stdout for step in STEPS[1:])  # nothing after a refused login
    assert f"server key fingerprint: {fingerprint}" in result.stdout
    assert f'host_key: "{sftp_server.host_key}"' in result.stdout
    assert sftp_server.password not in result.output


def test_sftp_without_a_pinned_key_fails_the_login_but_shows_the_key_to_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sftp_server: RunningServer
) -> None:
    # A new destination: the operator runs test-connection to learn the key before pinning it.
    monkeypatch.setenv("TC_PASSWORD", sftp_server.password)
    rules = _rules(tmp_path, _sftp_destination(sftp_server, pin=None))
    _assert_refused_key_still_shown(_test_connection("acme-motors", "--rules", rules), sftp_server)


def test_sftp_with_a_known_hosts_file_lacking_the_server_fails_the_login_but_shows_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sftp_server: RunningServer
) -> None:
    monkeypatch.setenv("TC_PASSWORD", sftp_server.password)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    rules = _rules(tmp_path, _sftp_destination(sftp_server, f"    known_hosts: {known_hosts}\n"))
    result = _test_connection("acme-motors", "--rules", rules)
    _assert_refused_key_still_shown(result, sftp_server)


def test_sftp_with_another_key_pinned_fails_the_login_and_shows_the_servers_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sftp_server: RunningServer
) -> None:
    monkeypatch.setenv("TC_PASSWORD", sftp_server.password)
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    other = " ".join(impostor.with_suffix(".pub").read_text().split()[:2])
    rules = _rules(tmp_path, _sftp_destination(sftp_server, f'    host_key: "{other}"\n'))
    result = _test_connection("acme-motors", "--rules", rules)
    _assert_refused_key_still_shown(result, sftp_server)
    assert "not the pinned one" in result.stdout
    assert remote_files(sftp_server.root) == set()


# --- 12. wrong password


@pytest.mark.parametrize("server_fixture", ["ftp_server", "sftp_server"])
def test_a_wrong_password_fails_the_login_step_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, server_fixture: str
) -> None:
    server: RunningServer = request.getfixturevalue(server_fixture)
    wrong = "Wr0ng-" + secrets.token_hex(8)
    monkeypatch.setenv("TC_PASSWORD", wrong)
    if server.scheme == "sftp":
        destination = _sftp_destination(server, f'    host_key: "{server.host_key}"\n')
    else:
        destination = _ftp_destination(server)
    rules = _rules(tmp_path, destination)

    text = _test_connection("acme-motors", "--rules", rules)
    assert text.exit_code == 1, text.output
    [login] = [line for line in text.stdout.splitlines() if "connect and log in" in line]
    assert login.split()[0] == "FAIL" and "login refused" in login
    assert not any(step in text.stdout for step in STEPS[1:])

    as_json = _test_connection("acme-motors", "--rules", rules, "--json")
    assert as_json.exit_code == 1
    [report] = _report(as_json)["destinations"]
    assert report["ok"] is False
    assert _steps(report) == [("connect and log in", False)]
    assert "login refused" in report["steps"][0]["detail"]
    for output in (text.output, as_json.output):
        assert wrong not in output and server.password not in output
    assert remote_files(server.root) == set()


# --- 13. a folder the user may not write to


def test_a_read_only_sftp_folder_fails_the_write_step_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sftp_server: RunningServer
) -> None:
    monkeypatch.setenv("TC_PASSWORD", sftp_server.password)
    sftp_server.make_dir("readonly").chmod(0o555)  # owned by the SFTP user, who may not write in it
    rules = _rules(tmp_path, _sftp_destination(sftp_server, f'    host_key: "{sftp_server.host_key}"\n', "readonly"))

    result = _test_connection("acme-motors", "--rules", rules, "--json")
    assert result.exit_code == 1, result.output
    [report] = _report(result)["destinations"]
    assert _steps(report) == [("connect and log in", True), ("create the folder", True), ("write a file", False)]
    assert "permission denied" in report["steps"][2]["detail"].lower()
    assert remote_files(sftp_server.root) == set()


def test_a_read_only_ftp_account_fails_the_write_step_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyftpdlib.authorizers import DummyAuthorizer

    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="ftpexport-readonly-") as home:
        (Path(home) / "in").mkdir()
        authorizer = DummyAuthorizer()
        authorizer.add_user("reader", password, home, perm="elr")  # list and read only
        with pyftpdlib_server("ftp", authorizer=authorizer) as server:
            monkeypatch.setenv("TC_PASSWORD", password)
            url = f"ftp://reader@{server.host}:{server.port}/in"
            rules = _rules(
                tmp_path, f"  - {{name: dms, url: '{url}', password: '${{TC_PASSWORD}}', allow_plain_ftp: true}}\n"
            )

            result = _test_connection("acme-motors", "--rules", rules, "--json")
            assert result.exit_code == 1, result.output
            [report] = _report(result)["destinations"]
            assert _steps(report) == [
                ("connect and log in", True),
                ("create the folder", True),
                ("write a file", False),
            ]
            assert "permission denied" in report["steps"][2]["detail"].lower()
            assert remote_files(Path(home)) == set()
            assert password not in result.output


# --- 14. --user, unknown clients and users


def test_user_option_tests_the_users_own_destinations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ftp_server: RunningServer
) -> None:
    monkeypatch.setenv("TC_PASSWORD", ftp_server.password)
    dead = f"ftp://nobody@127.0.0.1:{closed_port()}/in"
    rules = _rules(
        tmp_path,
        f"  - {{name: dms, url: '{dead}', password: '${{TC_PASSWORD}}', allow_plain_ftp: true}}\n",
        "users:\n  u-42:\n    destinations:\n"
        f"      - {{name: own, url: '{ftp_server.url('u42')}', password: '${{TC_PASSWORD}}', allow_plain_ftp: true}}\n",
    )

    client = _test_connection("acme-motors", "--rules", rules, "--json")
    assert client.exit_code == 1
    assert [d["destination"] for d in _report(client)["destinations"]] == ["acme-motors/dms"]

    user = _test_connection("acme-motors", "--rules", rules, "--user", "u-42", "--json")
    assert user.exit_code == 0, user.output
    report = _report(user)
    assert report["user"] == "u-42"
    [own] = report["destinations"]
    assert own["destination"] == "acme-motors/users/u-42/own"
    assert _steps(own) == [(step, True) for step in STEPS]
    assert (ftp_server.root / "u42").is_dir() and remote_files(ftp_server.root) == set()

    text = _test_connection("acme-motors", "--rules", rules, "--user", "u-42")
    assert text.exit_code == 0 and "acme-motors/users/u-42/own" in text.stdout
    assert "acme-motors/dms" not in text.stdout


def test_unknown_client_user_or_destination_exits_2_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ftp_server: RunningServer
) -> None:
    monkeypatch.setenv("TC_PASSWORD", ftp_server.password)
    rules = _rules(tmp_path, _ftp_destination(ftp_server))

    unknown = _test_connection("zulu-cars", "--rules", rules)
    assert unknown.exit_code == 2
    assert "no rule file for client 'zulu-cars'" in unknown.stderr
    assert "Traceback" not in unknown.output

    no_user = _test_connection("acme-motors", "--rules", rules, "--user", "u-404")
    assert no_user.exit_code == 2
    assert "'u-404'" in no_user.stderr and "no destination of their own" in no_user.stderr

    no_destination = _test_connection("acme-motors", "--rules", rules, "--destination", "nope")
    assert no_destination.exit_code == 2
    assert "no destination named 'nope'" in no_destination.stderr
    assert remote_files(ftp_server.root) == set()
