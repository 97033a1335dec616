"""The upload strategy follows what is known of the server, never against the rule (issue 15 item 3),
offline on the in-memory transport: a rename that cannot replace, a server without SIZE, renames
refused, a server that refuses one more session."""

from __future__ import annotations

import ftplib
import io
import logging
import threading

import pytest
from pydantic import SecretStr

from ftpexport.errors import AuthenticationError, PermanentError, TooManySessionsError, TransientError
from ftpexport.transport import Endpoint, Transport, Upload, upload_file
from ftpexport.transport.base import temporary_name
from ftpexport.transport.capabilities import ServerCapabilities, feat_lines
from ftpexport.transport.ftp_errors import map_errors
from ftpexport.transport.memory import MemoryServer
from ftpexport.transport.pool import ConnectionPool

ENDPOINT = Endpoint("ftp", "dms.example", 21, "acme", SecretStr("not-a-real-password"), timeout=30.0, label="acme/dms")


def upload(transport: Transport, data: bytes, name: str, **options: object) -> Upload:
    return upload_file(transport, lambda: io.BytesIO(data), len(data), "", name, **options)  # type: ignore[arg-type]


def connected(server: MemoryServer, known: ServerCapabilities | None = None) -> Transport:
    transport = server.transport(ENDPOINT)
    transport.connect()
    if known is not None:
        transport.adopt(known)
    return transport


# --- a rename that cannot replace a file


def test_a_server_known_not_to_replace_on_rename_gets_the_file_deleted_first_without_a_refused_rename() -> None:
    server = MemoryServer(replaces_on_rename=False)
    server.write("VIN1.zip", b"yesterday's")
    transport = connected(server, ServerCapabilities(rename_replaces=False))

    upload(transport, b"today's", "VIN1.zip")

    assert server.listing() == {"VIN1.zip": b"today's"}
    assert server.requests[("rename", "VIN1.zip")] == 1  # no refused rename first
    assert server.requests[("remove", "VIN1.zip")] == 1


def test_a_rename_that_would_not_replace_is_learned_and_the_next_upload_deletes_first() -> None:
    server = MemoryServer(replaces_on_rename=False)
    server.write("VIN1.zip", b"yesterday's")
    transport = connected(server)

    upload(transport, b"today's", "VIN1.zip")

    assert server.listing() == {"VIN1.zip": b"today's"}
    assert server.requests[("rename", "VIN1.zip")] == 2  # refused, then after the delete
    assert (transport.known.rename, transport.known.rename_replaces) == (True, False)

    upload(transport, b"tomorrow's", "VIN1.zip")
    assert server.requests[("rename", "VIN1.zip")] == 3  # one more: straight to delete-then-rename
    assert server.listing() == {"VIN1.zip": b"tomorrow's"}


def test_a_rename_that_replaces_is_tried_first_whatever_was_not_learned() -> None:
    server = MemoryServer()
    server.write("VIN1.zip", b"yesterday's")
    transport = connected(server)

    upload(transport, b"today's", "VIN1.zip")

    assert server.requests[("remove", "VIN1.zip")] == 0
    assert transport.known.rename is True and transport.known.rename_replaces is None


# --- SIZE missing


def test_a_server_known_to_have_no_size_is_not_asked_and_the_upload_says_the_size_was_not_checked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = MemoryServer(reports_sizes=False)
    transport = connected(server, ServerCapabilities(size=False))

    with caplog.at_level(logging.INFO, logger="ftpexport"):
        result = upload(transport, b"data", "VIN1.zip")

    assert result == Upload("VIN1.zip", 4, size_checked=False)
    assert not [key for key in server.requests if key[0] == "size"]
    [record] = [r for r in caplog.records if "size was not checked" in r.getMessage()]
    assert record.size_checked is False and record.remote_path == temporary_name("VIN1.zip")  # type: ignore[attr-defined]


def test_a_server_without_size_is_learned_on_the_first_upload_and_not_asked_again() -> None:
    server = MemoryServer(reports_sizes=False)
    transport = connected(server)

    first = upload(transport, b"data", "VIN1.zip")
    second = upload(transport, b"more", "VIN2.zip")

    assert (first.size_checked, second.size_checked) == (False, False)
    assert transport.known.size is False
    assert [key for key in server.requests if key[0] == "size"] == [("size", temporary_name("VIN1.zip"))]


def test_a_server_with_size_checks_it() -> None:
    server = MemoryServer()
    transport = connected(server)

    assert upload(transport, b"data", "VIN1.zip").size_checked is True
    assert server.requests[("size", temporary_name("VIN1.zip"))] == 1


# --- renames refused: atomic never becomes a direct write


def test_atomic_upload_to_a_server_known_to_refuse_renames_is_never_written_under_its_final_name() -> None:
    server = MemoryServer()
    server.refuse("rename", "*", permanent=True, times=None)
    transport = connected(server, ServerCapabilities(rename=False))

    with pytest.raises(PermanentError) as caught:
        upload(transport, b"data", "VIN1.zip", atomic=True)

    message = str(caught.value)
    assert "the server refused to rename .VIN1.zip.part to VIN1.zip" in message
    assert "upload.atomic: false" in message and "DMS administrator" in message
    assert server.uploads == {temporary_name("VIN1.zip"): 1}  # only ever the temporary name
    assert server.listing() == {}  # and that one removed


def test_a_refused_rename_is_noted() -> None:
    server = MemoryServer()
    server.refuse("rename", "*", permanent=True)
    transport = connected(server)

    with pytest.raises(PermanentError, match="refused to rename"):
        upload(transport, b"data", "VIN1.zip")

    assert transport.known.rename is False


def test_atomic_false_writes_under_the_final_name_as_the_rule_says() -> None:
    server = MemoryServer()
    transport = connected(server, ServerCapabilities(rename=False))

    upload(transport, b"data", "VIN1.zip", atomic=False)

    assert server.uploads == {"VIN1.zip": 1} and server.renames == {}


# --- sessions


def test_a_pool_that_meets_a_refused_session_reports_how_many_were_open_and_keeps_no_more_idle() -> None:
    server = MemoryServer(max_sessions=2)
    refused: list[int] = []
    pool = ConnectionPool(ENDPOINT, size=4, transport_factory=server.transport, on_sessions_refused=refused.append)
    first, second = pool.acquire(), pool.acquire()

    with pytest.raises(TooManySessionsError):
        pool.acquire()

    assert refused == [2] and pool.size == 2
    for transport in (first, second):
        pool.release(transport, reuse=True)
    pool.close()


def test_logins_that_meet_and_are_all_refused_count_each_other() -> None:
    """A server that counts sessions at login (ProFTPD's MaxClientsPerUser) refuses every one of
    several logins that meet: none was open when it refused, yet it refused them for its limit."""
    server = MemoryServer()
    meet = threading.Barrier(3, timeout=10)

    def login_refused_together(endpoint: Endpoint) -> Transport:
        made = server.transport(endpoint)

        def refused() -> None:
            meet.wait()
            raise TooManySessionsError("the server refused one more session: 530 Maximum connections for host/user "
                                       "reached", destination=endpoint.display)  # fmt: skip

        made.connect = refused  # type: ignore[method-assign]
        return made

    refused: list[int] = []
    pool = ConnectionPool(ENDPOINT, size=4, transport_factory=login_refused_together,
                          on_sessions_refused=refused.append)  # fmt: skip
    caught: list[TooManySessionsError] = []

    def acquire() -> None:
        with pytest.raises(TooManySessionsError) as exc:
            pool.acquire()
        caught.append(exc.value)

    threads = [threading.Thread(target=acquire) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # the first refusal counted saw the two others still connecting, the second one, the last none
    # but met two: the crowd was refused, one at a time from now on
    assert sorted(exc.sessions_open for exc in caught) == [1, 1, 2]
    assert sorted(refused) == [1, 1, 2] and pool.size == 1


def test_a_refused_first_session_teaches_no_limit() -> None:
    server = MemoryServer(max_sessions=0)
    refused: list[int] = []
    pool = ConnectionPool(ENDPOINT, size=4, transport_factory=server.transport, on_sessions_refused=refused.append)

    with pytest.raises(TooManySessionsError):
        pool.acquire()

    assert refused == [] and pool.size == 4


# --- what is known, as kept in the ledger


def test_capabilities_round_trip_through_a_json_object_and_keep_keys_of_a_newer_version() -> None:
    caps = ServerCapabilities(protocol="ftp", size=False, rename_replaces=False, sessions=2)
    caps.learned_from_feat(feat_lines("211-Features:\n UTF8\n SIZE\n REST STREAM\n MLST type*;size*;\n211 End"))

    data = caps.as_dict()
    assert data["feat"] == ["UTF8", "SIZE", "REST STREAM", "MLST type*;size*;"]
    assert (data["utf8"], data["size"], data["rest_stream"], data["mlst"], data["epsv"]) == (True, True, True, True,
                                                                                          False)  # fmt: skip
    assert "banner" not in data  # unknown fields are left out
    assert ServerCapabilities.from_dict(data) == caps
    assert ServerCapabilities.from_dict({**data, "from_the_future": 1}).as_dict() == {**data, "from_the_future": 1}


def test_merged_takes_what_the_newer_knows_and_keeps_the_rest() -> None:
    old = ServerCapabilities(protocol="ftp", size=True, rename_replaces=False)
    new = old.merged(ServerCapabilities(size=False, sessions=3))

    assert new == ServerCapabilities(protocol="ftp", size=False, rename_replaces=False, sessions=3)
    assert old.size is True  # untouched


# --- which replies say "no more sessions"


@pytest.mark.parametrize(
    "reply",
    [
        "421 Too many connections from the same IP address.",  # pyftpdlib
        "421 There are too many connections from your internet address.",  # vsftpd
        "530 Sorry, the maximum number of clients (2) for this user are already connected.",  # ProFTPD
    ],
)
def test_a_reply_that_says_no_more_sessions_is_too_many_sessions_not_a_refused_login(reply: str) -> None:
    error = ftplib.error_temp(reply) if reply.startswith("4") else ftplib.error_perm(reply)

    with pytest.raises(TooManySessionsError) as caught, map_errors(ENDPOINT, phase="login", login=True):
        raise error

    assert caught.value.retriable and "lower max_connections" in str(caught.value)


def test_a_421_that_says_nothing_of_sessions_and_a_wrong_password_are_what_they_were() -> None:
    with pytest.raises(TransientError) as transient, map_errors(ENDPOINT, phase="greeting"):
        raise ftplib.error_temp("421 Service not available, closing control connection.")
    with pytest.raises(AuthenticationError), map_errors(ENDPOINT, phase="login", login=True):
        raise ftplib.error_perm("530 Login incorrect.")

    assert not isinstance(transient.value, TooManySessionsError)
