"""The in-memory transport behaves like the real ones (the conformance suite's checks, offline), and
each scripted fault does what its docstring says."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import pytest
from fifo_guard import HANG_GUARD
from pydantic import SecretStr

from ftpexport.errors import AuthenticationError, PermanentError, RemoteExistsError, TransientError
from ftpexport.transport import Endpoint, Transport, Upload, upload_file
from ftpexport.transport.base import Capabilities, temporary_name
from ftpexport.transport.memory import BLOCK_SIZE, MemoryServer
from ftpexport.transport.pool import ConnectionPool

ENDPOINT = Endpoint("ftp", "dms.example", 21, "acme", SecretStr("not-a-real-password"), timeout=30.0, label="acme/dms")


def upload(transport: Transport, data: bytes, remote_dir: str, name: str, **options: object) -> Upload:
    return upload_file(transport, lambda: io.BytesIO(data), len(data), remote_dir, name, **options)  # type: ignore[arg-type]


@pytest.fixture
def server() -> MemoryServer:
    return MemoryServer()


@pytest.fixture
def transport(server: MemoryServer) -> Iterator[Transport]:
    with server.transport(ENDPOINT) as connected:
        yield connected


# --- like the real transports


def test_atomic_upload_writes_the_temporary_name_then_renames(server: MemoryServer, transport: Transport) -> None:
    blocks: list[int] = []
    data = bytes(range(256)) * 100  # several blocks

    result = upload(transport, data, "", "VIN1.zip", callback=blocks.append)

    assert result == Upload("VIN1.zip", len(data))
    assert server.listing() == {"VIN1.zip": data}
    assert server.uploads == {temporary_name("VIN1.zip"): 1}
    assert server.renames == {"VIN1.zip": 1}
    assert sum(blocks) == len(data) and len(blocks) == -(-len(data) // BLOCK_SIZE)


def test_makedirs_nested_and_paths_normalised(server: MemoryServer, transport: Transport) -> None:
    transport.makedirs("2026/11/acme")
    transport.makedirs("/2026/11/acme")  # existing folders are fine
    upload(transport, b"x", "/2026/./11/acme", "a.zip")

    assert {"2026", "2026/11", "2026/11/acme"} <= server.folders
    assert server.read("2026/11/acme/a.zip") == b"x"


def test_a_file_where_a_folder_should_be_is_permanent(server: MemoryServer, transport: Transport) -> None:
    server.write("2026", b"not a folder")

    with pytest.raises(PermanentError) as caught:
        transport.makedirs("2026/11")

    assert "acme/dms" in str(caught.value) and "2026" in str(caught.value)


def test_upload_into_a_missing_folder_is_permanent(transport: Transport) -> None:
    with pytest.raises(PermanentError, match="no/such/dir"):
        upload(transport, b"x", "no/such/dir", "a.jpg")


def test_size_rename_remove_and_if_exists(server: MemoryServer, transport: Transport) -> None:
    server.write("a", b"A")
    server.write("b", b"BB")
    assert (transport.size("a"), transport.size("missing")) == (1, None)

    transport.rename("a", "b")  # replaces the target
    assert server.listing() == {"b": b"A"}
    transport.remove("b")
    transport.remove("b")  # a missing file is fine
    assert server.listing() == {}

    server.write("car.jpg", b"theirs")
    assert upload(transport, b"ours", "", "car.jpg", if_exists="skip").skipped
    with pytest.raises(RemoteExistsError):
        upload(transport, b"ours", "", "car.jpg", if_exists="fail")
    assert server.read("car.jpg") == b"theirs"


def test_a_server_without_sizes_is_trusted_after_the_transfer(server: MemoryServer, transport: Transport) -> None:
    server.reports_sizes = False

    upload(transport, b"data", "", "a.zip")

    assert server.read("a.zip") == b"data"


def test_connections_are_counted_and_shared(server: MemoryServer) -> None:
    with server.transport(ENDPOINT) as first, server.transport(ENDPOINT) as second:
        first.makedirs("shared/one")
        second.makedirs("shared/one/two")
        assert server.open_connections == 2
    assert (server.connections, server.open_connections, server.most_open) == (2, 0, 2)
    assert "shared/one/two" in server.folders


def test_uploads_from_many_threads(server: MemoryServer) -> None:
    def send(n: int) -> None:
        with server.transport(ENDPOINT) as transport:
            upload(transport, bytes([n]) * 10_000, "", f"{n}.bin")

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert server.listing() == {f"{n}.bin": bytes([n]) * 10_000 for n in range(8)}
    assert sum(server.renames.values()) == 8


def test_capabilities(server: MemoryServer, transport: Transport) -> None:
    assert transport.capabilities == Capabilities(keeps_directories=False, quick_liveness=True)
    assert transport.seems_alive() and transport.alive()
    server.restart()
    assert not transport.seems_alive() and not transport.alive()
    with pytest.raises(TransientError, match="closed the connection"):
        transport.size("a")


def test_the_pool_replaces_a_connection_the_server_dropped(server: MemoryServer) -> None:
    pool = ConnectionPool(ENDPOINT, size=1, transport_factory=server.transport)
    first = pool.acquire()
    pool.release(first, reuse=True)
    assert pool.acquire() is first and pool.reused == 1
    pool.release(first, reuse=True)

    server.restart()
    second = pool.acquire()

    assert second is not first and pool.opened == 2
    pool.release(second, reuse=False)
    pool.close()
    assert server.open_connections == 0


# --- faults


def test_refused_login_transient_then_permanent(server: MemoryServer) -> None:
    server.refuse("login")
    server.refuse("login", permanent=True)

    with pytest.raises(TransientError) as transient, server.transport(ENDPOINT):
        pass
    with pytest.raises(AuthenticationError) as permanent, server.transport(ENDPOINT):
        pass
    with server.transport(ENDPOINT):
        pass  # the faults are spent

    assert "acme/dms" in str(transient.value) and "acme/dms" in str(permanent.value)
    assert (server.login_attempts, server.connections, server.open_connections) == (3, 1, 0)


def test_a_refused_folder_or_file_leaves_the_connection_usable(server: MemoryServer, transport: Transport) -> None:
    server.refuse("makedirs", "photos", permanent=True)
    server.refuse("put", "*.zip*", times=None)

    with pytest.raises(PermanentError, match="photos"):
        transport.makedirs("photos/2026")
    with pytest.raises(TransientError):
        upload(transport, b"x", "", "a.zip")

    assert transport.usable_after_error()
    upload(transport, b"y", "", "a.jpg")  # another file goes through
    assert server.listing() == {"a.jpg": b"y"}


def test_a_cut_after_n_bytes_leaves_a_partial_temporary_file(server: MemoryServer, transport: Transport) -> None:
    data = bytes(range(256)) * 64
    server.cut("put", "*VIN1.zip*", after=5000)

    with pytest.raises(TransientError, match="closed the connection"):
        upload(transport, data, "", "VIN1.zip")

    assert server.listing() == {temporary_name("VIN1.zip"): data[:5000]}  # no final name, the partial file stays
    assert not transport.usable_after_error() and not transport.alive()
    assert server.uploads == {}


def test_refused_rename_permanent_removes_the_temporary_file(server: MemoryServer, transport: Transport) -> None:
    server.write("VIN1.zip", b"older")
    server.refuse("rename", "VIN1.zip", permanent=True)

    with pytest.raises(PermanentError, match="refused to rename") as caught:
        upload(transport, b"new", "", "VIN1.zip")

    assert caught.value.hint is not None and "atomic: false" in caught.value.hint
    assert server.listing() == {"VIN1.zip": b"older"}


def test_die_after_rename_renames_but_the_client_sees_a_cut(server: MemoryServer, transport: Transport) -> None:
    server.die_after_rename("VIN1.zip")

    with pytest.raises(TransientError):
        upload(transport, b"new", "", "VIN1.zip")

    assert server.listing() == {"VIN1.zip": b"new"}
    assert server.renames == {"VIN1.zip": 1}
    assert not transport.alive()


def test_a_hang_goes_on_when_released(server: MemoryServer, transport: Transport) -> None:
    hang = server.hang("put", "*", after=100)
    done = threading.Event()

    def send() -> None:
        upload(transport, b"z" * 1000, "", "a.zip")
        done.set()

    thread = threading.Thread(target=send)
    thread.start()
    assert hang.reached.wait(HANG_GUARD)
    assert server.listing() == {temporary_name("a.zip"): b"z" * 100}  # held after 100 bytes
    hang.release()
    thread.join()

    assert done.is_set() and server.listing() == {"a.zip": b"z" * 1000}


def test_a_hang_is_cut_by_abort(server: MemoryServer, transport: Transport) -> None:
    hang = server.hang("rename")
    errors: list[BaseException] = []

    def send() -> None:
        try:
            upload(transport, b"z", "", "a.zip")
        except TransientError as exc:
            errors.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    assert hang.reached.wait(HANG_GUARD)
    transport.abort()
    thread.join()

    assert len(errors) == 1 and "closed the connection" in str(errors[0])
    assert server.listing() == {temporary_name("a.zip"): b"z"}


def test_a_hang_times_out_after_the_endpoint_timeout(server: MemoryServer) -> None:
    server.hang("size")
    endpoint = Endpoint("ftp", "dms.example", 21, "acme", timeout=0.01)

    with server.transport(endpoint) as transport, pytest.raises(TransientError, match="timed out"):
        transport.size("a")


def test_at_runs_a_call_at_that_moment(server: MemoryServer, transport: Transport) -> None:
    seen: list[dict[str, bytes]] = []
    server.at("renamed", "a.zip", lambda: seen.append(server.snapshot().listing()))
    server.at("put", "*", lambda: seen.append(server.listing()), after=2)

    upload(transport, b"abcd", "", "a.zip")

    assert seen == [{temporary_name("a.zip"): b"ab"}, {"a.zip": b"abcd"}]


def test_deleting_a_folder_takes_what_it_holds(server: MemoryServer) -> None:
    server.write("dms/a/1.zip", b"1")
    server.write("dms/b.zip", b"2")
    server.write("dmsx/c.zip", b"3")

    server.delete("dms")

    assert server.listing() == {"dmsx/c.zip": b"3"} and server.folders == {"", "dmsx"}
