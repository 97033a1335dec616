"""How ``transport.sftp_errors.map_errors`` reads paramiko's and the socket's errors (offline).

The same failures against a real sshd: ``tests/integration/test_error_phases.py``."""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from ftpexport.errors import PermanentError, TooManySessionsError, TransientError
from ftpexport.transport.base import Endpoint
from ftpexport.transport.sftp_errors import map_errors
from ftpexport.transport.ssh_connect import sessions_refused

ENDPOINT = Endpoint(scheme="sftp", host="127.0.0.1", port=2222, username="dealer")


def mapped(exc: BaseException, *, writing: bool = True) -> BaseException:
    with (
        pytest.raises((TransientError, PermanentError)) as caught,
        map_errors(ENDPOINT, "/in/car.jpg", phase="transfer", writing=writing),
    ):
        raise exc
    return caught.value


def test_a_write_on_a_channel_closed_meanwhile_is_a_cut_naming_the_server_and_the_phase() -> None:
    # paramiko's Channel.send raises socket.error("Socket is closed") once the connection is gone:
    # that is not the server refusing to write (the disk-full reading of a bare SFTP failure)
    error = mapped(OSError("Socket is closed"))
    assert isinstance(error, TransientError)
    assert "127.0.0.1:2222" in str(error) and "during the transfer" in str(error)
    assert "disk is full" not in str(error)


def test_a_bare_sftp_failure_while_writing_still_reads_as_the_server_unable_to_write() -> None:
    error = mapped(OSError("Failure"))
    assert isinstance(error, TransientError) and "could not write the file" in str(error)


def test_a_refusal_naming_no_such_file_is_permanent() -> None:
    error = mapped(OSError(errno.ENOENT, "No such file"), writing=False)
    assert isinstance(error, PermanentError) and "no such file" in str(error)


def test_a_disconnect_for_too_many_connections_is_too_many_sessions_with_the_servers_words_on_one_line() -> None:
    long_text = "Maximum connections\r\n\x1b[2J reached " + "x" * 5000
    error = sessions_refused(ENDPOINT, SimpleNamespace(disconnect=(12, long_text)))  # type: ignore[arg-type]

    assert isinstance(error, TooManySessionsError)
    assert "the server refused one more session: Maximum connections \x1b[2J reached" in str(error)
    assert "\n" not in error.detail and len(error.detail) < 300
    assert "SSH disconnect, reason 12" in str(error) and ENDPOINT.display in str(error)


@pytest.mark.parametrize("disconnect", [None, (11, "Bye"), (2, "protocol error")])
def test_any_other_disconnect_is_left_to_the_error_it_caused(disconnect: tuple[int, str] | None) -> None:
    assert sessions_refused(ENDPOINT, SimpleNamespace(disconnect=disconnect)) is None  # type: ignore[arg-type]
