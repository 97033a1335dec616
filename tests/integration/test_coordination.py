"""The coordination of hosts on a shared PostgreSQL ledger (ftpexport/ledger/coordination.py): claims
raced by threads and by hosts, connection slots under concurrency, lease expiry and takeover, the
shared breaker and its single probe, notifications sent once, fencing, the schema built by several
processes at once, a server restart, and the errors (and their secrecy) of a URL that cannot work.

Every "host" is a ``PostgresLedger`` of its own on the same database; a host "dies" by having its
lease run out (``expire``), as a ``kill -9`` leaves it, without waiting for the clock.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import postgres
import psycopg
import pytest
from polling import eventually

from ftpexport.errors import ClaimLostError, ConfigError, StateError
from ftpexport.ledger import Delivery, Ledger, open_ledger
from ftpexport.ledger.postgres import PostgresLedger
from ftpexport.ledger.postgres.schema import SCHEMA_VERSION

pytestmark = pytest.mark.integration

Hosts = Callable[..., PostgresLedger]


@pytest.fixture
def hosts(pg_url: str) -> Iterator[Hosts]:
    """``hosts(lease=20.0)``: a new registered host (a ledger of its own) on one database."""
    opened: list[PostgresLedger] = []

    def host(lease: float = 20.0, **options: Any) -> PostgresLedger:
        ledger = PostgresLedger(pg_url, lease, location=pg_url, **options)
        opened.append(ledger)
        ledger.coordination.register()
        return ledger

    yield host
    for ledger in opened:
        ledger.close()


def sql(url: str, statement: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def expire(ledger: PostgresLedger, url: str) -> None:
    """The host's lease runs out now (as when it was killed and its heartbeat stopped)."""
    sql(url, "UPDATE hosts SET lease_until = now() - interval '1 second' WHERE name = %s", ledger.coordination.name)


def deliver(ledger: Ledger, record_id: str = "veh-1", destination: str = "acme/dms") -> Delivery:
    return ledger.open_delivery(record_id=record_id, content_hash="h1", client_id=destination.split("/")[0],
                                destination=destination, record_path=f"/inbox/{record_id}")  # fmt: skip


@pytest.fixture
def hear(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[..., None]]:
    """``hear("ftpexport", ...)``: every record of these loggers, down to DEBUG, reaches ``caplog``
    (an earlier test's logging setup may have stopped them from propagating to the root logger)."""
    changed: list[tuple[logging.Logger, int]] = []

    def hear(*names: str) -> None:
        caplog.handler.setLevel(logging.DEBUG)
        for name in names:
            logger = logging.getLogger(name)
            changed.append((logger, logger.level))
            logger.setLevel(logging.DEBUG)
            logger.addHandler(caplog.handler)

    yield hear
    for logger, level in changed:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)


def race(workers: int, work: Callable[[], Any]) -> list[Any]:
    """``work()`` in ``workers`` threads released at once by a barrier; their results."""
    barrier = threading.Barrier(workers)

    def run() -> Any:
        barrier.wait()
        return work()

    with ThreadPoolExecutor(workers) as pool:
        return [future.result() for future in [pool.submit(run) for _ in range(workers)]]


# --- claims


def test_one_host_wins_a_delivery_raced_by_the_threads_of_three_hosts(hosts: Hosts) -> None:
    a, b, c = hosts(), hosts(), hosts()
    delivery = deliver(a)
    ledgers = [a, b, c] * 4
    turn = iter(range(len(ledgers)))
    lock = threading.Lock()

    def claim() -> tuple[str, bool, str | None]:
        with lock:
            ledger = ledgers[next(turn)]
        answer = ledger.coordination.claim(delivery.id, "acme/dms")
        return ledger.coordination.name, answer.ok, answer.holder

    results = race(len(ledgers), claim)

    winners = {name for name, ok, _ in results if ok}
    assert len(winners) == 1, results  # the winner's own threads renew its claim; nobody else gets it
    [winner] = winners
    assert all(holder == winner for _, ok, holder in results if not ok)
    assert [(row["delivery_id"], row["holder"]) for row in a.coordination.held()] == [(delivery.id, winner)]


def test_a_claim_is_refused_while_held_granted_to_its_holder_and_settled_once_done(hosts: Hosts) -> None:
    a, b = hosts(), hosts()
    delivery = deliver(a)

    assert a.coordination.claim(delivery.id, "acme/dms").ok
    refused = b.coordination.claim(delivery.id, "acme/dms")
    assert (refused.ok, refused.holder, refused.wait, refused.settled) == (False, a.coordination.name, 0.0, False)
    assert refused.reason == f"held by {a.coordination.name}"
    assert a.coordination.claim(delivery.id, "acme/dms").ok  # renewed

    a.succeed(delivery.id, a.start_attempt(delivery.id, "c1"), ["x.zip"], 1)

    assert a.coordination.held() == []  # succeed let go of the claim
    done = b.coordination.claim(delivery.id, "acme/dms")
    assert (done.ok, done.settled, done.reason) == (False, True, "delivered")
    assert b.coordination.claim(delivery.id + 999, "acme/dms").settled


def test_a_release_with_a_backoff_holds_the_delivery_back_from_every_host(hosts: Hosts, pg_url: str) -> None:
    a, b = hosts(), hosts()
    delivery = deliver(a)
    assert a.coordination.claim(delivery.id, "acme/dms").ok
    a.fail(delivery.id, a.start_attempt(delivery.id, "c1"), "421 busy", final=False)

    a.coordination.release(delivery.id, retry_in=60)

    refused = b.coordination.claim(delivery.id, "acme/dms")
    assert (refused.ok, refused.holder, refused.settled) == (False, None, False)
    assert 50 < refused.wait <= 60
    assert b.pending_record_paths() == []  # nobody takes it over before its backoff ends
    sql(pg_url, "UPDATE claims SET not_before = now() - interval '1 second'")  # the backoff is over
    assert b.pending_record_paths() == ["/inbox/veh-1"]
    assert b.coordination.claim(delivery.id, "acme/dms").ok


# --- lease expiry and takeover, fencing


def test_a_dead_hosts_delivery_is_taken_over_and_its_rename_fenced(hosts: Hosts, pg_url: str) -> None:
    a, b = hosts(), hosts()
    delivery, other = deliver(a), deliver(a, "veh-2")
    assert a.coordination.claim(delivery.id, "acme/dms").ok
    a.start_attempt(delivery.id, "c1")
    a.mark_files(delivery.id, {"out/V.zip": "renaming"})  # a live claim: the journal takes it
    assert b.pending_record_paths() == ["/inbox/veh-2"]  # held by a live lease: not for another host
    assert b.close_interrupted() == 0  # its attempt is running

    expire(a, pg_url)  # host a is killed

    assert [h["alive"] for h in b.coordination.hosts() if h["name"] == a.coordination.name] == [False]
    assert b.pending_record_paths() == ["/inbox/veh-1", "/inbox/veh-2"]
    assert b.close_interrupted() == 1
    assert [x["result"] for x in b.attempts(delivery.id)] == ["interrupted"]
    assert b.coordination.claim(delivery.id, "acme/dms").ok
    assert b.file_states(delivery.id) == {"out/V.zip": "renaming"}  # b resolves it from the server
    with pytest.raises(ClaimLostError) as lost:
        a.mark_files(delivery.id, {"out/V.json": "renaming"})  # a comes back: it must not rename
    assert f"delivery {delivery.id}: this host ({a.coordination.name}) no longer holds it" in str(lost.value)
    assert f"held by {b.coordination.name}" in str(lost.value)
    assert b.file_states(delivery.id) == {"out/V.zip": "renaming"}
    with pytest.raises(ClaimLostError):  # the file before, published, goes with the next renaming: neither is written
        a.mark_files(delivery.id, {"out/V.zip": "published", "out/V.json": "renaming"})
    assert b.file_states(delivery.id) == {"out/V.zip": "renaming"}
    b.mark_files(delivery.id, {"out/V.json": "renaming"})
    a.mark_files(other.id, {"out/W.zip": "renaming"})  # never claimed by any host: not fenced


def test_a_host_whose_claim_ran_out_may_not_rename_even_before_another_takes_it(hosts: Hosts, pg_url: str) -> None:
    a = hosts()
    delivery = deliver(a)
    assert a.coordination.claim(delivery.id, "acme/dms").ok
    a.fail(delivery.id, a.start_attempt(delivery.id, "c1"), "timed out", final=False)  # lets go of the claim

    with pytest.raises(ClaimLostError, match="its lease ran out"):
        a.mark_files(delivery.id, {"out/V.zip": "renaming"})

    assert a.coordination.claim(delivery.id, "acme/dms").ok
    expire(a, pg_url)
    with pytest.raises(ClaimLostError, match="its lease ran out"):
        a.mark_files(delivery.id, {"out/V.zip": "renaming"})
    assert a.file_states(delivery.id) == {}


def test_the_heartbeat_keeps_the_leases_and_leave_lets_go_of_everything(hosts: Hosts, pg_url: str) -> None:
    a, b = hosts(), hosts()
    delivery = deliver(a)
    assert a.coordination.claim(delivery.id, "acme/dms").ok
    assert a.coordination.take_slot("acme/dms", 1) == 0
    expire(a, pg_url)

    a.coordination.heartbeat()  # before anyone took them over, its leases live again

    assert not b.coordination.claim(delivery.id, "acme/dms").ok
    assert b.coordination.take_slot("acme/dms", 1) is None
    [row] = [h for h in b.coordination.hosts() if h["name"] == a.coordination.name]
    assert (row["alive"], row["deliveries"], row["connections"]) == (True, 1, 1)
    a.coordination.leave()
    assert [h["name"] for h in b.coordination.hosts()] == [b.coordination.name]
    assert b.coordination.claim(delivery.id, "acme/dms").ok
    assert b.coordination.take_slot("acme/dms", 1) == 0


def test_a_host_dead_for_an_hour_is_forgotten_at_the_next_heartbeat(hosts: Hosts, pg_url: str) -> None:
    a, b, c = hosts(), hosts(), hosts()
    expire(a, pg_url)
    sql(pg_url, "UPDATE hosts SET lease_until = now() - interval '61 minutes' WHERE name = %s", b.coordination.name)

    c.coordination.heartbeat()

    assert [(h["name"], h["alive"]) for h in c.coordination.hosts()] == [
        (c.coordination.name, True), (a.coordination.name, False)]  # fmt: skip


# --- connection slots


def test_the_slots_of_a_destination_are_never_more_than_its_limit_across_hosts(hosts: Hosts, pg_url: str) -> None:
    ledgers = [hosts() for _ in range(3)]
    turn = iter(ledgers * 4)
    lock = threading.Lock()

    def take() -> tuple[str, int | None]:
        with lock:
            ledger = next(turn)
        return ledger.coordination.name, ledger.coordination.take_slot("acme/dms", 3)

    taken = [(name, slot) for name, slot in race(12, take) if slot is not None]

    assert sorted(slot for _, slot in taken) == [0, 1, 2]
    holder = dict((slot, name) for name, slot in taken)
    ledgers[0].coordination.drop_slot("acme/dms", 1)  # not its slot unless it holds it
    assert ledgers[0].coordination.take_slot("acme/dms", 3) == (1 if holder[1] == ledgers[0].coordination.name
                                                                  else None)  # fmt: skip
    dead = next(ledger for ledger in ledgers if ledger.coordination.name == holder[2])
    expire(dead, pg_url)  # a dead host's connections are closed with it: its slot is free again
    other = next(ledger for ledger in ledgers if ledger is not dead)
    assert other.coordination.take_slot("acme/dms", 3) == min(s for s, name in holder.items() if name == holder[2])
    assert other.coordination.take_slot("other/dest", 1) == 0


# --- the breaker and its probe


def test_failures_seen_by_any_host_pause_the_destination_for_all_and_one_host_probes(
    hosts: Hosts, pg_url: str
) -> None:
    a, b = hosts(), hosts()
    first, second = deliver(a, "veh-1"), deliver(a, "veh-2")
    policy = {"threshold": 2, "pause": 30.0, "max_pause": 600.0, "long": False}

    assert a.coordination.destination_failed("acme/dms", "refused", **policy) == 0
    assert b.coordination.destination_failed("acme/dms", "refused again", **policy) == 30.0

    refused = a.coordination.claim(first.id, "acme/dms")
    assert (refused.ok, refused.reason, refused.settled) == (False, "destination paused", False)
    assert 25 < refused.wait <= 30
    [(seconds, error)] = a.coordination.paused().values()
    assert 25 < seconds <= 30 and error == "refused again"
    assert a.pending_record_paths() == []
    assert a.coordination.destination_failed("acme/dms", "late", **policy) > 25  # paused already: held, not doubled

    sql(pg_url, "UPDATE destinations SET paused_until = now() - interval '1 second'")  # the pause is over
    probe = b.coordination.claim(second.id, "acme/dms")
    assert (probe.ok, probe.probe) == (True, True)
    waiting = a.coordination.claim(first.id, "acme/dms")
    assert (waiting.ok, waiting.holder, waiting.wait) == (False, b.coordination.name, 1.0)
    assert b.coordination.destination_failed("acme/dms", "still refused", **policy) == 60.0  # a failed probe: doubled

    sql(pg_url, "UPDATE destinations SET paused_until = now() - interval '1 second'")
    assert a.coordination.claim(first.id, "acme/dms").probe
    a.coordination.destination_ok("acme/dms")
    assert a.coordination.paused() == {}
    assert (b.coordination.claim(second.id, "acme/dms").ok, b.coordination.claim(second.id, "acme/dms").probe) == (
        True, False)  # fmt: skip
    assert a.coordination.destination_failed("acme/dms", "login refused", **{**policy, "long": True}) == 600.0


# --- notifications


def test_each_due_notification_is_claimed_by_one_host(hosts: Hosts, pg_url: str) -> None:
    ledgers = [hosts() for _ in range(3)]
    ids = [
        ledgers[0].add_notification(webhook_id=f"w-{n}", delivery_id=None, client_id="acme", event="delivery.done",
                                    url="https://hooks.example/x", payload="{}", correlation_id=None)
        for n in range(30)
    ]  # fmt: skip
    turn = iter(ledgers * 3)
    lock = threading.Lock()

    def due() -> tuple[str, list[int]]:
        with lock:
            ledger = next(turn)
        return ledger.coordination.name, [row["id"] for row in ledger.due_notifications(limit=7)]

    batches = race(9, due)

    claimed = [n for _, batch in batches for n in batch]
    assert sorted(claimed) == ids  # every one, once
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert ledgers[0].due_notifications() == []  # nothing left: each is claimed until its attempt is recorded
    first = ledgers[0].coordination.name
    by_first = sorted(n for name, batch in batches if name == first for n in batch)
    mine = next(n for n in ids if n not in by_first)
    ledgers[1].notification_attempt(mine, ok=False, code=503, error="503", next_at="2000-01-01T00:00:00+00:00")
    assert [row["id"] for row in ledgers[2].due_notifications()] == [mine]  # let go: due again, for any host
    expire(ledgers[0], pg_url)
    assert [row["id"] for row in ledgers[2].due_notifications(limit=100)] == by_first  # a dead host's are taken over


# --- the schema, the database going away, the URL


def test_several_processes_starting_at_once_build_the_schema_once(pg_url: str) -> None:
    program = (
        "import sys\nfrom ftpexport.ledger import open_ledger\nsys.stdin.readline()\n"
        "with open_ledger(sys.argv[1]) as ledger:\n    print(ledger.deliveries())\n"
    )
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    children = [subprocess.Popen([sys.executable, "-c", program, pg_url], **pipes) for _ in range(6)]
    for child in children:  # every one imported ftpexport and waits: released together
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    outcomes = [child.communicate(timeout=60) for child in children]

    assert [(child.returncode, out, err) for child, (out, err) in zip(children, outcomes, strict=True)] == [
        (0, "[]\n", "")] * 6  # fmt: skip
    assert sql(pg_url, "SELECT version FROM ftpexport_schema") == [(SCHEMA_VERSION,)]


def test_a_database_newer_than_this_ftpexport_is_left_alone(pg_url: str) -> None:
    open_ledger(pg_url).close()
    sql(pg_url, "UPDATE ftpexport_schema SET version = %s", SCHEMA_VERSION + 1)

    with pytest.raises(ConfigError) as refused:
        open_ledger(pg_url)

    assert f"the ledger was written by a newer ftpexport (schema {SCHEMA_VERSION + 1})" in str(refused.value)
    assert refused.value.hint == "upgrade ftpexport on this host, or use another database"


def test_a_destination_learned_by_two_connections_at_once_is_saved_by_both(pg_url: str) -> None:
    # two connections to a new destination (max_connections 2, or two hosts) learn its server at once:
    # the other one has inserted the destination's row and not committed yet when this one saves
    saved: list[object] = []

    def save() -> None:
        try:
            saved.append(ledger.save_capabilities("acme/dms", {"rename": True}))
        except Exception as exc:  # reported by the assertion below
            saved.append(exc)

    with open_ledger(pg_url) as ledger, psycopg.connect(pg_url) as other:
        other.execute(
            "INSERT INTO server_capabilities VALUES (%s, %s, %s, %s)", ("acme/dms", '{"rename": false}', "t0", "t0")
        )
        thread = threading.Thread(target=save)
        thread.start()
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        eventually(lambda: sql(pg_url, waiting)[0][0] > 0, "the save to wait for the other connection's row")
        other.commit()
        thread.join()
        learned = ledger.capabilities()["acme/dms"]["capabilities"]

    assert saved == [True]  # not "duplicate key value violates unique constraint" (parked as an unexpected error)
    assert learned == {"rename": True}


def test_a_schema_1_database_gains_the_capabilities_and_the_transcripts(pg_url: str) -> None:
    with open_ledger(pg_url) as ledger:
        delivery = deliver(ledger)
    sql(pg_url, "DROP TABLE server_capabilities")
    sql(pg_url, "DROP TABLE transcripts")
    sql(pg_url, "UPDATE ftpexport_schema SET version = 1")

    with open_ledger(pg_url) as ledger:
        attempt = ledger.start_attempt(delivery.id, "c-1")
        ledger.save_transcript(attempt, delivery.id, "acme/dms", [{"send": "NOOP"}], ok=False, keep_ok=1)
        ledger.save_capabilities("acme/dms", {"rename": True})
        assert [t["attempt_id"] for t in ledger.transcripts("c-1")] == [attempt]
    assert sql(pg_url, "SELECT version FROM ftpexport_schema") == [(SCHEMA_VERSION,)] == [(2,)]


def test_a_server_restart_is_survived_over_fresh_connections(
    postgresql_session: postgres.PostgresServer, pg_url: str, caplog: pytest.LogCaptureFixture,
    hear: Callable[..., None],
) -> None:  # fmt: skip
    with open_ledger(pg_url) as ledger:
        delivery = deliver(ledger)
        postgresql_session.restart()  # every connection of the pool is cut

        attempt = ledger.start_attempt(delivery.id, "c1")

        postgresql_session.stop()
        hear("ftpexport.ledger.postgres.connection")
        with ThreadPoolExecutor(1) as pool:
            done = pool.submit(ledger.succeed, delivery.id, attempt, ["x.zip"], 1)  # while the database is away
            try:
                eventually(lambda: "ledger database unreachable" in caplog.text, "the ledger to wait for its database")
            finally:
                postgresql_session.start()
            done.result(timeout=60)
        assert ledger.get(delivery.id).status == "delivered"


def test_a_database_away_for_longer_than_the_retries_is_a_state_error(
    postgresql_session: postgres.PostgresServer, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = PostgresLedger(pg_url, 20.0, location=pg_url, retry_for=1.0)
    delivery = deliver(ledger)
    postgresql_session.stop()
    try:
        with pytest.raises(StateError) as away:
            ledger.get(delivery.id)
        with caplog.at_level(logging.DEBUG, logger="ftpexport.ledger"), pytest.raises(StateError) as at_start:
            PostgresLedger(pg_url, 20.0, location=pg_url, retry_for=1.0)
        tries = [r for r in caplog.records if r.name.startswith("ftpexport.ledger") and "trying again" in r.message]
    finally:
        postgresql_session.start()
        ledger.close()

    # one warning for the outage, its further tries at debug level
    assert [r.levelname for r in tries][:2] == ["WARNING", "DEBUG"]
    assert [r.levelname for r in tries].count("WARNING") == 1
    assert tries[0].message == "ledger database unreachable, trying again for up to 1 s"
    for error in (away.value, at_start.value):
        assert error.message.startswith(f"{pg_url}: cannot reach the ledger's database (tried for 1 s): ")
        assert "check that PostgreSQL is running and that this host can reach it" in str(error)
        assert error.exit_code == 1


@pytest.mark.parametrize(
    ("change", "what", "hint"),
    [
        ({"password": "wrong"}, "the database refused the user name or password", "PGPASSWORD, ~/.pgpass or the URL"),
        ({"user": "nobody"}, "the database refused the user name or password", "check the user in the URL"),
        ({"database": "no_such_ledger"}, "the database does not exist", "create it (createdb)"),
    ],
    ids=["bad password", "unknown user", "unknown database"],
)
def test_a_url_that_cannot_work_is_a_config_error_naming_it_without_its_password(
    postgresql_session: postgres.PostgresServer, pg_url: str, monkeypatch: pytest.MonkeyPatch,
    change: dict[str, str], what: str, hint: str,
) -> None:  # fmt: skip
    server = postgresql_session
    parts = {"user": server.user, "password": server.password, "database": pg_url.rsplit("/", 1)[1], **change}
    url = f"postgresql://{parts['user']}:{parts['password']}@{server.host}:{server.port}/{parts['database']}"
    monkeypatch.delenv("PGPASSWORD")

    with pytest.raises(ConfigError) as refused:
        open_ledger(url)

    shown = f"postgresql://{parts['user']}@{server.host}:{server.port}/{parts['database']}"
    assert str(refused.value).startswith(f"--state {shown}: cannot open the ledger: {what}")
    assert hint in str(refused.value)
    assert parts["password"] not in str(refused.value) and parts["password"] not in repr(refused.value)
    assert refused.value.exit_code == 2


def test_an_unknown_host_is_a_config_error() -> None:
    # libpq's words for a host name DNS does not know (the tests resolve no outside name)
    from ftpexport.ledger.postgres.connection import _config_error

    exc = psycopg.OperationalError('could not translate host name "db.example" to address: Name or service not known')
    error = _config_error(exc, "postgresql://u@db.example:5432/ledger")

    assert error is not None and error.hint == "correct the host in the URL"
    assert str(error).startswith("--state postgresql://u@db.example:5432/ledger: cannot open the ledger:"
                                 " the host name is unknown")  # fmt: skip


def test_the_password_is_never_in_a_message_a_repr_or_a_log(
    postgresql_session: postgres.PostgresServer, pg_url: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, hear: Callable[..., None],
) -> None:  # fmt: skip
    server = postgresql_session
    url = server.url(pg_url.rsplit("/", 1)[1], password=True)
    monkeypatch.delenv("PGPASSWORD")
    hear("ftpexport", "psycopg")
    shown: list[str] = []

    with open_ledger(url) as ledger:
        assert isinstance(ledger, PostgresLedger)
        ledger.coordination.register()
        delivery = deliver(ledger)
        assert ledger.coordination.claim(delivery.id, "acme/dms").ok
        ledger.fail(delivery.id, ledger.start_attempt(delivery.id, "c1"), "no", final=False)
        try:
            ledger.mark_files(delivery.id, {"x": "renaming"})
        except ClaimLostError as exc:
            shown.append(str(exc))
        server.restart()
        shown += [repr(ledger), repr(ledger.coordination), ledger.location, str(ledger.coordination.hosts())]
        quick = PostgresLedger(url, 20.0, location=ledger.location, retry_for=0.5)
        server.stop()
        try:
            with pytest.raises(StateError) as away:
                quick.get(delivery.id)
        finally:
            server.start()
            quick.close()
        shown.append(str(away.value))
        ledger.coordination.leave()
    with pytest.raises(ConfigError) as refused:
        open_ledger(url.replace(server.password, server.password + "x"))
    shown.append(str(refused.value))

    assert f"postgresql://{server.user}@{server.host}:{server.port}/" in ledger.location
    assert len(shown) == 7 and caplog.records
    for text in [*shown, caplog.text, *(str(record.__dict__) for record in caplog.records)]:
        assert server.password not in text
