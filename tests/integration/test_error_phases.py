"""Network failures after the connection is up name the server (host:port) and the phase they hit.

The connection phases (connect, greeting, TLS and SSH handshakes) are covered through the command
line in ``tests/cli/test_connection_failures.py``; here each transport's connection is cut from the
side (``abort()``, what a shutdown does) and the next operation, or the running transfer, fails.
"""

from __future__ import annotations

import io

import pytest
from servers import RunningServer

from ftpexport.errors import TransientError
from ftpexport.transport import open_transport

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("server_fixture", ["ftp_server", "ftps_server", "sftp_server"])
def test_an_operation_on_a_cut_connection_names_the_server_and_the_phase(
    server_fixture: str, request: pytest.FixtureRequest
) -> None:
    server: RunningServer = request.getfixturevalue(server_fixture)
    where = f"{server.host}:{server.port}"

    with open_transport(server.endpoint()) as transport:
        transport.abort()
        with pytest.raises(TransientError) as caught:
            transport.size(server.remote_path("car.jpg"))

    assert where in str(caught.value) and "during the size check" in str(caught.value)


@pytest.mark.parametrize("server_fixture", ["ftp_server", "sftp_server"])
def test_a_transfer_cut_half_way_names_the_server_and_the_transfer(
    server_fixture: str, request: pytest.FixtureRequest
) -> None:
    server: RunningServer = request.getfixturevalue(server_fixture)
    where = f"{server.host}:{server.port}"

    with open_transport(server.endpoint()) as transport, pytest.raises(TransientError) as caught:
        transport.put(io.BytesIO(bytes(8 * 1024 * 1024)), server.remote_path("car.jpg"), lambda n: transport.abort())

    assert where in str(caught.value) and "during the transfer" in str(caught.value)
