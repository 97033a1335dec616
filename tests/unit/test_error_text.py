"""Errors show only text (``errors.printable``): what a server, a file name or a rule file put in a
message cannot drive the terminal or forge a log line. The same through the commands:
``tests/cli/test_server_words.py``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ftpexport.display import refused_text
from ftpexport.errors import (
    AuthenticationError,
    FtpexportError,
    RecordError,
    RuleError,
    TransientError,
    printable,
    printable_name,
)
from ftpexport.rules.load import RuleFileError
from ftpexport.secret import MASK, redact, remember


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain words: 550 No such file", "plain words: 550 No such file"),
        ("clear \x1b[2J", "clear \\x1b[2J"),
        ("title \x1b]0;x\x07", "title \\x1b]0;x\\x07"),
        ("C1 \x9b31m", "C1 \\x9b31m"),
        ("right-to-left \u202egpj.exe", "right-to-left \\u202egpj.exe"),
        ("two\nlines", "two\nlines"),
        ("carriage\rreturn", "carriage\\x0dreturn"),
        ("caf\u00e9 \u00e0 Z\u00fcrich", "caf\u00e9 \u00e0 Z\u00fcrich"),
    ],
)
def test_printable_keeps_text_and_newlines_and_escapes_the_rest(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_one_line_joins_the_lines_of_a_multi_line_reply() -> None:
    reply = "530-Login incorrect.\r\n530-\r\n530 \x1b[31mBye\r\n"
    assert printable(reply, one_line=True) == "530-Login incorrect. 530- 530 \\x1b[31mBye"


def test_a_transport_error_is_one_line_of_text() -> None:
    error = TransientError("the server answered 451-Try\r\n451 later\x1b[0m", destination="acme/dms", path="in/a.zip")
    assert str(error) == "destination acme/dms: remote path in/a.zip: the server answered 451-Try 451 later\\x1b[0m"
    assert error.detail == "the server answered 451-Try 451 later\\x1b[0m"
    login = AuthenticationError("login refused: 530 \x1b[2Jno", hint="check the user name and password")
    assert str(login) == "login refused: 530 \\x1b[2Jno (check the user name and password)"


def test_a_name_from_the_input_is_one_line_of_text() -> None:
    assert printable_name("veh-000124") == "veh-000124"
    assert printable_name("veh\x1b[31m1\nFORGED") == "veh\\x1b[31m1\\x0aFORGED"


def test_a_record_error_is_one_line_of_text() -> None:
    error = RecordError("inbox/veh\x1b[2J\nFORGED", "vehicle.json is not valid:\nline 2")
    assert str(error) == "inbox/veh\\x1b[2J\\x0aFORGED: vehicle.json is not valid: line 2"
    assert error.path == "inbox/veh\x1b[2J\nFORGED"  # the folder, as it is


def test_status_shows_a_refused_folder_as_one_line_of_text() -> None:
    refused = [{"record_path": "inbox/veh\x1b[2J\nFORGED", "reason": "not valid\x07", "kind": "record",
                "client_id": None, "record_id": None, "rule_file": None, "times": 1,
                "first_seen": "2026-12-03T10:00:00+00:00", "last_seen": "2026-12-03T10:00:00+00:00"}]  # fmt: skip
    text = refused_text(refused, datetime(2026, 12, 3, 10, 0, 5, tzinfo=UTC))
    assert text.splitlines()[1] == "  inbox/veh\\x1b[2J\\x0aFORGED: not valid\\x07"


def test_other_errors_escape_what_is_not_text_and_keep_their_lines() -> None:
    assert str(FtpexportError("a\x00b", hint="do \x1bthis")) == "a\\x00b (do \\x1bthis)"
    # a rule file's problems, one a line, as before
    both = RuleFileError([RuleError("acme.yaml", "url", "bad\x1b"), RuleError("acme.yaml", "timeout", "too big")])
    assert str(both) == "acme.yaml: url: bad\\x1b\nacme.yaml: timeout: too big"
    assert str(RuleError("rules/ac\nme.yaml", None, "not YAML")) == "rules/ac\\x0ame.yaml: not YAML"


def test_a_secret_with_a_control_character_is_still_masked_once_an_error_escaped_it() -> None:
    # a server that echoes the password it refused, and a password holding a tab and an escape
    password = "pa\tss\x1bword-0c9e"
    remember(password)
    error = AuthenticationError(f"login refused: 530 bad password {password}\r\n530 bye")
    assert "\\x1bword" in str(AuthenticationError("x\x1bword"))  # escaped, as a secret would be
    assert redact(str(error)) == f"login refused: 530 bad password {MASK} 530 bye"
