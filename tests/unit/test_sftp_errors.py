"""How ``transport.sftp_errors.map_errors`` reads paramiko's and the socket's errors (offline).

The same failures against a real sshd: ``tests/integration/test_error_phases.py``."""

from __future__ import annotations

import errno

import pytest

from ftpexport.errors import PermanentError, TransientError
from ftpexport.transport.base import Endpoint
from ftpexport.transport.sftp_errors import map_errors

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
