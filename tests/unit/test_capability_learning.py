"""The exporter learns what each destination's server does and keeps it in the ledger (issue 15 item 2),
and works by it (item 3): offline, with the pipeline tests' world (real records, a real ledger, the
in-memory server)."""

from __future__ import annotations

import itertools
import logging
import posixpath
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from test_pipeline import World, results, world

from ftpexport.capabilities import MAX_AGE
from ftpexport.errors import TooManySessionsError
from ftpexport.events import Observer
from ftpexport.ledger import open_ledger
from ftpexport.pipeline import Exporter, Options
from ftpexport.rules import load_rules
from ftpexport.transport import Endpoint, Transport
from ftpexport.transport.memory import MemoryServer
from ftpexport.transport.memory_faults import Hang

__all__ = ["world"]  # the fixture of test_pipeline: acme-motors, one FTP destination on an in-memory server

DESTINATION = "acme-motors/dms"


def learned(world: World) -> dict:
    with open_ledger(world.ledger_path) as ledger:
        return ledger.capabilities(DESTINATION).get(DESTINATION) or {}


def test_the_first_connection_learns_the_server_and_the_ledger_keeps_it_with_the_time(world: World) -> None:
    summary = world.export([world.record()])

    assert results(summary) == ["delivered"]
    kept = learned(world)
    assert kept["capabilities"]["protocol"] == "memory"
    assert kept["capabilities"]["size"] is True and kept["capabilities"]["rename"] is True
    assert datetime.fromisoformat(kept["probed_at"]) > datetime.now(UTC) - timedelta(minutes=5)


def test_what_was_learned_less_than_a_day_ago_is_not_learned_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.export([world.record(1)])
    learnt: list[object] = []
    original = MemoryServer.transport

    def counting(server: MemoryServer, endpoint):  # type: ignore[no-untyped-def]
        transport = original(server, endpoint)
        learn = transport.learn
        transport.learn = lambda: (learnt.append(endpoint), learn())[1]  # type: ignore[method-assign]
        return transport

    monkeypatch.setattr(MemoryServer, "transport", counting)
    world.export([world.record(2)])
    assert learnt == []

    with open_ledger(world.ledger_path) as ledger:  # a day and a minute later
        kept = ledger.capabilities(DESTINATION)[DESTINATION]
        old = (datetime.now(UTC) - MAX_AGE - timedelta(minutes=1)).isoformat()
        with ledger._transaction() as db:  # the backend's own table, moved back as the clock would  # type: ignore[attr-defined]
            db.execute("UPDATE server_capabilities SET probed_at = ? WHERE destination = ?", (old, DESTINATION))
    world.export([world.record(3)])
    assert len(learnt) == 1
    assert learned(world)["probed_at"] > kept["probed_at"]


def test_a_server_without_size_is_not_asked_and_the_delivered_log_says_the_size_was_not_checked(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.server.reports_sizes = False

    with caplog.at_level(logging.INFO, logger="ftpexport"):
        summary = world.export([world.record()])

    assert results(summary) == ["delivered"]
    assert not [key for key in world.server.requests if key[0] == "size"]  # learned before the first upload
    [delivered] = [r for r in caplog.records if r.getMessage() == "delivered"]
    assert delivered.size_checked is False  # type: ignore[attr-defined]
    assert learned(world)["capabilities"]["size"] is False


def test_a_rename_that_cannot_replace_is_learned_kept_and_the_next_run_deletes_first(world: World) -> None:
    world.server.replaces_on_rename = False
    folder = world.record()
    for path in world.expected(folder):  # an earlier version of every file is there
        world.server.write(path, b"yesterday's")

    assert results(world.export([folder])) == ["delivered"]
    assert learned(world)["capabilities"]["rename_replaces"] is False
    refused_first = sum(n for (op, _), n in world.server.requests.items() if op == "rename")
    assert refused_first == 2 * len(world.expected(folder))  # refused, then after the delete

    world.server.requests.clear()
    second = world.record(2)
    for path in world.expected(second):
        world.server.write(path, b"yesterday's")
    assert results(world.export([second])) == ["delivered"]  # a new process: what it knows is the ledger's
    renames = sum(n for (op, _), n in world.server.requests.items() if op == "rename")
    assert renames == len(world.expected(second))  # no refused rename first
    assert {p: world.server.read(p) for p in world.expected(second)} == world.expected(second)


def test_renames_refused_are_learned_and_atomic_uploads_still_never_write_the_final_name(world: World) -> None:
    world.server.refuse("rename", "*", permanent=True, times=None)

    summary = world.export([world.record()])

    [outcome] = summary.outcomes
    assert outcome.result == "failed"
    assert "the server refused to rename" in (outcome.error or "") and "upload.atomic: false" in (outcome.error or "")
    assert learned(world)["capabilities"]["rename"] is False
    names = [posixpath.basename(path) for path in world.server.uploads]
    assert names and all(name.startswith(".") and name.endswith(".part") for name in names)


def one_session_held(world: World) -> list[TooManySessionsError]:
    """A server taking one session, a destination of 3 connections, and the first upload held until
    another session was refused; returns the refusals as they come."""
    world.rules(max_connections=3)
    world.server.max_sessions = 1
    held = world.server.hang("put", "*")
    refusals: list[TooManySessionsError] = []

    def refused_releases(connect: Callable[[], None], endpoint: Endpoint) -> None:
        try:
            connect()
        except TooManySessionsError as exc:
            refusals.append(exc)
            held.release()
            raise

    on_login(world, refused_releases)
    return refusals


def on_login(world: World, login: Callable[[Callable[[], None], Endpoint], None]) -> None:
    """Each connection the exporter opens logs in through ``login(connect, endpoint)``, ``connect``
    being its own."""
    open_transport = world.transport

    def transport(endpoint: Endpoint) -> Transport:
        made = open_transport(endpoint)
        connect = made.connect
        made.connect = lambda: login(connect, endpoint)  # type: ignore[method-assign]
        return made

    world.transport = transport  # type: ignore[method-assign]


def test_a_server_that_refuses_a_session_caps_the_destination_at_what_it_accepted(world: World) -> None:
    server = world.server
    open_transport = world.transport
    one_session_held(world)
    folders = [world.record(n) for n in range(1, 7)]

    summary = world.export(folders, jobs=3, retries=10)

    assert results(summary) == ["delivered"] * 6
    assert learned(world)["capabilities"]["sessions"] == 1

    # The next process reads it from the ledger before its first job and runs one attempt at a time:
    # its first login is held until all six deliveries are queued, and no second one is tried meanwhile
    # (it would be refused, and with no retries a delivery failed).
    world.transport = open_transport  # type: ignore[method-assign]
    login = server.hang("login", "*")
    attempts_before, logins_before = server.login_attempts, server.connections
    more = [world.record(n) for n in range(7, 13)]
    all_queued = QueuedReleases(len(more), login)
    with open_ledger(world.ledger_path) as ledger:
        settings = {"jobs": 3, "retries": 0, "backoff": 0.001, "spool_dir": world.root / "spool"}
        with Exporter(load_rules(world.root / "rules"), ledger, Options(**settings), observers=[all_queued],
                      transport_factory=world.transport) as exporter:  # fmt: skip
            summary = exporter.export(more)
    assert results(summary) == ["delivered"] * 6
    assert server.login_attempts - attempts_before == server.connections - logins_before  # none refused


def test_a_session_refused_while_another_is_open_does_not_open_the_breaker(world: World) -> None:
    """A refusal while the first session uploads would open a breaker of threshold 1 if it were a
    failure of the server: it caps the destination instead, and every delivery goes through."""
    refusals = one_session_held(world)
    summary = world.export([world.record(n) for n in range(1, 5)], jobs=3, retries=10, breaker_threshold=1,
                           pause=300.0)  # fmt: skip

    assert results(summary) == ["delivered"] * 4
    assert refusals and all(exc.sessions_open == 1 for exc in refusals)
    assert learned(world)["capabilities"]["sessions"] == 1


def test_logins_refused_together_cap_the_destination_and_do_not_open_the_breaker(world: World) -> None:
    """A server that counts sessions at login (ProFTPD's MaxClientsPerUser) refuses all of the first
    three logins, which meet; none of ours was open yet. The refusals are its limit, not a failure
    of the server: with a breaker of threshold 1, every delivery still goes through."""
    world.rules(max_connections=3)
    world.server.max_sessions = 1
    meet = threading.Barrier(3, timeout=10)
    logins = itertools.count()
    refusals: list[TooManySessionsError] = []

    def the_first_three_meet_and_are_refused(connect: Callable[[], None], endpoint: Endpoint) -> None:
        if next(logins) >= 3:
            return connect()
        meet.wait()
        exc = TooManySessionsError("the server refused one more session: 530 Maximum connections for host/user "
                                   "reached", destination=endpoint.display)  # fmt: skip
        refusals.append(exc)
        raise exc

    on_login(world, the_first_three_meet_and_are_refused)
    summary = world.export([world.record(n) for n in range(1, 5)], jobs=3, retries=10, breaker_threshold=1,
                           pause=300.0)  # fmt: skip

    assert results(summary) == ["delivered"] * 4
    assert sorted(exc.sessions_open for exc in refusals) == [1, 1, 2]
    assert learned(world)["capabilities"]["sessions"] == 1


class QueuedReleases(Observer):
    """Releases ``hang`` once ``count`` deliveries were queued."""

    def __init__(self, count: int, hang: Hang) -> None:
        self.count = count
        self.hang = hang

    def queued(self, client_id: str, destination: str, record_id: str, estimated_bytes: int) -> None:
        self.count -= 1
        if self.count == 0:
            self.hang.release()


def test_a_server_that_does_not_take_pipelined_commands_is_kept_and_shown() -> None:
    from ftpexport.display import capability_lines
    from ftpexport.transport.capabilities import ServerCapabilities

    kept = ServerCapabilities.from_dict(ServerCapabilities(protocol="ftp", pipelining=False).as_dict())

    assert kept.pipelining is False
    assert "RNFR and RNTO: one at a time (the server did not take them sent together)" in capability_lines(
        kept.as_dict()
    )
    assert not any("RNFR" in line for line in capability_lines({"protocol": "ftp", "pipelining": True}))
