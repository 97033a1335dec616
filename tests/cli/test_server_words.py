"""What a server says reaches the operator as text: a multi-line FTP reply is one line of the
error, and an escape sequence in a reply or a banner is shown as its escape (``\\x1b``), never sent
to the operator's terminal, where it could clear the screen, recolour it, retitle the window or
forge lines.

The commands run as on a terminal (``invoke(..., terminal=True)``, click's ``color``): click keeps
escape sequences on a terminal, and strips them only when the output is not one, which would hide
what an operator sees.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import invoke
from click.testing import Result
from ftp_handlers import ServerEvents, counting_handler
from records import make_record
from rulefiles import ftp_destination, rule_document, write_rules
from servers import RunningServer, pyftpdlib_server

pytestmark = pytest.mark.integration

PASSWORD_ENV = "SERVER_WORDS_PASSWORD"
#: a quota reply over two lines that clears the screen and paints the rest red
REPLY = "552-Quota exceeded for\r\n552 \x1b[2J\x1b[31mthe user\x1b[0m"
#: a greeting that sets the terminal's title (OSC 0, ended by BEL) and holds a right-to-left override
BANNER = "DMS \x1b]0;pwned\x07 ready \u202egpj.exe"
SHOWN_REPLY = "552-Quota exceeded for 552 \\x1b[2J\\x1b[31mthe user\\x1b[0m"
SPACE_HINT = "free disk space or raise the quota on the server; the delivery is retried, then parked as failed"
SHOWN_BANNER = "DMS \\x1b]0;pwned\\x07 ready \\u202egpj.exe"


@pytest.fixture
def server() -> Iterator[RunningServer]:
    """pyftpdlib greeting with ``BANNER`` and answering every STOR with ``REPLY``."""
    events = ServerEvents()
    attributes = counting_handler(events, stor_reply=lambda n: REPLY)
    with pyftpdlib_server("ftp", banner=BANNER, **attributes) as running:
        yield running


def _invoke(*args: str | Path, password: str) -> Result:
    return invoke(*args, env={PASSWORD_ENV: password}, terminal=True)


def _assert_text_only(result: Result) -> None:
    for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, f"{stream}: {text!r}"


def test_a_servers_reply_and_banner_are_shown_as_text_on_one_line(tmp_path: Path, server: RunningServer) -> None:
    rules, state, inbox = tmp_path / "rules", tmp_path / "ledger.sqlite3", tmp_path / "inbox"
    write_rules(rules, rule_document("acme", [ftp_destination("dms", server, "in", PASSWORD_ENV)]))
    make_record(inbox, 1, "acme")

    ran = _invoke("run", inbox, "--rules", rules, "--state", state, "--retries", "0", password=server.password)
    assert ran.exit_code == 1
    _assert_text_only(ran)
    failed = [line for line in ran.stderr.splitlines() if "Quota exceeded" in line]
    assert failed and all(SHOWN_REPLY in line for line in failed), ran.stderr

    status = _invoke("status", "--state", state, password=server.password)
    _assert_text_only(status)
    assert SHOWN_REPLY in status.stdout
    as_json = json.loads(_invoke("status", "--state", state, "--json", password=server.password).stdout)
    assert [d["last_error"].endswith(SHOWN_REPLY + f" ({SPACE_HINT})") for d in as_json["destinations"]] == [True]

    probe = _invoke("test-connection", "acme", "--rules", rules, "--state", state, password=server.password)
    _assert_text_only(probe)
    assert SHOWN_REPLY in probe.stdout + probe.stderr
    assert f"banner: 220 {SHOWN_BANNER}" in probe.stdout
