"""FTP/FTPS round trips (issue "performance"): which commands reach a real pyftpdlib server per file
and per record, with the guarantees kept (temporary name, size verified, atomic rename).

The server records every command it receives (its ``pre_process_command`` hook), so each test
states the protocol conversation, not a timing: TYPE once per connection, no MKD/CWD/PWD for a
folder known on the connection, one MKD for a new folder under a known one, no NOOP for a
connection that answered a moment ago, TCP_NODELAY on the data socket, ``sendfile`` for real
files, and a folder deleted on the server between two records made again within the same attempt.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from records import make_record
from remote_files import expected_files, part_files
from rulefiles import ftp_destination, rule_document, write_rules
from servers import RunningServer, pyftpdlib_server

import ftpexport.transport.ftp as ftp_module
from ftpexport.errors import PermanentError, RecordChangedError, TransientError
from ftpexport.ledger import open_ledger
from ftpexport.package import PackageNames, build_package, write_zip
from ftpexport.pipeline import Exporter, Options
from ftpexport.record import load_record, open_image
from ftpexport.rules import load_rules
from ftpexport.transport import Transport, Upload, open_transport, upload_file
from ftpexport.zipstream import ZipStream

pytestmark = pytest.mark.integration

SCHEMES = ["ftp", "ftps", "ftps+implicit"]
PASSWORD_ENV = "ROUNDTRIPS_FTP_PASSWORD"
CLIENT = "acme"


class Commands:
    """The commands (verbs, upper case) a server received, over all its connections, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verbs: list[str] = []

    def add(self, verb: str) -> None:
        with self._lock:
            self._verbs.append(verb)

    def __call__(self) -> list[str]:
        with self._lock:
            return list(self._verbs)

    def clear(self) -> None:
        with self._lock:
            self._verbs.clear()

    def count(self, verb: str) -> int:
        return self().count(verb)


@contextlib.contextmanager
def recording_server(scheme: str, commands: Commands, **attributes: Any) -> Iterator[RunningServer]:
    """A pyftpdlib server for ``scheme`` that records every command it receives into ``commands``."""

    def pre_process_command(self: Any, line: str, cmd: str, arg: str) -> Any:
        commands.add(cmd.upper())
        return super(type(self), self).pre_process_command(line, cmd, arg)

    with pyftpdlib_server(scheme, pre_process_command=pre_process_command, **attributes) as server:
        yield server


@pytest.fixture(params=SCHEMES, ids=["ftp", "ftps", "ftps-implicit"])
def scheme(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def commands() -> Commands:
    return Commands()


@pytest.fixture
def server(scheme: str, commands: Commands) -> Iterator[RunningServer]:
    with recording_server(scheme, commands) as running:
        yield running


def upload(transport: Transport, data: bytes, remote_dir: str, name: str, **options: Any) -> Upload:
    return upload_file(transport, lambda: io.BytesIO(data), len(data), remote_dir, name, **options)


def transfer_verbs(verbs: list[str]) -> list[str]:
    """PASV and EPSV both open a passive data connection: one name for both."""
    return ["PASV" if v in ("PASV", "EPSV") else v for v in verbs]


def test_type_is_sent_once_per_connection_however_many_files(server: RunningServer, commands: Commands) -> None:
    with open_transport(server.endpoint()) as transport:
        for n in range(12):
            upload(transport, f"photo {n}\n".encode(), "", f"{n:02}.jpg")

    assert commands.count("TYPE") == 1  # at connect, not before every STOR (ftplib's storbinary)
    assert commands.count("STOR") == 12
    assert commands.count("SIZE") == 12  # the size check before each rename stays
    assert commands.count("RNFR") == commands.count("RNTO") == 12
    assert sorted(p.name for p in server.root.iterdir()) == [f"{n:02}.jpg" for n in range(12)]


def test_one_file_into_a_known_folder_costs_pasv_stor_size_rnfr_rnto(server: RunningServer, commands: Commands) -> None:
    with open_transport(server.endpoint()) as transport:
        transport.makedirs("photos")
        upload(transport, b"first", "photos", "a.jpg")
        commands.clear()

        upload(transport, b"second", "photos", "b.jpg")

        assert transfer_verbs(commands()) == ["PASV", "STOR", "SIZE", "RNFR", "RNTO"]
    assert (server.root / "photos" / "b.jpg").read_bytes() == b"second"


def test_rnfr_and_rnto_reach_the_server_in_one_write(scheme: str, commands: Commands) -> None:
    """The RNTO is sent with the RNFR, not after its 350: one round trip less a file."""
    unread_at_rnfr: list[bytes] = []

    def ftp_RNFR(self: Any, path: str) -> Any:
        unread_at_rnfr.append(bytes(self.ac_in_buffer))  # what the server received and has not handled yet
        return super(type(self), self).ftp_RNFR(path)

    with recording_server(scheme, commands, ftp_RNFR=ftp_RNFR) as server:
        with open_transport(server.endpoint()) as transport:
            upload(transport, b"one", "", "a.jpg")
            upload(transport, b"two", "", "b.jpg")  # the replies were read in step: the next file goes as well
        assert (server.root / "a.jpg").read_bytes() == b"one" and (server.root / "b.jpg").read_bytes() == b"two"
        assert part_files(server.root) == set()

    assert [b"RNTO" in unread for unread in unread_at_rnfr] == [True, True]


def test_a_refused_rnfr_is_the_error_and_the_connection_stays_in_step(scheme: str, commands: Commands) -> None:
    """The server refuses the RNTO sent with a refused RNFR (503); that reply is read, the RNFR's
    refusal is the error, the temporary file is deleted, and the connection answers the next command."""

    def refuse(self: Any, path: str) -> None:
        self.respond("550 Renames are not allowed here.")

    with recording_server(scheme, commands, ftp_RNFR=refuse) as server, open_transport(server.endpoint()) as t:
        with pytest.raises(PermanentError, match="550 Renames are not allowed here") as caught:
            upload(t, b"x", "", "a.jpg")

        assert "the server refused to rename .a.jpg.part to a.jpg" in str(caught.value)
        assert t.usable_after_error()
        assert t.size(".a.jpg.part") is None  # the reply to this SIZE, not a late one: the file was deleted
        upload(t, b"y", "", "b.jpg", atomic=False)
        assert [p.name for p in server.root.iterdir()] == ["b.jpg"]
    verbs = transfer_verbs(commands())
    assert verbs[verbs.index("RNFR") :][:4] == ["RNFR", "RNTO", "DELE", "SIZE"]


class Pipelined:
    """Server hooks that tell whether the RNTO came with its RNFR (in the same read, before the
    RNFR was answered), and act as a server or firewall that does not take that."""

    def __init__(self, *, on_early_rnto: str) -> None:
        self.on_early_rnto = on_early_rnto  # "refuse": 503 to that RNTO; "cut": close the connection
        self.early: list[bool] = []  # per RNFR received

    def attributes(self) -> dict[str, Any]:
        hooks = self

        def ftp_RNFR(handler: Any, path: str) -> Any:
            early = b"RNTO" in bytes(handler.ac_in_buffer)
            hooks.early.append(early)
            if early and hooks.on_early_rnto == "cut":
                handler.close()
                return None
            handler.early_rnto = early
            return super(type(handler), handler).ftp_RNFR(path)

        def ftp_RNTO(handler: Any, path: str) -> Any:
            if getattr(handler, "early_rnto", False):
                handler.early_rnto = False
                handler.respond("503 Bad sequence of commands.")
                return None
            return super(type(handler), handler).ftp_RNTO(path)

        return {"ftp_RNFR": ftp_RNFR, "ftp_RNTO": ftp_RNTO}


def test_a_server_that_refuses_an_rnto_sent_with_its_rnfr_is_then_asked_one_command_at_a_time(
    scheme: str, commands: Commands
) -> None:
    hooks = Pipelined(on_early_rnto="refuse")
    with recording_server(scheme, commands, **hooks.attributes()) as server:
        with open_transport(server.endpoint()) as transport:
            upload(transport, b"one", "", "a.jpg")  # renamed again at once, one command at a time
            upload(transport, b"two", "", "b.jpg")
            known = transport.known
        assert (server.root / "a.jpg").read_bytes() == b"one" and (server.root / "b.jpg").read_bytes() == b"two"
        assert part_files(server.root) == set()

    assert hooks.early == [True, False, False]
    assert known.pipelining is False  # kept in the ledger by the caller (capabilities.CapabilityBook)
    assert known.rename is not False  # the server renames: not mistaken for one that refuses renames


def test_a_connection_cut_after_rnfr_and_rnto_sent_together_makes_the_next_connection_wait(
    scheme: str, commands: Commands
) -> None:
    """A firewall that cuts the connection (Cisco's strict FTP inspection): the attempt fails as a
    transient error, and what was learned makes the next connection ask one command at a time."""
    hooks = Pipelined(on_early_rnto="cut")
    with recording_server(scheme, commands, **hooks.attributes()) as server:
        with open_transport(server.endpoint()) as transport, pytest.raises(TransientError) as caught:
            upload(transport, b"one", "", "a.jpg")
        known = transport.known
        assert known.pipelining is False
        assert "rename" in str(caught.value) and server.endpoint().display in str(caught.value)

        with open_transport(server.endpoint()) as again:
            again.adopt(known)
            upload(again, b"one", "", "a.jpg")
        assert (server.root / "a.jpg").read_bytes() == b"one"

    assert hooks.early == [True, False]


def test_a_known_folder_is_not_checked_again_for_the_next_record(server: RunningServer, commands: Commands) -> None:
    """A record is makedirs(remote_dir) then its files (pipeline._send); the second one on the
    same connection sends no MKD, CWD nor PWD."""
    server.make_dir("photos")  # the DMS's incoming folder exists
    with open_transport(server.endpoint()) as transport:
        transport.makedirs("photos")
        upload(transport, b"one", "photos", "1.zip")
        first = commands()
        commands.clear()

        transport.makedirs("photos")
        upload(transport, b"two", "photos", "2.zip")

        second = commands()
    # an existing folder is checked once per connection: MKD refused, then PWD, CWD into it, CWD back
    assert [v for v in first if v in ("MKD", "PWD", "CWD")] == ["MKD", "PWD", "CWD", "CWD"]
    assert not {"MKD", "CWD", "PWD", "TYPE", "NOOP"} & set(second), second
    assert sorted(p.name for p in (server.root / "photos").iterdir()) == ["1.zip", "2.zip"]


def test_a_new_folder_under_an_existing_one_is_one_mkd(server: RunningServer, commands: Commands) -> None:
    server.make_dir("incoming")
    with open_transport(server.endpoint()) as transport:
        commands.clear()
        transport.makedirs("incoming/veh-000001")
        made_first = commands()
        commands.clear()
        transport.makedirs("incoming/veh-000002")  # "incoming" is known now
        made_second = commands()

    assert made_first == ["MKD"]  # the deepest first: its parent exists, so no check of "incoming"
    assert made_second == ["MKD"]
    assert (server.root / "incoming/veh-000001").is_dir() and (server.root / "incoming/veh-000002").is_dir()


def test_a_deep_missing_path_is_made_top_down(server: RunningServer, commands: Commands) -> None:
    with open_transport(server.endpoint()) as transport:
        commands.clear()
        transport.makedirs("2026/11/20/acme")
        upload(transport, b"x", "2026/11/20/acme", "a.zip")

    assert (server.root / "2026/11/20/acme/a.zip").read_bytes() == b"x"
    assert commands.count("MKD") <= 1 + 4  # at most: the deepest tried first, then each component


def test_the_data_socket_has_tcp_nodelay(server: RunningServer, tmp_path: Path) -> None:
    """Nagle holds back the last small block and the TLS close_notify of every file: it is off."""
    source = tmp_path / "photo.jpg"
    source.write_bytes(os.urandom(600_000))
    seen: list[int] = []
    with open_transport(server.endpoint()) as transport:
        ftp = transport.ftp  # type: ignore[attr-defined]

        def on_block(n: int) -> None:
            # called while the data connection is open
            seen.append(ftp.data_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        for name, opener in (
            ("mem.jpg", lambda: io.BytesIO(source.read_bytes())),
            ("file.jpg", lambda: source.open("rb")),
        ):
            upload_file(transport, opener, 600_000, "", name, callback=on_block)  # type: ignore[arg-type]

    assert len(seen) >= 4 and all(seen), seen
    assert (server.root / "file.jpg").read_bytes() == source.read_bytes()
    assert (server.root / "mem.jpg").read_bytes() == source.read_bytes()


def test_a_real_file_goes_out_with_sendfile_on_plain_ftp(
    commands: Commands, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 123)
    source.write_bytes(data)
    calls: list[int] = []
    real_sendfile = os.sendfile

    def counting_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        sent = real_sendfile(out_fd, in_fd, offset, count)
        calls.append(sent)
        return sent

    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    blocks: list[int] = []
    with recording_server("ftp", commands) as server, open_transport(server.endpoint()) as transport:
        result = upload_file(transport, lambda: source.open("rb"), len(data), "", "big.bin", callback=blocks.append)  # type: ignore[arg-type]

        assert (server.root / "big.bin").read_bytes() == data
    assert result.size == len(data) == sum(blocks) == sum(calls)
    assert len(blocks) > 1  # progress is still reported block by block



@pytest.mark.parametrize("tls", [False, True], ids=["ftp", "ftps"])
def test_a_zip_streamed_from_the_images_sends_them_with_sendfile_on_plain_ftp_only(
    commands: Commands, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: bool
) -> None:
    folder = make_record(tmp_path / "inbox", 1, image_sizes={"99.jpg": 600_000})
    record = load_record(folder, crc=lambda data: True)
    images = tuple(f"{n:02d}.jpg" for n in range(1, len(record.images) + 1))
    names = PackageNames(images=images, archive="r.zip", metadata=None, done_marker=None)
    (artifact,) = build_package(record, names, None, tmp_path / "work", stream=True).files
    write_zip(record, names, None, tmp_path / "expected.zip")
    through_python: list[int] = []
    readinto = ZipStream.readinto

    def counting_readinto(self: ZipStream, buffer: Any) -> int:
        n = readinto(self, buffer)
        through_python.append(n)
        return n

    monkeypatch.setattr(ZipStream, "readinto", counting_readinto)
    with recording_server("ftps" if tls else "ftp", commands) as server, open_transport(server.endpoint()) as transport:
        result = upload_file(transport, artifact.open, artifact.size, "", "r.zip")  # type: ignore[arg-type]

        assert (server.root / "r.zip").read_bytes() == (tmp_path / "expected.zip").read_bytes()
    assert result.size == artifact.size
    # plain FTP: every byte by send_to (the images with sendfile); over TLS every byte is read, CRC-checked
    assert sum(through_python) == (artifact.size if tls else 0)


@pytest.mark.parametrize("what", ["a real file", "a streamed zip"])
def test_a_data_connection_the_server_stops_reading_times_out_as_transient(
    commands: Commands, tmp_path: Path, what: str
) -> None:
    """sendfile on a socket with a timeout: when the server stops reading, the wait for room to send
    ends at the destination's timeout, as a transient error naming the server (not a hang)."""
    from pyftpdlib.handlers import DTPHandler

    class StalledDTP(DTPHandler):  # type: ignore[misc]
        def readable(self) -> bool:
            return False  # the server never reads the data connection: its buffers fill up

    if what == "a real file":
        source = tmp_path / "big.bin"
        source.write_bytes(os.urandom(32 * 1024 * 1024))
        opener, size = (lambda: source.open("rb")), source.stat().st_size
    else:
        folder = make_record(tmp_path / "inbox", 1, image_sizes={"99.jpg": 32 * 1024 * 1024})
        record = load_record(folder, crc=lambda data: True)
        images = tuple(f"{n:02d}.jpg" for n in range(1, len(record.images) + 1))
        names = PackageNames(images=images, archive="r.zip", metadata=None, done_marker=None)
        (artifact,) = build_package(record, names, None, tmp_path / "work", stream=True).files
        opener, size = artifact.open, artifact.size
    with recording_server("ftp", commands, dtp_handler=StalledDTP) as server:
        endpoint = server.endpoint(timeout=1.0)
        with open_transport(endpoint) as transport, pytest.raises(TransientError) as caught:
            upload_file(transport, opener, size, "", "big.bin")  # type: ignore[arg-type]

    assert "timed out" in str(caught.value)
    assert f"{endpoint.host}:{endpoint.port}" in str(caught.value)
    assert caught.value.retriable


def test_an_image_written_while_sendfile_sends_it_is_not_renamed_into_place(
    commands: Commands, tmp_path: Path
) -> None:
    # several sendfile blocks: the write lands in the middle
    record = load_record(make_record(tmp_path / "inbox", 1, image_sizes={"99.jpg": 3 * 1024 * 1024}))
    image = next(image for image in record.images if image.path.name == "99.jpg")

    def write_in_place(n: int) -> None:
        with image.path.open("r+b") as file:  # the same file and size, as a platform rewriting it would
            file.write(b"rewritten")

    with recording_server("ftp", commands) as server, open_transport(server.endpoint()) as transport:
        with pytest.raises(RecordChangedError, match="it was written while it was sent"):
            upload_file(transport, lambda: open_image(record, image), image.size, "", "99.jpg",  # type: ignore[arg-type]
                        callback=write_in_place)  # fmt: skip

        assert sorted(path.name for path in server.root.iterdir()) == []  # neither 99.jpg nor its .part

def test_a_pooled_connection_that_just_answered_is_reused_without_noop(
    server: RunningServer, commands: Commands, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_transport(server.endpoint()) as transport:
        upload(transport, b"x", "", "a.jpg")
        commands.clear()

        assert transport.alive()
        assert commands() == []  # it answered a moment ago and the server sent nothing since

        monkeypatch.setattr(ftp_module, "ALIVE_WITHOUT_NOOP", 0.0)  # an older idle connection
        assert transport.alive()
        assert commands() == ["NOOP"]


def test_a_connection_the_server_closed_a_moment_ago_is_not_alive(scheme: str, commands: Commands) -> None:
    # pyftpdlib's idle timeout: it sends "421 Control connection timed out." and closes
    with recording_server(scheme, commands, timeout=0.3) as server, open_transport(server.endpoint()) as transport:
        upload(transport, b"x", "", "a.jpg")
        sock = transport.ftp.sock  # type: ignore[attr-defined]
        assert select.select([sock], [], [], 5.0)[0], "the server did not close the idle connection"

        assert not transport.alive()


def test_a_folder_deleted_on_the_server_is_made_again_within_the_same_put(
    server: RunningServer, commands: Commands
) -> None:
    with open_transport(server.endpoint()) as transport:
        transport.makedirs("photos/incoming")
        upload(transport, b"one", "photos/incoming", "1.zip")
        shutil.rmtree(server.root / "photos")  # the DMS took the folder away between two records
        commands.clear()

        transport.makedirs("photos/incoming")  # known on this connection: nothing sent
        result = upload(transport, b"two", "photos/incoming", "2.zip")

        verbs = transfer_verbs(commands())
    assert result.size == 3
    assert (server.root / "photos/incoming/2.zip").read_bytes() == b"two"
    assert part_files(server.root) == set()
    assert verbs[:2] == ["PASV", "STOR"]  # refused: 550, no such folder
    assert verbs.count("MKD") >= 2 and verbs.count("STOR") == 2
    assert verbs[-5:] == ["PASV", "STOR", "SIZE", "RNFR", "RNTO"]


def test_a_refused_stor_into_an_existing_folder_is_tried_once_more_then_permanent(
    scheme: str, commands: Commands
) -> None:
    def refuse(self: Any, file: str, mode: str = "w") -> None:
        self.respond("550 Permission denied.")

    with recording_server(scheme, commands, ftp_STOR=refuse) as server, open_transport(server.endpoint()) as t:
        t.makedirs("photos")
        with pytest.raises(PermanentError, match="550 Permission denied") as caught:
            upload(t, b"x", "photos", "a.jpg")

    assert caught.value.path == "photos/.a.jpg.part"
    assert commands.count("STOR") == 2  # once more after checking the folder, not in a loop


def test_a_stor_refused_outside_a_known_folder_is_not_retried(server: RunningServer, commands: Commands) -> None:
    with open_transport(server.endpoint()) as transport, pytest.raises(PermanentError):
        upload(transport, b"x", "no/such/dir", "a.jpg")

    assert commands.count("STOR") == 1
    assert commands.count("MKD") == 0  # put never makes folders it was not told about


def test_a_wrong_size_on_the_server_is_still_detected(scheme: str, commands: Commands) -> None:
    def size_one_short(self: Any, path: str) -> None:
        real = os.path.getsize(path)
        self.respond(f"213 {real - 1}")

    with (
        recording_server(scheme, commands, ftp_SIZE=size_one_short) as server,
        open_transport(server.endpoint()) as transport,
    ):
        with pytest.raises(TransientError, match="the server has 4 bytes after upload, expected 5"):
            upload(transport, b"12345", "", "car.jpg")

        assert commands.count("RNFR") == 0  # never published
        assert list(server.root.iterdir()) == []  # and the partial file removed


# --- through the export pipeline: the pool keeps a connection's folders across records


def test_export_a_folder_deleted_between_two_records_is_delivered_in_one_attempt(
    tmp_path: Path, commands: Commands, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, rules_dir, state = tmp_path / "inbox", tmp_path / "rules", tmp_path / "state" / "ledger.sqlite3"
    with recording_server("ftp", commands) as server:
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        write_rules(
            rules_dir,
            rule_document(
                CLIENT,
                [ftp_destination("dms", server, "photos", PASSWORD_ENV, remote_dir="incoming", max_connections=1)],
            ),
        )
        first, second = make_record(inbox, 1, CLIENT), make_record(inbox, 2, CLIENT)
        ruleset = load_rules(rules_dir)
        options = Options(jobs=1, retries=3, backoff=0.01, pause=30.0, spool_dir=state.parent / "spool")
        with open_ledger(state) as ledger, Exporter(ruleset, ledger, options) as exporter:
            assert [o.result for o in exporter.export([first]).outcomes] == ["delivered"]
            shutil.rmtree(server.root / "photos")  # the DMS ingested the record and removed the folder
            commands.clear()

            [outcome] = exporter.export([second]).outcomes

        assert (outcome.result, outcome.attempts) == ("delivered", 1)
        assert commands.count("USER") == 0  # the same connection
        assert commands.count("STOR") == 2  # refused once (550, no folder), then stored
        [(name, data)] = expected_files(second, ruleset).items()
        assert (server.root / "photos" / "incoming" / name).read_bytes() == data
        assert part_files(server.root) == set()


def test_export_a_server_behind_a_firewall_that_cuts_pipelined_commands_is_learned_and_kept(
    tmp_path: Path, commands: Commands, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attempt cut after RNFR and RNTO sent together is retried at once one command at a time,
    and the ledger keeps it: the next run's first rename waits for each reply too."""
    inbox, rules_dir, state = tmp_path / "inbox", tmp_path / "rules", tmp_path / "state" / "ledger.sqlite3"
    hooks = Pipelined(on_early_rnto="cut")
    with recording_server("ftp", commands, **hooks.attributes()) as server:
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        write_rules(rules_dir, rule_document(CLIENT, [ftp_destination("dms", server, "photos", PASSWORD_ENV)]))
        ruleset = load_rules(rules_dir)
        options = Options(jobs=1, retries=3, backoff=0.01, pause=30.0, spool_dir=state.parent / "spool")
        for n in (1, 2):  # two runs, each its own exporter (as two processes)
            with open_ledger(state) as ledger, Exporter(ruleset, ledger, options) as exporter:
                [outcome] = exporter.export([make_record(inbox, n, CLIENT)]).outcomes
            assert (outcome.result, outcome.attempts) == ("delivered", 2 if n == 1 else 1)
        assert part_files(server.root) == set()
    with open_ledger(state) as ledger:
        kept = ledger.capabilities(f"{CLIENT}/dms")[f"{CLIENT}/dms"]["capabilities"]

    assert hooks.early == [True, False, False]
    assert kept["pipelining"] is False


@pytest.mark.parametrize("scheme", ["ftp", "ftps"])
def test_a_server_that_answers_in_latin_1_is_understood(scheme: str) -> None:
    # old DMS servers greet and answer in their own code page, not UTF-8; the reply is read all the
    # same (a byte it cannot decode shown as U+FFFD), on the plain and on the TLS control connection
    def handle_auth_success(handler: Any, home: str, password: str, msg_login: str) -> None:
        parent = super(type(handler), handler)
        parent.handle_auth_success(home, password, "Angemeldet: Übertragung für Autohäuser erlaubt")

    attributes = {"encoding": "latin-1", "banner": "Willkommen auf dem Server für Autohäuser",
                  "handle_auth_success": handle_auth_success}  # fmt: skip
    with pyftpdlib_server(scheme, **attributes) as server:
        with open_transport(server.endpoint()) as transport:
            upload(transport, b"photo", "", "a.jpg")

        assert (server.root / "a.jpg").read_bytes() == b"photo"
