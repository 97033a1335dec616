"""How ``transport.sftp_errors.map_errors`` reads paramiko's and the socket's errors (offline).

The same failures against a real sshd: ``tests/integration/test_error_phases.py``."""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from ftpexport.errors import AuthenticationError, PermanentError, TooManySessionsError, TransientError
from ftpexport.transport.base import Endpoint
from ftpexport.transport.sftp_errors import map_errors
from ftpexport.transport.ssh_connect import disconnect_error

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


def test_a_disconnect_for_too_many_connections_is_too_many_sessions_with_the_servers_words_as_text() -> (
    None
):
    long_text = "Maximum connections\r\n\x1b[2J reached " + "x" * 5000
    transport = SimpleNamespace(disconnect=(12, long_text))
    error = disconnect_error(ENDPOINT, transport, AuthenticationError("login refused"))  # type: ignore[arg-type]

    assert isinstance(error, TooManySessionsError)
    # the escape sequence shown as text, not sent to the operator's terminal
    assert "the server refused one more session: Maximum connections \\x1b[2J reached" in str(error)
    assert "\n" not in error.detail and "\x1b" not in error.detail and len(error.detail) < 300
    assert "SSH disconnect, reason 12: too many connections" in str(error) and ENDPOINT.display in str(error)


def test_any_other_disconnect_keeps_the_error_it_caused_and_adds_the_servers_words() -> None:
    # ProFTPD's MaxLoginAttempts after a wrong password; paramiko only logs what the server said
    caused = AuthenticationError("login refused: Authentication failed: transport shut down or saw EOF")
    transport = SimpleNamespace(disconnect=(11, "Too many login attempts\x07"))
    error = disconnect_error(ENDPOINT, transport, caused)  # type: ignore[arg-type]

    assert error is caused
    assert str(error).endswith(
        "saw EOF; the server disconnected: Too many login attempts\\x07 (SSH disconnect, reason 11: by application)"
    )


@pytest.mark.parametrize(
    ("disconnect", "caused"),
    [(None, TransientError("closed")), ((11, "Bye"), KeyboardInterrupt()), ((99, "Bye"), ValueError())],
)
def test_no_disconnect_or_an_error_not_ours_is_left_as_it_was(
    disconnect: tuple[int, str] | None, caused: BaseException
) -> None:
    assert disconnect_error(ENDPOINT, SimpleNamespace(disconnect=disconnect), caused) is None  # type: ignore[arg-type]


def test_an_unknown_reason_is_named_so() -> None:
    error = disconnect_error(ENDPOINT, SimpleNamespace(disconnect=(99, "Bye")), TransientError("closed"))  # type: ignore[arg-type]
    assert error is not None and "(SSH disconnect, reason 99: unknown)" in str(error)
