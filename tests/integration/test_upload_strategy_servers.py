"""The upload strategy on real servers (issue 15 item 3): FTP servers whose RNTO will not replace a
file (as IIS) or that have no SIZE, each a pyftpdlib server that records every command it gets;
OpenSSH, as a server without posix-rename and as itself."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from servers import RunningServer, pyftpdlib_server

from ftpexport.transport import Transport, Upload, open_transport, upload_file
from ftpexport.transport.base import temporary_name
from ftpexport.transport.capabilities import ServerCapabilities

pytestmark = pytest.mark.integration


def upload(transport: Transport, data: bytes, name: str) -> Upload:
    return upload_file(transport, lambda: io.BytesIO(data), len(data), "", name)


class Commands:
    """Handler attributes that record each command (name and argument); ``refuse_replace`` makes RNTO
    onto an existing file answer "550 file exists"; ``without`` leaves commands out (and out of FEAT)."""

    def __init__(self, *, refuse_replace: bool = False, without: tuple[str, ...] = ()) -> None:
        self.seen: list[tuple[str, str]] = []
        self.refuse_replace = refuse_replace
        self.without = without

    def attributes(self) -> dict[str, Any]:
        import os

        from pyftpdlib.handlers import FTPHandler

        commands = self

        def pre_process_command(handler: Any, line: str, cmd: str, arg: str) -> None:
            commands.seen.append((cmd, arg))
            FTPHandler.pre_process_command(handler, line, cmd, arg)

        def ftp_RNTO(handler: Any, path: str) -> Any:
            if commands.refuse_replace and os.path.exists(path):
                handler.respond("550 File exists.")
                handler._rnfr = None
                return None
            return FTPHandler.ftp_RNTO(handler, path)

        proto = {name: value for name, value in FTPHandler.proto_cmds.items() if name not in self.without}
        return {"pre_process_command": pre_process_command, "ftp_RNTO": ftp_RNTO, "proto_cmds": proto}

    def count(self, command: str) -> int:
        return sum(1 for name, _ in self.seen if name == command)


@pytest.fixture
def no_replace() -> Iterator[tuple[RunningServer, Commands]]:
    commands = Commands(refuse_replace=True)
    with pyftpdlib_server("ftp", **commands.attributes()) as server:
        yield server, commands


@pytest.fixture
def no_size() -> Iterator[tuple[RunningServer, Commands]]:
    commands = Commands(without=("SIZE",))
    with pyftpdlib_server("ftp", **commands.attributes()) as server:
        yield server, commands


def test_an_rnto_that_will_not_replace_is_learned_then_the_file_is_deleted_first(
    no_replace: tuple[RunningServer, Commands],
) -> None:
    server, commands = no_replace
    server.make_file("VIN1.zip", b"yesterday's")

    with open_transport(server.endpoint()) as transport:
        upload(transport, b"today's", "VIN1.zip")
        assert (commands.count("RNTO"), commands.count("DELE")) == (2, 1)  # refused, deleted, renamed
        assert transport.known.rename_replaces is False

        upload(transport, b"tomorrow's", "VIN1.zip")

    assert (commands.count("RNTO"), commands.count("DELE")) == (3, 2)  # no refused RNTO first this time
    assert (server.root / "VIN1.zip").read_bytes() == b"tomorrow's"


def test_a_server_without_size_is_learned_from_feat_and_never_asked(no_size: tuple[RunningServer, Commands]) -> None:
    server, commands = no_size

    with open_transport(server.endpoint()) as transport:
        learned = transport.learn()
        result = upload(transport, b"data", "VIN1.zip")

    assert learned.size is False and "SIZE" not in (learned.feat or [])
    assert result == Upload("VIN1.zip", 4, size_checked=False)
    assert commands.count("SIZE") == 0
    assert (server.root / "VIN1.zip").read_bytes() == b"data"


def test_a_size_answered_500_is_noted_and_not_asked_again(no_size: tuple[RunningServer, Commands]) -> None:
    server, commands = no_size

    with open_transport(server.endpoint()) as transport:  # nothing learned first: SIZE is tried once
        first = upload(transport, b"data", "VIN1.zip")
        second = upload(transport, b"more", "VIN2.zip")

    assert (first.size_checked, second.size_checked) == (False, False)
    assert [arg for name, arg in commands.seen if name == "SIZE"] == [temporary_name("VIN1.zip")]


def test_sftp_without_posix_rename_replaces_by_deleting_first_and_notes_it(sftp_server: RunningServer) -> None:
    sftp_server.make_file("VIN1.zip", b"yesterday's")

    with open_transport(sftp_server.endpoint()) as transport:
        transport.adopt(ServerCapabilities(posix_rename=False))  # as a server without the OpenSSH extension
        upload_file(transport, lambda: io.BytesIO(b"today's"), 7, sftp_server.remote_path(), "VIN1.zip")
        assert (transport.known.rename, transport.known.rename_replaces) == (True, False)  # plain rename refused

        upload_file(transport, lambda: io.BytesIO(b"tomorrow's"), 10, sftp_server.remote_path(), "VIN1.zip")

    assert (sftp_server.root / "VIN1.zip").read_bytes() == b"tomorrow's"
    assert sorted(p.name for p in sftp_server.root.iterdir()) == ["VIN1.zip"]


def test_sftp_learns_posix_rename_and_that_it_replaces(sftp_server: RunningServer) -> None:
    sftp_server.make_file("VIN1.zip", b"yesterday's")

    with open_transport(sftp_server.endpoint()) as transport:
        learned = transport.learn()
        upload_file(transport, lambda: io.BytesIO(b"today's"), 7, sftp_server.remote_path(), "VIN1.zip")

    assert learned.posix_rename is True and learned.fsync is True
    assert (transport.known.rename, transport.known.rename_replaces) == (True, True)
    assert (sftp_server.root / "VIN1.zip").read_bytes() == b"today's"
