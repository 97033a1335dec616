"""SFTP round trips (issue "performance"): which requests reach a real OpenSSH sshd per file and per
record, with the guarantees kept (temporary name, size verified, atomic rename).

The real paramiko ``SFTPClient`` of each connection is instrumented, not replaced: every request it
sends (``_async_request``, which ``_request`` goes through too) and every reply it reads
(``_read_packet``) is recorded in order. "Round trips" are the batches of requests sent before the
client waits for a reply, so each test states the protocol conversation, never a timing:

- an upload sends FSTAT and CLOSE right behind its writes and waits once; the size check uses the
  FSTAT size (no STAT), and still catches a file the server has short;
- a reused connection keeps its folder cache: a second record to the same folder sends no STAT or
  MKDIR for it, a new folder under a known one costs one MKDIR, and a connection released a moment
  ago is not asked whether it is alive (no REALPATH);
- a folder the server removed between two records is created again within the same attempt.
"""

from __future__ import annotations

import io
import random
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from faults import FaultProxy
from paramiko.sftp import CMD_CLOSE, CMD_EXTENDED, CMD_FSTAT, CMD_NAMES, CMD_WRITE
from records import make_record
from remote_files import expected_files, part_files
from rulefiles import rule_document, sftp_destination, write_rules
from servers import RunningServer

import ftpexport.transport.pool as pool_module
from ftpexport.errors import PermanentError, TransientError
from ftpexport.events import Summary
from ftpexport.ledger import Ledger, open_ledger
from ftpexport.pipeline import Exporter, Options
from ftpexport.rules import load_rules
from ftpexport.transport import Transport, Upload, open_transport, upload_file
from ftpexport.transport.pool import ConnectionPool
from ftpexport.transport.sftp import SFTPTransport
from ftpexport.transport.sftp_writes import MAX_REQUEST_SIZE

pytestmark = pytest.mark.integration

CLIENT = "acme"
#: requests that ask about or create a folder
FOLDER_REQUESTS = {"stat", "lstat", "mkdir"}


# --- recording the SFTP conversation


class Conversation:
    """The SFTP requests sent (by name) and the replies read, in order, over all connections."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[str, str]] = []  # ("send", name) or ("recv", "")

    def sent(self, t: int, args: tuple[Any, ...]) -> None:
        name = CMD_NAMES.get(t, str(t))
        if t == CMD_EXTENDED and args:
            name = str(args[0])  # "posix-rename@openssh.com"
        with self._lock:
            self._events.append(("send", name))

    def received(self) -> None:
        with self._lock:
            self._events.append(("recv", ""))

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def requests(self) -> list[str]:
        with self._lock:
            return [name for kind, name in self._events if kind == "send"]

    def round_trips(self) -> list[list[str]]:
        """The requests grouped by the waits between them: one list per round trip."""
        batches: list[list[str]] = []
        waited = True
        with self._lock:
            for kind, name in self._events:
                if kind == "recv":
                    waited = True
                    continue
                if waited:
                    batches.append([])
                    waited = False
                batches[-1].append(name)
        return batches


@pytest.fixture
def conversation(monkeypatch: pytest.MonkeyPatch) -> Conversation:
    """Record what every paramiko SFTPClient of this test sends and reads."""
    recorded = Conversation()
    real_request = paramiko.SFTPClient._async_request
    real_read = paramiko.SFTPClient._read_packet

    def _async_request(self: paramiko.SFTPClient, fileobj: Any, t: int, *args: Any) -> int:
        recorded.sent(t, args)
        return real_request(self, fileobj, t, *args)

    def _read_packet(self: paramiko.SFTPClient) -> tuple[int, bytes]:
        packet = real_read(self)
        recorded.received()
        return packet

    monkeypatch.setattr(paramiko.SFTPClient, "_async_request", _async_request)
    monkeypatch.setattr(paramiko.SFTPClient, "_read_packet", _read_packet)
    return recorded


def tamper_requests(monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    """Let ``change(t, args)`` rewrite the arguments of requests before paramiko sends them."""
    real_request = paramiko.SFTPClient._async_request

    def _async_request(self: paramiko.SFTPClient, fileobj: Any, t: int, *args: Any) -> int:
        return real_request(self, fileobj, t, *change(t, args))

    monkeypatch.setattr(paramiko.SFTPClient, "_async_request", _async_request)


def upload(transport: Transport, data: bytes, remote_dir: str, name: str) -> Upload:
    """``upload_file`` from bytes in memory: temporary name, size check, rename."""
    return upload_file(transport, lambda: io.BytesIO(data), len(data), remote_dir, name)


@pytest.fixture
def transport(sftp_server: RunningServer) -> Iterator[SFTPTransport]:
    with open_transport(sftp_server.endpoint()) as connected:
        assert isinstance(connected, SFTPTransport)
        yield connected


# --- one file: FSTAT and CLOSE behind the writes, no STAT for the size check


def test_an_upload_is_three_round_trips_and_sends_no_stat(
    sftp_server: RunningServer, transport: SFTPTransport, conversation: Conversation
) -> None:
    folder = sftp_server.remote_path("in")
    transport.makedirs(folder)
    conversation.clear()

    result = upload(transport, b"x" * 10_000, folder, "car.jpg")

    assert conversation.round_trips() == [
        ["open"],
        ["write", "fstat", "close"],  # pipelined: one wait for the write, the size and the close
        ["posix-rename@openssh.com"],
    ]
    assert (sftp_server.root / "in" / "car.jpg").read_bytes() == b"x" * 10_000
    assert result.size == 10_000
    assert part_files(sftp_server.root) == set()


def test_a_large_upload_sends_fstat_and_close_right_behind_its_last_write(
    sftp_server: RunningServer, transport: SFTPTransport, conversation: Conversation
) -> None:
    data = bytes(range(256)) * 20_000  # 5 MB: many windows of writes
    folder = sftp_server.remote_path()
    conversation.clear()

    upload(transport, data, folder, "big.bin")

    requests = conversation.requests()
    assert not FOLDER_REQUESTS & set(requests), requests  # the size check asked nothing
    last_batch = conversation.round_trips()[-2]
    assert last_batch[-3:] == ["write", "fstat", "close"], last_batch
    assert (sftp_server.root / "big.bin").read_bytes() == data


def test_a_file_the_server_has_short_is_still_refused(
    sftp_server: RunningServer, transport: SFTPTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"0123456789" * 10_000

    def drop_last_byte(t: int, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if t == CMD_WRITE:
            handle, offset, piece = args
            if offset + len(piece) == len(data):  # the last write reaches the server one byte short
                return handle, offset, piece[:-1]
        return args

    tamper_requests(monkeypatch, drop_last_byte)

    with pytest.raises(
        TransientError, match=f"the server has {len(data) - 1} bytes after upload, expected {len(data)}"
    ):
        upload(transport, data, sftp_server.remote_path(), "car.jpg")

    assert list(sftp_server.root.iterdir()) == []  # not published, and the partial file removed


def test_a_server_that_does_not_answer_fstat_gets_a_stat_instead(
    sftp_server: RunningServer, transport: SFTPTransport, monkeypatch: pytest.MonkeyPatch, conversation: Conversation
) -> None:
    def break_fstat(t: int, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (b"no such handle",) if t == CMD_FSTAT else args  # the server answers with an error status

    tamper_requests(monkeypatch, break_fstat)
    conversation.clear()

    upload(transport, b"photo", sftp_server.remote_path(), "car.jpg")

    assert conversation.round_trips()[-2:] == [["stat"], ["posix-rename@openssh.com"]]
    assert (sftp_server.root / "car.jpg").read_bytes() == b"photo"


def test_an_error_reply_to_the_pipelined_close_fails_the_upload(
    sftp_server: RunningServer, transport: SFTPTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    def break_close(t: int, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (b"no such handle",) if t == CMD_CLOSE else args

    tamper_requests(monkeypatch, break_close)

    # OpenSSH answers the CLOSE of an unknown handle with SSH_FX_NO_SUCH_FILE; a refused CLOSE
    # (a server that writes on close) is an upload error, raised by put, never a silent success.
    with pytest.raises(PermanentError, match="no such file") as caught:
        transport.put(io.BytesIO(b"photo"), sftp_server.remote_path(".car.jpg.part"))

    assert caught.value.path == sftp_server.remote_path(".car.jpg.part")
    assert not (sftp_server.root / "car.jpg").exists()


def test_the_fstat_size_is_handed_over_once_and_only_for_the_same_path(
    sftp_server: RunningServer, transport: SFTPTransport, conversation: Conversation
) -> None:
    a, b = sftp_server.remote_path("a.bin"), sftp_server.remote_path("b.bin")
    sftp_server.make_file("b.bin", b"bb")

    transport.put(io.BytesIO(b"aaa"), a)
    conversation.clear()
    assert transport.size(b) == 2  # another path: asked to the server
    assert transport.size(a) == 3  # asked too: the size from the put is gone after one question
    assert conversation.requests() == ["stat", "stat"]

    transport.put(io.BytesIO(b"aaa"), a)
    conversation.clear()
    assert transport.size(a) == 3
    assert conversation.requests() == []  # the FSTAT size, once
    assert transport.size(a) == 3
    assert conversation.requests() == ["stat"]

    transport.put(io.BytesIO(b"aaa"), a)
    transport.remove(a)
    assert transport.size(a) is None  # any operation in between drops it: never an old answer

    transport.put(io.BytesIO(b"aaa"), a)
    transport.rename(a, b)
    assert transport.size(a) is None
    assert transport.size(b) == 3


# --- the size of the write requests: as large as the server says it takes


class WriteSizes(list[int]):
    def __init__(self) -> None:
        super().__init__()
        self.whole: list[int] = []


#: a WRITE request's bytes besides its handle and data (length, type, id, handle length, offset, data length)
WRITE_HEADER = 25


@pytest.fixture
def write_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The data length of every WRITE request sent, in order; ``write_sizes.whole`` the whole requests'."""
    sizes = WriteSizes()
    real_request = paramiko.SFTPClient._async_request

    def _async_request(self: paramiko.SFTPClient, fileobj: Any, t: int, *args: Any) -> int:
        if t == CMD_WRITE:
            sizes.append(len(args[2]))
            sizes.whole.append(WRITE_HEADER + len(args[0]) + len(args[2]))
        return real_request(self, fileobj, t, *args)

    monkeypatch.setattr(paramiko.SFTPClient, "_async_request", _async_request)
    return sizes


def test_a_server_that_states_its_limits_gets_write_requests_as_large_as_it_takes(
    sftp_server: RunningServer, transport: SFTPTransport, write_sizes: list[int]
) -> None:
    learned = transport.learn()  # what run and watch do on a destination's first connection
    assert learned.limits is not None
    largest = min(learned.limits["max_write_length"], MAX_REQUEST_SIZE)
    data = random.Random(16).randbytes(5 * 1024 * 1024 + 3)  # not a multiple of the request size

    upload(transport, data, sftp_server.remote_path(), "big.bin")

    # every request full but the last: 21 of 255 KiB for 5 MiB, where 32 KiB requests were 161
    assert write_sizes[:-1] == [largest] * (len(write_sizes) - 1)
    assert len(write_sizes) == -(-len(data) // largest)
    assert (sftp_server.root / "big.bin").read_bytes() == data


def test_a_stream_with_short_reads_still_gets_full_write_requests(
    sftp_server: RunningServer, transport: SFTPTransport, write_sizes: list[int]
) -> None:
    transport.learn()
    data = random.Random(7).randbytes(1_000_000)

    class Trickle(io.RawIOBase):
        """At most 10,000 bytes per read, as a pipe or a slow source gives them."""

        def __init__(self) -> None:
            self.source = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            chunk = self.source.read(min(len(buffer), 10_000))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    remote = sftp_server.remote_path("trickle.bin")
    assert transport.put(Trickle(), remote) == len(data)

    assert len(write_sizes) == -(-len(data) // MAX_REQUEST_SIZE)
    assert (sftp_server.root / "trickle.bin").read_bytes() == data


def test_without_stated_limits_each_write_request_fits_one_ssh_packet(
    sftp_server: RunningServer, transport: SFTPTransport, write_sizes: WriteSizes
) -> None:
    # nothing learned of the server (a server without limits@openssh.com looks like this)
    assert transport.known.limits is None
    data = random.Random(3).randbytes(300_000)

    upload(transport, data, sftp_server.remote_path(), "small.bin")

    channel = transport.sftp.get_channel()
    assert channel is not None
    # 32 KiB at most, each whole request within what paramiko puts in one SSH packet
    assert max(write_sizes) <= 32768
    assert max(write_sizes.whole) <= channel.out_max_packet_size - 64
    assert len(write_sizes) == -(-len(data) // write_sizes[0])
    assert (sftp_server.root / "small.bin").read_bytes() == data


# --- folders: the cache, one MKDIR for a new folder, one STAT on a new connection


def test_folders_cost_one_request_each_when_their_parent_is_known(
    sftp_server: RunningServer, transport: SFTPTransport, conversation: Conversation
) -> None:
    sftp_server.make_dir("in/2026")
    conversation.clear()

    transport.makedirs(sftp_server.remote_path("in/2026"))
    assert conversation.requests() == ["stat"]  # an existing folder: its parents exist too

    conversation.clear()
    transport.makedirs(sftp_server.remote_path("in/2026/veh-1"))
    assert conversation.requests() == ["mkdir"]  # a new folder under a known one

    conversation.clear()
    transport.makedirs(sftp_server.remote_path("in/2026/veh-1/a/b"))
    assert conversation.requests() == ["mkdir", "mkdir"]

    conversation.clear()
    transport.makedirs(sftp_server.remote_path("in/2026/veh-1/a/b"))
    assert conversation.requests() == []

    sftp_server.make_dir("in/2026/by-another-connection")
    conversation.clear()
    transport.makedirs(sftp_server.remote_path("in/2026/by-another-connection"))
    assert conversation.requests() == ["mkdir", "stat"]  # MKDIR refused: STAT shows it is a folder
    assert (sftp_server.root / "in/2026/veh-1/a/b").is_dir()


# --- through the export pipeline: a reused connection between records


def export(exporter: Exporter, folder: Path) -> Summary:
    summary = exporter.export([folder])
    assert [(o.result, o.attempts) for o in summary.outcomes] == [("delivered", 1)], summary.outcomes
    return summary


@pytest.fixture
def exporter_for(tmp_path: Path, sftp_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``exporter_for(**destination)``: an Exporter with one SFTP destination ``photos``, one connection."""
    # The second record must meet a connection released "a moment ago" also on a slow machine.
    monkeypatch.setattr(pool_module, "RECENT_SECONDS", 60.0)
    state = tmp_path / "state" / "ledger.sqlite3"
    with open_ledger(state) as ledger, _Exporters(tmp_path, sftp_server, ledger) as make:
        yield make


class _Exporters:
    def __init__(self, tmp_path: Path, server: RunningServer, ledger: Ledger) -> None:
        self.tmp_path, self.server, self.ledger = tmp_path, server, ledger
        self.exporter: Exporter | None = None

    def __call__(self, **destination: Any) -> Exporter:
        rules_dir = self.tmp_path / "rules"
        write_rules(
            rules_dir,
            rule_document(CLIENT, [sftp_destination("dms", self.server, "photos", max_connections=1, **destination)]),
        )
        ruleset = load_rules(rules_dir)
        assert not ruleset.errors, ruleset.errors
        options = Options(jobs=1, retries=3, backoff=0.01, pause=30.0, spool_dir=self.tmp_path / "spool")
        self.exporter = Exporter(ruleset, self.ledger, options)
        return self.exporter

    def __enter__(self) -> _Exporters:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.exporter is not None:
            self.exporter.close()


def test_a_second_record_to_the_same_folder_sends_no_folder_or_liveness_request(
    tmp_path: Path, exporter_for: Any, conversation: Conversation
) -> None:
    exporter = exporter_for()
    inbox = tmp_path / "inbox"
    export(exporter, make_record(inbox, 1, CLIENT))
    conversation.clear()

    export(exporter, make_record(inbox, 2, CLIENT))

    requests = conversation.requests()
    assert "realpath" not in requests, requests  # released a moment ago: not asked whether it is alive
    assert not FOLDER_REQUESTS & set(requests), requests  # the folder is known on this connection
    assert "init" not in requests  # the same connection
    assert set(requests) == {"open", "write", "fstat", "close", "posix-rename@openssh.com"}


def test_a_new_folder_per_record_costs_one_mkdir_on_a_reused_connection(
    tmp_path: Path, sftp_server: RunningServer, exporter_for: Any, conversation: Conversation
) -> None:
    exporter = exporter_for(remote_dir="{{ id }}")
    inbox = tmp_path / "inbox"
    export(exporter, make_record(inbox, 1, CLIENT))
    conversation.clear()

    export(exporter, make_record(inbox, 2, CLIENT))

    requests = conversation.requests()
    assert [r for r in requests if r in FOLDER_REQUESTS | {"realpath"}] == ["mkdir"], requests
    assert (sftp_server.root / "photos" / "veh-000002").is_dir()


@pytest.mark.parametrize(
    ("remote_dir", "removed"),
    [
        (None, "photos"),  # the record's folder itself: the open for writing fails
        ("{{ id }}", "photos"),  # the parent of a new record folder: its MKDIR fails
        ("incoming", "photos/incoming"),
    ],
    ids=["same-folder", "parent-of-new-folder", "subfolder"],
)
def test_a_folder_removed_between_two_records_is_created_again_in_the_same_attempt(
    tmp_path: Path, sftp_server: RunningServer, exporter_for: Any, remote_dir: str | None, removed: str
) -> None:
    exporter = exporter_for(**({"remote_dir": remote_dir} if remote_dir else {}))
    inbox = tmp_path / "inbox"
    first, second = make_record(inbox, 1, CLIENT), make_record(inbox, 2, CLIENT)
    export(exporter, first)
    shutil.rmtree(sftp_server.root / removed)  # the DMS ingested the record and removed the folder

    export(exporter, second)  # delivered in ONE attempt: no failed attempt, no retry

    [(name, data)] = expected_files(second, load_rules(tmp_path / "rules")).items()
    landed = [p for p in (sftp_server.root / "photos").rglob(name)]
    assert [p.read_bytes() for p in landed] == [data]
    assert part_files(sftp_server.root) == set()
    ledger = exporter_for.ledger
    rows = {d.record_id: ledger.attempts(d.id) for d in ledger.deliveries()}
    assert [a["result"] for a in rows["veh-000002"]] == ["delivered"]


# --- the pool: no liveness round trip for a connection released a moment ago


def test_a_connection_released_a_moment_ago_is_reused_without_asking_the_server(
    sftp_server: RunningServer, conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_module, "RECENT_SECONDS", 60.0)
    pool = ConnectionPool(sftp_server.endpoint(), size=1)
    transport = pool.acquire()
    try:
        transport.makedirs(sftp_server.remote_path("in"))
        pool.release(transport, reuse=True)
        conversation.clear()

        assert pool.acquire() is transport
        assert conversation.requests() == []  # no REALPATH
        transport.makedirs(sftp_server.remote_path("in"))
        assert conversation.requests() == []  # and the folder cache kept
        pool.release(transport, reuse=True)

        monkeypatch.setattr(pool_module, "RECENT_SECONDS", 0.0)  # an older idle connection: asked
        assert pool.acquire() is transport
        assert conversation.requests() == ["realpath"]
        pool.release(transport, reuse=True)
        assert (pool.opened, pool.reused) == (1, 2)
    finally:
        pool.close()
        transport.close()  # also when a check failed while it was handed out


def test_a_connection_dropped_right_after_its_release_is_replaced_without_a_failed_attempt(
    sftp_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_module, "RECENT_SECONDS", 60.0)
    with FaultProxy(sftp_server.host, sftp_server.port) as proxy:
        pool = ConnectionPool(sftp_server.endpoint(port=proxy.port), size=1)
        try:
            dropped = pool.acquire()
            assert isinstance(dropped, SFTPTransport)
            pool.release(dropped, reuse=True)

            proxy.cut_all()
            # paramiko's reader thread notices the closed connection by itself, without a request
            assert proxy.wait_until(lambda: not dropped.seems_alive(), timeout=10)
            # had it been handed out, its failure would be transient (retried), not a refusal
            with pytest.raises(TransientError, match="closed the connection"):
                dropped.size(sftp_server.remote_path("x"))

            replacement = pool.acquire()
            assert replacement is not dropped and replacement.size(sftp_server.remote_path("x")) is None
            pool.release(replacement, reuse=True)
            assert (pool.opened, proxy.connections) == (2, 2)
        finally:
            pool.close()
