"""The exporter, offline: real record folders, a real ledger, and an in-memory server with faults.

Each test drives ``Exporter`` through ``transport.memory`` (no socket, no server process): retries,
parking, the breaker and its probe, if_exists, deferral at shutdown, and every path of the crash
journal. A crash is what ``kill -9`` leaves at one moment: the ledger's committed transactions (a
copy taken with SQLite's backup API) and the server's files (``MemoryServer.snapshot``), taken at
that moment; a new Exporter on the copy resumes, as ``ftpexport run`` does after a crash.

The journal (``Ledger.mark_files``): a file is ``renaming`` once its temporary file is complete,
just before the rename, and ``published`` after it, in the transaction of the next file's
``renaming`` (the last file of a delivery stays ``renaming``). The paths, and the test of each:

- killed mid-upload, nothing journalled: sent again, no final name meanwhile
  (``test_kill_during_the_upload_sends_it_again_and_never_shows_a_partial_file``)
- killed after ``renaming``, before the rename reached the server: the complete temporary file is
  renamed, not sent again (``test_kill_before_the_rename_renames_without_sending_again``)
- killed after the rename, before ``published``: not sent again, whatever the rule's if_exists, and
  also when the DMS took the file meanwhile (``test_kill_after_the_rename_*``)
- killed between two files: the one before the last renamed is ``published`` (written with the
  last one's ``renaming``), and the server is not even asked about it; the last one is asked about
  (``test_kill_between_two_files_asks_the_server_about_the_last_renamed_one_only``)
- killed after every file, before the delivery's commit
  (``test_kill_before_the_delivery_is_committed_sends_nothing_again``)
- ``renaming`` but the temporary file is incomplete: sent again
  (``test_renaming_with_an_incomplete_temporary_file_is_sent_again``)
- ``atomic: false``, killed after the file was written under its final name
  (``test_non_atomic_kill_after_the_write_does_not_send_again``)
- in one run: the rename happened but its reply was lost (``test_rename_without_reply_*``), the
  rename refused for now (``test_rename_refused_for_now_*``) or for good: the journal entry is
  dropped (``test_rename_refused_for_good_*``), a transfer cut half way
  (``test_a_cut_mid_transfer_*``)
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import posixpath
import socket
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fifo_guard import HANG_GUARD
from records import MakeRecord, vehicle, vin
from rulefiles import rule_document, write_rules

from ftpexport import package as package_module
from ftpexport.events import Outcome, Summary
from ftpexport.ledger import Ledger, open_ledger
from ftpexport.pipeline import Exporter, Options
from ftpexport.plan import make_package, plan_record, preview_record
from ftpexport.record import load_record
from ftpexport.rules import load_rules, routes_for
from ftpexport.transport import Endpoint, Transport
from ftpexport.transport.base import temporary_name
from ftpexport.transport.memory import MemoryServer

PASSWORD_ENV = "PIPELINE_TEST_PASSWORD"
DESTINATION = "acme-motors/dms"
FILES = {"package": {"format": "files", "done_marker": "{{ vin }}.done"}}


def jpeg(size: int) -> bytes:
    """A JPEG-looking image of ``size`` bytes that does not compress (several blocks of a transfer)."""
    return b"\xff\xd8" + os.urandom(size - 4) + b"\xff\xd9"


@dataclass
class World:
    """The inbox, rules folder, ledger and memory servers (by host name) of one test."""

    root: Path
    make: MakeRecord
    servers: dict[str, MemoryServer] = field(default_factory=lambda: {"dms.example": MemoryServer()})

    @property
    def server(self) -> MemoryServer:
        return self.servers["dms.example"]

    @property
    def ledger_path(self) -> Path:
        return self.root / "state" / "ledger.sqlite3"

    def rules(self, *, hosts: tuple[str, ...] = ("dms.example",), max_connections: int = 2, **sections: Any) -> None:
        """acme-motors: one FTP destination per host (``dms`` at dms.example:/dms), plus ``sections``."""
        destinations = []
        for host in hosts:
            name = host.split(".")[0]
            destinations.append({"name": name, "url": f"ftp://acme@{host}/{name}", "password": f"${{{PASSWORD_ENV}}}",
                                 "allow_plain_ftp": True, "max_connections": max_connections})  # fmt: skip
            self.servers.setdefault(host, MemoryServer())
        write_rules(self.root / "rules", rule_document("acme-motors", destinations, **sections))

    def record(self, n: int = 1, image_size: int = 0) -> Path:
        images = {"01.jpg": jpeg(image_size), "02.jpg": jpeg(image_size)} if image_size else None
        return self.make(f"inbox/veh-{n}", fields=vehicle(id=f"veh-{n}", vin=vin(n)), images=images)

    def expected(self, folder: Path) -> dict[str, bytes]:
        """``{remote path: bytes}`` the exporter builds for a record at dms (the zip is deterministic)."""
        ruleset = load_rules(self.root / "rules")
        record = load_record(folder)
        plan = plan_record(record, ruleset, routes_for(ruleset, record))
        with tempfile.TemporaryDirectory(prefix="ftpexport-expected-") as tmp:
            package = make_package(plan, Path(tmp))
            artifacts = [*package.files, *([package.done_marker] if package.done_marker else [])]
            result = {}
            for artifact in artifacts:
                with artifact.open() as stream:
                    result[f"dms/{artifact.name}"] = stream.read()
        return result

    def transport(self, endpoint: Endpoint) -> Transport:
        return self.servers[endpoint.host].transport(endpoint)

    @contextlib.contextmanager
    def exporter(self, ledger: Ledger, on_outcome: Any = None, **options: Any) -> Iterator[Exporter]:
        settings = {"jobs": 2, "retries": 3, "backoff": 0.001, "spool_dir": self.root / "spool", **options}
        ruleset = load_rules(self.root / "rules")
        assert not ruleset.errors, ruleset.errors
        with Exporter(ruleset, ledger, Options(**settings), on_outcome=on_outcome,
                      transport_factory=self.transport) as exporter:  # fmt: skip
            yield exporter

    def export(self, folders: list[Path], ledger_path: Path | None = None, **options: Any) -> Summary:
        """One batch run, like ``ftpexport run``: attempts a killed run left open are closed first."""
        with open_ledger(ledger_path or self.ledger_path) as ledger:
            ledger.close_interrupted()
            with self.exporter(ledger, **options) as exporter:
                return exporter.export(folders)

    def deliveries(self, ledger_path: Path | None = None) -> list[tuple[str, int, list[str | None]]]:
        """``[(status, attempts, [result of each attempt])]`` of every delivery, sorted."""
        with open_ledger(ledger_path or self.ledger_path) as ledger:
            rows = [(d.status, d.attempts, [a["result"] for a in ledger.attempts(d.id)]) for d in ledger.deliveries()]
        return sorted(rows)

    def journal(self, ledger_path: Path | None = None) -> dict[str, str]:
        """The journal of the only delivery: ``{remote path: renaming/published}``."""
        with open_ledger(ledger_path or self.ledger_path) as ledger:
            [delivery] = ledger.deliveries()
            return dict(ledger.file_states(delivery.id))

    def requeue(self) -> None:
        with open_ledger(self.ledger_path) as ledger:
            ledger.requeue()


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test of this file reaches the network: a connection or a name lookup fails, and the test."""
    tried: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        tried.append(args)
        raise OSError(errno.ENETUNREACH, "the offline pipeline tests do not connect")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield
    assert tried == [], "a test of the offline pipeline tried to reach the network"


@pytest.fixture
def world(tmp_path: Path, make_record: MakeRecord, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv(PASSWORD_ENV, "not-a-real-password")
    world = World(tmp_path, make_record)
    world.rules()
    return world


class Outcomes:
    """``on_outcome`` for runs fed with ``submit``: the test waits for them (with a hang guard)."""

    def __init__(self) -> None:
        self.items: list[Outcome] = []
        self._condition = threading.Condition()

    def __call__(self, outcome: Outcome) -> None:
        with self._condition:
            self.items.append(outcome)
            self._condition.notify_all()

    def wait_for(self, count: int) -> list[Outcome]:
        with self._condition:
            assert self._condition.wait_for(lambda: len(self.items) >= count, timeout=HANG_GUARD), self.items
            return list(self.items)


class Crash:
    """What ``kill -9`` at one moment leaves: the ledger's committed state and the server's files.

    Call it at that moment (``server.at(...)``, or from a wrapped ledger method); the first call
    counts. The "killed" run goes on against the live server and ledger, which the test then
    ignores; ``resume`` runs a new Exporter on what the crash left, against the server as it was.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.ledger_path = world.root / "crashed" / "ledger.sqlite3"
        self.server: MemoryServer | None = None

    def __call__(self) -> None:
        if self.server is not None:
            return
        self.server = self.world.server.snapshot()
        self.ledger_path.parent.mkdir()
        with (
            contextlib.closing(sqlite3.connect(self.world.ledger_path)) as live,
            contextlib.closing(sqlite3.connect(self.ledger_path)) as copy,
        ):
            live.backup(copy)

    @property
    def left(self) -> MemoryServer:
        assert self.server is not None, "the crash point was never reached"
        return self.server

    def resume(self, folders: list[Path], **options: Any) -> Summary:
        self.world.servers["dms.example"] = self.left
        return self.world.export(folders, self.ledger_path, **options)

    def journal(self) -> dict[str, str]:
        return self.world.journal(self.ledger_path)

    def deliveries(self) -> list[tuple[str, int, list[str | None]]]:
        return self.world.deliveries(self.ledger_path)


def finals(server: MemoryServer) -> dict[str, bytes]:
    """The files under their final names (not a hidden temporary ``.NAME.part``)."""
    return {path: data for path, data in server.listing().items() if not path.endswith(".part")}


def parts(server: MemoryServer) -> set[str]:
    return {path for path in server.listing() if path.endswith(".part")}


def part_of(path: str) -> str:
    folder, _, name = path.rpartition("/")
    return f"{folder}/{temporary_name(name)}"


def once_each(expected: dict[str, bytes]) -> tuple[dict[str, int], dict[str, int]]:
    """Uploads and renames when each file was stored once under its temporary name and renamed once."""
    return {part_of(path): 1 for path in expected}, dict.fromkeys(expected, 1)


def asked_about(server: MemoryServer, path: str) -> dict[str, int]:
    """The requests a client made about ``path`` or its temporary name (to this copy of the server)."""
    return {f"{op} {p}": n for (op, p), n in server.requests.items() if p in (path, part_of(path))}


def results(summary: Summary) -> list[str]:
    return sorted(o.result for o in summary.outcomes)


def zip_name(n: int = 1) -> str:
    return f"dms/{vin(n)}.zip"


# --- delivering, retrying, parking


def test_a_record_is_delivered_over_the_memory_transport(world: World) -> None:
    folder = world.record(image_size=20_000)
    expected = world.expected(folder)

    summary = world.export([folder])

    assert results(summary) == ["delivered"] and summary.ok
    assert world.server.listing() == expected == {zip_name(): expected[zip_name()]}
    assert (world.server.uploads, world.server.renames) == once_each(expected)
    assert world.deliveries() == [("delivered", 1, ["delivered"])]

    again = world.export([folder])  # the ledger knows it: nothing is sent again
    assert results(again) == ["unchanged"]
    assert world.server.connections == 1


def test_transient_refusals_are_retried_then_delivered(world: World) -> None:
    world.server.refuse("put", "*.zip*", times=2)

    summary = world.export([world.record()], retries=3)

    assert [(o.result, o.attempts) for o in summary.outcomes] == [("delivered", 3)]
    assert world.deliveries() == [("delivered", 3, ["failed", "failed", "delivered"])]
    assert list(finals(world.server)) == [zip_name()] and parts(world.server) == set()


def test_parked_as_failed_after_the_retries_then_left_alone(world: World) -> None:
    world.server.refuse("put", "*", times=None, message="the server failed (451 local error)")
    folder = world.record()

    summary = world.export([folder], retries=2)

    [outcome] = summary.outcomes
    assert (outcome.result, outcome.attempts) == ("failed", 3)  # the first attempt and 2 retries
    assert outcome.error is not None and "451 local error" in outcome.error
    assert world.deliveries() == [("failed", 3, ["failed"] * 3)]
    assert finals(world.server) == {}

    logins = world.server.login_attempts
    again = world.export([folder], retries=2)
    assert results(again) == ["parked"]  # it waits for `ftpexport retry`: no new attempt
    assert world.server.login_attempts == logins


def test_the_rule_files_retries_win_over_the_option(world: World) -> None:
    world.rules(upload={"retries": 1})
    world.server.refuse("put", "*", times=None)

    summary = world.export([world.record()], retries=5)

    assert [(o.result, o.attempts) for o in summary.outcomes] == [("failed", 2)]


def test_a_permanent_refusal_is_not_retried(world: World) -> None:
    world.server.refuse("put", "*", permanent=True, times=None)

    summary = world.export([world.record()], retries=5)

    assert [(o.result, o.attempts) for o in summary.outcomes] == [("failed", 1)]
    assert world.server.uploads == {}


# --- the breaker


def test_the_breaker_opens_and_the_other_destination_goes_on(world: World) -> None:
    world.rules(hosts=("dms.example", "backup.example"), max_connections=1)
    world.server.refuse("login", times=None)  # dms is down; backup answers
    folders = [world.record(n) for n in range(1, 5)]

    summary = world.export(folders, retries=10, breaker_threshold=2, pause=300.0)

    assert {(o.destination, o.result) for o in summary.outcomes} == {
        ("acme-motors/dms", "deferred"),
        ("acme-motors/backup", "delivered"),
    }
    # two failed logins opened the breaker: nothing more was tried at dms in this run
    assert world.server.login_attempts == 2
    deferred = [o for o in summary.outcomes if o.result == "deferred"]
    assert len(deferred) == 4 and all("the destination is paused" in (o.error or "") for o in deferred)
    assert len(finals(world.servers["backup.example"])) == 4
    assert [status for status, _, _ in world.deliveries()] == ["delivered"] * 4 + ["pending"] * 4


def test_a_refused_login_pauses_the_destination_at_once(world: World) -> None:
    world.server.refuse("login", permanent=True, times=None)
    folders = [world.record(n) for n in range(1, 4)]

    summary = world.export(folders, retries=10, breaker_threshold=3, jobs=1)

    assert world.server.login_attempts == 1
    assert results(summary) == ["deferred", "deferred", "failed"]
    [failed] = [o for o in summary.outcomes if o.result == "failed"]
    assert failed.error is not None and "530" in failed.error


def test_after_the_pause_one_probe_closes_the_breaker(world: World) -> None:
    world.server.refuse("login", times=2)
    trips_at_login: list[int] = []
    outcomes = Outcomes()
    with (
        open_ledger(world.ledger_path) as ledger,
        world.exporter(ledger, on_outcome=outcomes, retries=10, breaker_threshold=2, pause=0.05) as exporter,
    ):
        world.server.at("login", "*", lambda: trips_at_login.append(exporter.lanes()[DESTINATION].trips), times=None)
        exporter.submit([world.record(1)])  # watch mode: the exporter waits out the pause
        [outcome] = outcomes.wait_for(1)
        exporter.close()
        lane = exporter.lanes()[DESTINATION]

    assert (outcome.result, outcome.attempts) == ("delivered", 3)
    # two failures opened the breaker; the third login was the probe, made while it was open
    assert trips_at_login == [0, 0, 1]
    assert lane.trips == 0  # the probe's success closed it


# --- if_exists


@pytest.mark.parametrize(
    ("if_exists", "result", "left"),
    [("overwrite", "delivered", None), ("skip", "skipped", b"theirs"), ("fail", "failed", b"theirs")],
)
def test_if_exists(world: World, if_exists: str, result: str, left: bytes | None) -> None:
    world.rules(upload={"if_exists": if_exists})
    world.server.write(zip_name(), b"theirs")
    folder = world.record()

    summary = world.export([folder])

    [outcome] = summary.outcomes
    assert outcome.result == result
    assert world.server.read(zip_name()) == (left or world.expected(folder)[zip_name()])
    assert world.server.uploads == ({} if left else {part_of(zip_name()): 1})
    if if_exists == "fail":
        assert outcome.attempts == 1 and "if_exists" in (outcome.error or "")
        assert world.deliveries() == [("failed", 1, ["failed"])]


# --- stopping


def test_an_upload_running_at_shutdown_is_cut_after_the_grace_and_stays_pending(world: World) -> None:
    world.rules(max_connections=1)
    hang = world.server.hang("put", "*", after=100)
    outcomes = Outcomes()
    first, second = world.record(1, image_size=5000), world.record(2)
    with open_ledger(world.ledger_path) as ledger, world.exporter(ledger, on_outcome=outcomes) as exporter:
        exporter.submit([first, second])
        assert hang.reached.wait(HANG_GUARD)
        exporter.close(grace=0)  # the held upload is cut; the queued one is not started

    deferred = {o.record_id: o for o in outcomes.wait_for(2)}
    assert {o.result for o in deferred.values()} == {"deferred"}
    assert (deferred["veh-1"].error or "").startswith("stopped during the attempt")
    assert (deferred["veh-2"].error or "").startswith("not tried")
    assert finals(world.server) == {}
    assert world.deliveries() == [("pending", 0, []), ("pending", 1, ["failed"])]

    summary = world.export([first, second])  # the next run delivers both
    assert results(summary) == ["delivered", "delivered"]
    assert parts(world.server) == set()


# --- the crash journal: killed at one moment, then resumed by a new run


def test_kill_during_the_upload_sends_it_again_and_never_shows_a_partial_file(world: World) -> None:
    folder = world.record(image_size=20_000)
    expected = world.expected(folder)
    crash = Crash(world)
    world.server.at("put", "*", crash, after=10_000)

    world.export([folder])
    assert finals(crash.left) == {} and crash.left.listing() == {part_of(zip_name()): expected[zip_name()][:10_000]}
    assert crash.journal() == {}

    summary = crash.resume([folder])

    assert results(summary) == ["delivered"]
    assert crash.left.listing() == expected
    assert crash.deliveries() == [("delivered", 2, ["interrupted", "delivered"])]


def test_kill_before_the_rename_renames_without_sending_again(world: World) -> None:
    folder = world.record()
    expected = world.expected(folder)
    crash = Crash(world)
    world.server.at("rename", "*", crash)  # journalled "renaming", the rename not yet on the server

    world.export([folder])
    assert crash.journal() == {zip_name(): "renaming"}
    assert finals(crash.left) == {} and parts(crash.left) == {part_of(zip_name())}

    summary = crash.resume([folder])

    assert results(summary) == ["delivered"]
    assert crash.left.listing() == expected
    assert (crash.left.uploads, crash.left.renames) == once_each(expected)
    assert crash.deliveries() == [("delivered", 2, ["interrupted", "delivered"])]


@pytest.mark.parametrize("fmt", ["zip", "files"])
def test_kill_after_the_rename_does_not_send_again(world: World, fmt: str) -> None:
    if fmt == "files":
        world.rules(**FILES)  # several files, then a done marker; killed on the second image
    folder = world.record()
    expected = world.expected(folder)
    victim = zip_name() if fmt == "zip" else next(p for p in expected if p.endswith("_02.jpg"))
    crash = Crash(world)
    world.server.at("renamed", victim, crash)  # the rename happened; the journal still says "renaming"

    world.export([folder])
    assert crash.journal()[victim] == "renaming"
    assert crash.left.read(victim) == expected[victim]

    summary = crash.resume([folder])

    [outcome] = summary.outcomes
    assert outcome.result == "delivered"
    assert sorted(outcome.remote_paths) == sorted(expected)
    # over both runs: each file stored once under its temporary name and renamed once
    assert crash.left.listing() == expected
    assert (crash.left.uploads, crash.left.renames) == once_each(expected)
    assert crash.deliveries() == [("delivered", 2, ["interrupted", "delivered"])]


@pytest.mark.parametrize("if_exists", ["skip", "fail"])
def test_kill_after_the_rename_resumes_as_delivered_whatever_if_exists_says(world: World, if_exists: str) -> None:
    world.rules(upload={"if_exists": if_exists})
    folder = world.record()
    crash = Crash(world)
    world.server.at("renamed", "*", crash)

    world.export([folder])
    summary = crash.resume([folder])

    # the file on the server is ours, published by the killed run: not someone else's to skip or refuse
    assert results(summary) == ["delivered"]
    assert (crash.left.uploads, crash.left.renames) == once_each(world.expected(folder))


def test_kill_after_the_rename_when_the_dms_took_the_file_since(world: World) -> None:
    folder = world.record()
    crash = Crash(world)
    world.server.at("renamed", "*", crash)

    world.export([folder])
    crash.left.delete(zip_name())  # the DMS ingested it before the restart
    summary = crash.resume([folder])

    assert results(summary) == ["delivered"]
    assert crash.left.listing() == {}  # not sent a second time
    assert crash.left.uploads == {part_of(zip_name()): 1}


def test_kill_between_two_files_asks_the_server_about_the_last_renamed_one_only(world: World) -> None:
    world.rules(**FILES)
    folder = world.record()
    expected = world.expected(folder)
    first, second, third = list(expected)[:3]
    crash = Crash(world)
    world.server.at("put", part_of(third), crash)  # the two before it are renamed

    world.export([folder])
    # the first was journalled "published" with the second's "renaming", in one transaction
    assert crash.journal() == {first: "published", second: "renaming"}
    for path in (first, second):
        crash.left.delete(path)  # the DMS may take a renamed file at once

    summary = crash.resume([folder])

    assert results(summary) == ["delivered"]
    assert asked_about(crash.left, first) == {}  # published: the server is not even asked
    assert asked_about(crash.left, second) != {}  # "renaming": the server is asked whether it was renamed
    for path in (first, second):
        assert crash.left.uploads[part_of(path)] == 1 and crash.left.renames[path] == 1  # neither sent again
    assert crash.left.listing() == {p: data for p, data in expected.items() if p not in (first, second)}


def test_kill_before_the_delivery_is_committed_sends_nothing_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.rules(**FILES)
    folder = world.record()
    expected = world.expected(folder)
    crash = Crash(world)
    with open_ledger(world.ledger_path) as ledger:
        succeed = ledger.succeed

        def killed_before(*args: Any, **kwargs: Any) -> None:
            crash()  # every file renamed, the delivery not yet marked delivered
            succeed(*args, **kwargs)

        monkeypatch.setattr(ledger, "succeed", killed_before)
        with world.exporter(ledger) as exporter:
            exporter.export([folder])
    *published, last = expected  # the last (the done marker) is published by the delivery's commit
    assert crash.journal() == {**dict.fromkeys(published, "published"), last: "renaming"}
    assert crash.deliveries() == [("pending", 1, [None])]

    summary = crash.resume([folder])

    assert results(summary) == ["delivered"]
    assert crash.left.listing() == expected
    assert (crash.left.uploads, crash.left.renames) == once_each(expected)
    assert all(asked_about(crash.left, path) == {} for path in published)
    assert asked_about(crash.left, last) != {}  # asked whether it was renamed, not sent again
    assert crash.deliveries() == [("delivered", 2, ["interrupted", "delivered"])]


def test_renaming_with_an_incomplete_temporary_file_is_sent_again(world: World) -> None:
    folder = world.record(image_size=20_000)
    expected = world.expected(folder)
    crash = Crash(world)
    world.server.at("rename", "*", crash)

    world.export([folder])
    assert crash.journal() == {zip_name(): "renaming"}
    crash.left.write(part_of(zip_name()), expected[zip_name()][:1000])  # not the file that was journalled

    summary = crash.resume([folder])

    assert results(summary) == ["delivered"]
    assert crash.left.listing() == expected
    assert crash.left.uploads == {part_of(zip_name()): 2}


def test_non_atomic_kill_after_the_write_does_not_send_again(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.rules(upload={"atomic": False})
    folder = world.record()
    expected = world.expected(folder)
    crash = Crash(world)
    with open_ledger(world.ledger_path) as ledger:
        mark_files = ledger.mark_files

        def killed_after_renaming(delivery_id: int, states: dict[str, Any]) -> None:
            mark_files(delivery_id, states)
            if "renaming" in states.values():
                crash()  # written under its final name and journalled, not yet "published"

        monkeypatch.setattr(ledger, "mark_files", killed_after_renaming)
        with world.exporter(ledger) as exporter:
            exporter.export([folder])
    assert crash.journal() == {zip_name(): "renaming"}

    summary = crash.resume([folder])

    assert results(summary) == ["delivered"]
    assert crash.left.listing() == expected
    assert crash.left.uploads == {zip_name(): 1} and crash.left.renames == {}


def test_the_journal_is_one_transaction_a_file(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.rules(**FILES)
    folder = world.record()
    paths = list(world.expected(folder))  # the images, the metadata, the done marker, in upload order
    written: list[dict[str, str]] = []
    with open_ledger(world.ledger_path) as ledger:
        mark_files = ledger.mark_files

        def recorded(delivery_id: int, states: dict[str, Any]) -> None:
            written.append(dict(states))
            mark_files(delivery_id, states)

        monkeypatch.setattr(ledger, "mark_files", recorded)
        with world.exporter(ledger) as exporter:
            assert results(exporter.export([folder])) == ["delivered"]

    # each file's "renaming" carries the file before it, now "published"; the last is left to the commit
    assert written == [
        {paths[0]: "renaming"},
        *({before: "published", path: "renaming"} for before, path in itertools.pairwise(paths)),
    ]


# --- the crash journal within one run


def test_rename_without_reply_is_not_sent_again_by_the_retry(world: World) -> None:
    folder = world.record()
    expected = world.expected(folder)
    world.server.die_after_rename("*")

    summary = world.export([folder])

    assert [(o.result, o.attempts) for o in summary.outcomes] == [("delivered", 2)]
    assert world.server.listing() == expected
    assert (world.server.uploads, world.server.renames) == once_each(expected)


def test_rename_refused_for_now_is_finished_by_the_retry(world: World) -> None:
    folder = world.record()
    expected = world.expected(folder)
    world.server.refuse("rename", "*")

    summary = world.export([folder])

    assert [(o.result, o.attempts) for o in summary.outcomes] == [("delivered", 2)]
    assert world.server.listing() == expected
    assert (world.server.uploads, world.server.renames) == once_each(expected)


def test_rename_refused_for_good_leaves_no_journal_entry_and_the_retry_sends_it(world: World) -> None:
    folder = world.record()
    expected = world.expected(folder)
    world.server.refuse("rename", "*", permanent=True)

    summary = world.export([folder])

    [outcome] = summary.outcomes
    assert (outcome.result, outcome.attempts) == ("failed", 1)
    assert "refused to rename" in (outcome.error or "")
    assert world.server.listing() == {}  # the temporary file removed too
    assert world.journal() == {}  # the server said it did not rename: the journal must not say it may have

    world.requeue()  # `ftpexport retry`, once the server allows renames
    summary = world.export([folder])

    assert results(summary) == ["delivered"]
    assert world.server.listing() == expected
    assert world.server.uploads == {part_of(zip_name()): 2}


def test_a_cut_mid_transfer_never_shows_the_final_name(world: World) -> None:
    folder = world.record(image_size=20_000)
    expected = world.expected(folder)
    world.server.cut("put", "*", after=10_000)

    summary = world.export([folder], retries=0)

    assert [(o.result, o.attempts) for o in summary.outcomes] == [("failed", 1)]
    assert world.server.listing() == {part_of(zip_name()): expected[zip_name()][:10_000]}
    assert world.journal() == {}

    world.requeue()
    summary = world.export([folder], retries=0)

    assert results(summary) == ["delivered"]
    assert world.server.listing() == expected  # the retry overwrote the partial temporary file


def test_a_folder_the_dms_removed_between_two_records_is_made_again(world: World) -> None:
    with open_ledger(world.ledger_path) as ledger, world.exporter(ledger) as exporter:
        assert results(exporter.export([world.record(1)])) == ["delivered"]
        world.server.delete("dms")  # the DMS ingested the folder with the file
        assert results(exporter.export([world.record(2)])) == ["delivered"]

    assert list(world.server.listing()) == [zip_name(2)]
    assert world.server.connections == 1  # the same pooled connection, its folder cache forgotten


# --- preview


def test_preview_reads_a_zipped_record_with_its_crcs_and_builds_no_zip_for_one_destination(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As run does: the images' CRC-32 taken on the read that hashes them, so the zip of a record with
    one destination (atomic) is laid out, not written to a temporary folder and hashed again."""
    folder = world.record(1, image_size=5000)
    [(name, content)] = world.expected(folder).items()

    def no_zip_written(*args: object) -> None:
        raise AssertionError("preview wrote the zip")

    monkeypatch.setattr(package_module, "write_zip", no_zip_written)
    preview = preview_record(folder, load_rules(world.root / "rules"))

    assert preview["format"] == "zip"
    assert preview["files"] == [{"name": posixpath.basename(name), "bytes": len(content)}]
