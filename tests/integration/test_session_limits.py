"""A server that takes only so many sessions of a user (ProFTPD's ``MaxClientsPerUser``): over SFTP
it disconnects the session it will not take with reason 12 (too many connections), over FTP it
answers 530; both are ``TooManySessionsError``, so the exporter caps the destination at the
sessions the server took, retries the refused attempt and keeps the limit in the ledger."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from records import make_record
from rulefiles import ftp_destination, rule_document, write_rules
from servers import RunningServer
from servers_ftpd import proftpd_server

from ftpexport.errors import TooManySessionsError
from ftpexport.ledger import open_ledger
from ftpexport.pipeline import Exporter, Options
from ftpexport.rules import load_rules
from ftpexport.transport import open_transport, upload_file

pytestmark = pytest.mark.integration

CLIENT = "acme"
PASSWORD_ENV = "SESSION_LIMITS_PASSWORD"


@pytest.fixture(params=["sftp", "ftp"])
def one_session_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """ProFTPD taking one session of its user at a time."""
    with proftpd_server(request.param, max_clients_per_user=1) as server:
        yield server


def test_an_sftp_session_the_server_will_not_take_is_too_many_sessions() -> None:
    with proftpd_server("sftp", max_clients_per_user=1) as server:
        with open_transport(server.endpoint()) as first:
            with pytest.raises(TooManySessionsError) as caught, open_transport(server.endpoint()):
                pass
            upload_file(first, lambda: io.BytesIO(b"photo"), 5, server.remote_path(), "a.jpg")  # the first goes on
        assert (server.root / "a.jpg").read_bytes() == b"photo"

    message = str(caught.value)
    assert "the server refused one more session: Maximum connections for host/user reached" in message
    assert "SSH disconnect, reason 12: too many connections" in message
    assert server.endpoint().display in message
    assert caught.value.hint is not None and "max_connections" in caught.value.hint


def _destination(server: RunningServer) -> dict[str, object]:
    if server.scheme == "ftp":
        return ftp_destination("dms", server, "photos", PASSWORD_ENV, max_connections=3)
    return {"name": "dms", "url": server.url("photos"), "password": "${" + PASSWORD_ENV + "}",
            "host_key": server.host_key, "max_connections": 3}  # fmt: skip


def test_export_to_a_server_that_takes_one_session_caps_the_destination_and_keeps_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_session_server: RunningServer
) -> None:
    server = one_session_server
    inbox, rules_dir, state = tmp_path / "inbox", tmp_path / "rules", tmp_path / "state" / "ledger.sqlite3"
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    write_rules(rules_dir, rule_document(CLIENT, [_destination(server)]))
    options = Options(jobs=3, retries=3, backoff=0.01, pause=30.0, spool_dir=state.parent / "spool")
    with open_ledger(state) as ledger, Exporter(load_rules(rules_dir), ledger, options) as exporter:
        outcomes = exporter.export([make_record(inbox, n, CLIENT) for n in range(1, 5)]).outcomes

    assert [o.result for o in outcomes] == ["delivered"] * 4, [o.error for o in outcomes]
    assert len(list((server.root / "photos").iterdir())) == 4
    with open_ledger(state) as ledger:
        kept = ledger.capabilities(f"{CLIENT}/dms")[f"{CLIENT}/dms"]["capabilities"]
    assert kept["sessions"] == 1  # the next run opens one session at a time from its start
