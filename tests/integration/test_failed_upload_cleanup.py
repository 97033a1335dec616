"""After a failed upload, the hidden temporary file does not wait on the server for a later success.

- FTP: a server with a quota cuts the STOR with 552 in the middle of the file (pyftpdlib, a real data
  handler that stops reading and answers 552); the reported error is the 552, not the broken pipe
  of the data connection, and the partial ``.NAME.part`` is deleted on the same connection;
- SFTP: a server whose disk is full (a 1 MB tmpfs under the sshd user's home) fails the writes;
  the partial file is deleted, the error is the write failure;
- a connection in an unknown state (cut in the middle of the transfer) is not asked anything more:
  the temporary file stays for the next attempt to overwrite, and the error is the cut.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from disks import small_tmpfs
from ftp_handlers import quota_dtp_handler
from records import make_record
from remote_files import part_files
from rulefiles import ftp_destination, rule_document, write_rules
from servers import RunningServer, pyftpdlib_server

from ftpexport.errors import TransientError
from ftpexport.ledger import open_ledger
from ftpexport.pipeline import Exporter, Options
from ftpexport.rules import load_rules
from ftpexport.transport import Transport, open_transport, upload_file

pytestmark = pytest.mark.integration

CLIENT = "acme"
PASSWORD_ENV = "CLEANUP_FTP_PASSWORD"
#: bytes a quota lets through before it refuses the rest
QUOTA = 64 * 1024


class Spy:
    """Counts the deletes a transport is asked for."""

    def __init__(self, transport: Transport, monkeypatch: pytest.MonkeyPatch) -> None:
        self.removed: list[str] = []
        remove = transport.remove

        def counted(path: str) -> None:
            self.removed.append(path)
            remove(path)

        monkeypatch.setattr(transport, "remove", counted)


# a file that fits in the socket buffers (the 552 comes after the last byte is sent) and one that
# does not (the server closes the data connection while the client is still sending)
@pytest.mark.parametrize("size", [200_000, 32 * 1024 * 1024], ids=["small", "large"])
def test_ftp_552_mid_file_reports_the_552_and_removes_the_temporary_file(size: int) -> None:
    with pyftpdlib_server("ftp", dtp_handler=quota_dtp_handler(QUOTA)) as server:
        transport = open_transport(server.endpoint())
        with transport, pytest.raises(TransientError) as caught:
            upload_file(transport, lambda: io.BytesIO(os.urandom(size)), size, "", "car.zip")

        assert "552 Disk quota exceeded" in str(caught.value) and "out of space" in str(caught.value)
        assert caught.value.path == ".car.zip.part"
        assert list(server.root.iterdir()) == []  # neither the final nor the temporary file


def test_a_run_against_an_ftp_quota_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pyftpdlib_server("ftp", dtp_handler=quota_dtp_handler(QUOTA)) as server:
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        rules = tmp_path / "rules"
        write_rules(rules, rule_document(CLIENT, [ftp_destination("dms", server, "photos", PASSWORD_ENV)]))
        folder = make_record(tmp_path / "inbox", 1, CLIENT, image_sizes={"99.jpg": 300_000})
        options = Options(retries=1, backoff=0.01, spool_dir=tmp_path / "spool")
        with (
            open_ledger(tmp_path / "ledger.db") as ledger,
            Exporter(load_rules(rules), ledger, options) as exporter,
        ):
            summary = exporter.export([folder])

        [outcome] = summary.outcomes
        assert (outcome.result, outcome.attempts) == ("failed", 2)
        assert outcome.error is not None and "552 Disk quota exceeded" in outcome.error
        assert part_files(server.root) == set()


def test_sftp_disk_full_reports_the_write_failure_and_removes_the_temporary_file(
    sftp_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 1_500_000
    with small_tmpfs(sftp_server, "full", "1m"):
        transport = open_transport(sftp_server.endpoint())
        spy = Spy(transport, monkeypatch)
        with transport, pytest.raises(TransientError) as caught:
            upload_file(
                transport, lambda: io.BytesIO(os.urandom(size)), size, sftp_server.remote_path("full"), "car.zip"
            )

        assert "the server could not write the file" in str(caught.value)
        assert caught.value.path == sftp_server.remote_path("full/.car.zip.part")
        assert spy.removed == [sftp_server.remote_path("full/.car.zip.part")]
        assert list((sftp_server.root / "full").iterdir()) == []


@pytest.mark.parametrize("server_fixture", ["ftp_server", "sftp_server"])
def test_a_connection_cut_during_the_transfer_is_not_asked_to_delete(
    server_fixture: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    server: RunningServer = request.getfixturevalue(server_fixture)
    transport = open_transport(server.endpoint())
    spy = Spy(transport, monkeypatch)
    size = 8 * 1024 * 1024

    def cut_after_the_first_block(n: int) -> None:
        transport.abort()  # what a shutdown does to a transfer that outlives the grace time

    with transport, pytest.raises(TransientError) as caught:
        upload_file(
            transport, lambda: io.BytesIO(bytes(size)), size, server.remote_path(), "car.zip",
            callback=cut_after_the_first_block,
        )  # fmt: skip

    assert caught.value.path == server.remote_path(".car.zip.part")
    assert spy.removed == []
    assert not (server.root / "car.zip").exists()
