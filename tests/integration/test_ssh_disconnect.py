"""A server that disconnects saying why: the error a user meets carries the server's words.

paramiko only logs the text and reason of an ``SSH_MSG_DISCONNECT``; without them, ProFTPD's
``MaxLoginAttempts`` after a wrong password read "Authentication failed: transport shut down or saw
EOF". Reason 12 (too many connections) is ``tests/integration/test_session_limits.py``.
"""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import SecretStr
from servers_ftpd import proftpd_server

from ftpexport.errors import AuthenticationError
from ftpexport.transport import open_transport

pytestmark = pytest.mark.integration


def test_a_login_the_server_ends_with_a_disconnect_says_what_the_server_said() -> None:
    with proftpd_server("sftp", extra_config=["MaxLoginAttempts 1"]) as server:
        wrong = dataclasses.replace(server.endpoint(), password=SecretStr("not-the-password"))
        with pytest.raises(AuthenticationError) as caught, open_transport(wrong):
            pass

    message = str(caught.value)
    assert message.startswith(f"destination {wrong.display}: login refused: ")
    assert "; the server disconnected: Application disconnected (SSH disconnect, reason 11: by application)" in message
    assert "not-the-password" not in message
    assert caught.value.hint is not None and "password" in caught.value.hint
