"""``ftpexport test-connection`` learns what each server does, shows it (text and --json), keeps it in
the ledger, and ``status --json`` shows it per destination (issue 15 item 2): on every server of the
conformance matrix, on servers that refuse renames, and on one that refuses a third session."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_runner import invoke
from remote_files import remote_files
from servers import RunningServer, pyftpdlib_server
from servers_ftpd import proftpd_server

from ftpexport.ledger import open_ledger

pytestmark = pytest.mark.integration

KEY = "acme-motors/dms"


def _rules(tmp_path: Path, server: RunningServer, *, max_connections: int = 2) -> Path:
    if server.scheme == "sftp":
        extra = f'\n    host_key: "{server.host_key}"'
    elif server.scheme == "ftp":
        extra = "\n    allow_plain_ftp: true"
    else:
        extra = f"\n    ca_file: {server.ca_file}"
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "acme-motors.yaml").write_text(
        f"client_id: acme-motors\ndestinations:\n  - name: dms\n    url: {server.url('probe/in')}\n"
        f"    password: ${{CAPS_PASSWORD}}\n    max_connections: {max_connections}{extra}\n"
    )
    return folder


def _ledger(tmp_path: Path) -> Path:
    state = tmp_path / "ledger.sqlite3"
    open_ledger(state).close()
    return state


def _probe(server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str | Path,
           max_connections: int = 2) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """test-connection as text, then as --json: (the text, the destination's JSON)."""
    monkeypatch.setenv("CAPS_PASSWORD", server.password)
    rules = _rules(tmp_path, server, max_connections=max_connections)
    text = invoke("test-connection", "acme-motors", "--rules", rules, *args)
    as_json = invoke("test-connection", "acme-motors", "--rules", rules, "--json", *args)
    assert text.exit_code == as_json.exit_code == (0 if server.renames else 1), text.output
    [destination] = json.loads(as_json.stdout)["destinations"]
    return text.stdout, destination


def test_test_connection_shows_and_keeps_what_each_server_of_the_matrix_does(
    any_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _ledger(tmp_path)

    text, destination = _probe(any_server, tmp_path, monkeypatch, "--state", state)

    caps = destination["capabilities"]
    assert "what the server does:" in text
    assert f"kept in the ledger {state} for {KEY}" in text and destination["kept"].startswith("kept in the ledger")
    # what every server of the matrix was found to do
    assert caps["mkdir_existing_fails"] is True and "making a folder that exists: refused" in text
    assert caps["sessions_tried"] == 3 and "sessions at once: 3 accepted (as many as tried)" in text
    assert "sessions" not in caps
    if any_server.renames:
        assert (caps["rename"], caps["rename_replaces"]) == (True, True)
        assert "rename: works, replaces an existing file" in text
    else:
        assert caps["rename"] is False and "rename: refused" in text
    if any_server.scheme == "sftp":
        assert caps["protocol"] == "sftp" and caps["banner"].startswith("SSH-2.0-OpenSSH")
        assert caps["sftp_version"] == 3 and caps["fsync"] is True and "fsync@openssh.com" in caps["extensions"]
        assert caps["posix_rename"] is any_server.renames  # -P rename,posix-rename hides the extension
        assert caps["limits"]["max_write_length"] > 0 and caps["limits"]["max_open_handles"] > 0
        assert "SFTP version 3, extensions: " in text and "limits: max packet length " in text
    else:
        assert caps["protocol"] == "ftp" and caps["banner"].startswith("220")
        assert "SIZE" in caps["feat"] and caps["size"] is True and caps["rest_stream"] is True
        assert "features: UTF8 " in text and "SIZE yes" in text
    with open_ledger(state) as ledger:
        assert ledger.capabilities()[KEY]["capabilities"] == caps
    # every probe file and session is gone: the folder is empty
    assert remote_files(any_server.root) == set()


@pytest.mark.parametrize("server_fixture", ["pureftpd_norename_server", "sftp_norename_server"])
def test_a_server_that_refuses_renames_fails_the_rename_step_with_what_to_do(
    server_fixture: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    server: RunningServer = request.getfixturevalue(server_fixture)
    monkeypatch.setenv("CAPS_PASSWORD", server.password)
    rules = _rules(tmp_path, server)

    result = invoke("test-connection", "acme-motors", "--rules", rules, "--json")

    assert result.exit_code == 1
    [destination] = json.loads(result.stdout)["destinations"]
    [rename] = [step for step in destination["steps"] if step["name"] == "rename it"]
    assert rename["ok"] is False
    assert "the server refused to rename .ftpexport-probe-" in rename["detail"]
    assert ".part to .ftpexport-probe-" in rename["detail"]
    assert "set upload.atomic: false for this destination" in rename["detail"]
    assert "ask the DMS administrator to allow renames" in rename["detail"]
    assert destination["capabilities"]["rename"] is False
    assert remote_files(server.root) == set()


class SessionLimit:
    """Handler attributes for ``pyftpdlib_server``: a third session at once gets "421 Too many
    connections from the same IP address." (pyftpdlib's own answer), as a server with a per-user or
    per-address limit answers."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def attributes(self) -> dict[str, Any]:
        from pyftpdlib.handlers import FTPHandler

        limit = self

        def handle(handler: Any) -> None:
            with limit._lock:
                refused = limit.open >= limit.limit
                if not refused:
                    limit.open += 1
                    handler.counted_session = True
            if refused:
                handler.handle_max_cons_per_ip()
            else:
                FTPHandler.handle(handler)

        def close(handler: Any) -> None:
            if getattr(handler, "counted_session", False):
                handler.counted_session = False
                with limit._lock:
                    limit.open -= 1
            FTPHandler.close(handler)

        return {"handle": handle, "close": close}


@pytest.fixture
def two_sessions_server() -> Iterator[RunningServer]:
    with pyftpdlib_server("ftp", **SessionLimit(2).attributes()) as server:
        yield server


def test_a_server_that_refuses_a_third_session_is_shown_and_kept_with_the_two_it_accepted(
    two_sessions_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _ledger(tmp_path)

    # max_connections 4: the probe tries up to 5 sessions at once
    text, destination = _probe(two_sessions_server, tmp_path, monkeypatch, "--state", state, max_connections=4)

    assert destination["capabilities"]["sessions"] == 2  # both runs: the probe closed every session it opened
    assert "sessions_tried" not in destination["capabilities"]
    assert "sessions at once: 2, one more was refused (connections are capped at that)" in text
    with open_ledger(state) as ledger:
        assert ledger.capabilities()[KEY]["capabilities"]["sessions"] == 2


def test_an_sftp_server_that_disconnects_a_third_session_is_shown_and_kept_with_the_two_it_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ProFTPD's mod_sftp with MaxClientsPerUser 2 disconnects the third session (reason 12, too
    many connections) after its login."""
    state = _ledger(tmp_path)
    with proftpd_server("sftp", max_clients_per_user=2) as server:
        text, destination = _probe(server, tmp_path, monkeypatch, "--state", state, max_connections=4)

    assert destination["capabilities"]["sessions"] == 2
    assert "sessions at once: 2, one more was refused (connections are capped at that)" in text
    with open_ledger(state) as ledger:
        assert ledger.capabilities()[KEY]["capabilities"]["sessions"] == 2


def test_status_json_shows_what_was_learned_per_destination_with_when(
    ftp_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _ledger(tmp_path)
    with open_ledger(state) as ledger:
        for destination in (KEY, "acme-motors/backup"):
            ledger.open_delivery(record_id="r1", content_hash="h", client_id="acme-motors", destination=destination,
                                 record_path="/in/r1", vin=None)  # fmt: skip
    _probe(ftp_server, tmp_path, monkeypatch, "--state", state)

    document = json.loads(invoke("status", "--state", state, "--json").stdout)

    servers = {row["destination"]: row["server"] for row in document["destinations"]}
    assert servers["acme-motors/backup"] is None  # never probed
    learned = servers[KEY]
    assert learned["capabilities"]["rename"] is True and learned["capabilities"]["protocol"] == "ftp"
    assert learned["probed_at"] and learned["changed_at"] <= learned["probed_at"]


def test_without_a_ledger_what_was_learned_is_shown_not_kept_and_no_ledger_is_made(
    ftp_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "none.sqlite3"

    text, destination = _probe(ftp_server, tmp_path, monkeypatch, "--state", state)

    assert f"not kept: no ledger at {state} yet (run an export first, or pass --state)" in text
    assert destination["capabilities"]["rename"] is True
    assert not state.exists()
