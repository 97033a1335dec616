"""secret.py and logs.py: references, resolution, redaction, and log lines that never leak."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from pydantic import SecretStr

from ftpexport.errors import ConfigError, SecretError
from ftpexport.logs import JsonFormatter, TextFormatter, setup_logging
from ftpexport.secret import MASK, SecretRef, parse_ref, redact, remember

VALUE = "s3cr3t-Value-42"
WHERE = "rules/acme.yaml: destinations[0].password"

# --- references


@pytest.mark.parametrize(
    "text, env_var",
    [
        ("${ACME_DMS_PASSWORD}", "ACME_DMS_PASSWORD"),
        ("  ${_x1}  ", "_x1"),
        ("${a}", "a"),
    ],
)
def test_an_environment_reference_parses(text: str, env_var: str) -> None:
    ref = parse_ref(text)

    assert ref == SecretRef(text=text.strip(), env_var=env_var)
    assert str(ref) == text.strip()


@pytest.mark.parametrize(
    "text, message",
    [
        ("hunter2", "never the secret itself"),
        ("$ACME", "never the secret itself"),
        ("${PW", "never the secret itself"),
        ("${1ACME}", "never the secret itself"),
        ("${ACME-PW}", "never the secret itself"),
        ("${ACME}x", "never the secret itself"),
        ("pre${ACME}", "never the secret itself"),
        ("", "never the secret itself"),
        ("${secret:}", "never the secret itself"),
        ("${secret:acme ftps}", "never the secret itself"),
        ("${secret:" + "a" * 65 + "}", "never the secret itself"),
    ],
)
def test_anything_else_is_refused_without_echoing_it(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_ref(text)

    assert message in str(caught.value)
    if len(text) > 3:
        assert text not in str(caught.value)


def test_a_reference_resolves_to_a_secret_str(monkeypatch: pytest.MonkeyPatch, known_secrets: set[str]) -> None:
    monkeypatch.setenv("ACME_PW", VALUE)

    secret = parse_ref("${ACME_PW}").resolve(where=WHERE)

    assert isinstance(secret, SecretStr)
    assert secret.get_secret_value() == VALUE
    assert VALUE not in repr(secret)
    assert VALUE not in str(secret)
    assert VALUE in known_secrets  # remembered for redaction


@pytest.mark.parametrize("value", [None, ""])
def test_an_unset_variable_names_the_place_and_the_variable_only(
    monkeypatch: pytest.MonkeyPatch, known_secrets: set[str], value: str | None
) -> None:
    monkeypatch.setenv("OTHER_PW", VALUE)
    if value is None:
        monkeypatch.delenv("ACME_PW", raising=False)
    else:
        monkeypatch.setenv("ACME_PW", value)

    with pytest.raises(SecretError) as caught:
        parse_ref("${ACME_PW}").resolve(where=WHERE)

    assert isinstance(caught.value, ConfigError)
    assert str(caught.value) == (
        f"{WHERE}: environment variable ACME_PW is not set (export ACME_PW=... in the environment that runs ftpexport)"
    )
    assert VALUE not in str(caught.value)
    assert known_secrets == set()


# --- redact


def test_redact_masks_every_remembered_value(known_secrets: set[str]) -> None:
    remember(VALUE)
    remember("other-secret")

    text = f"login {VALUE} failed; retry with other-secret; {VALUE}!"

    assert redact(text) == f"login {MASK} failed; retry with {MASK}; {MASK}!"
    assert redact("nothing to hide") == "nothing to hide"


def test_redact_masks_the_longest_value_first(known_secrets: set[str]) -> None:
    remember("abcd")
    remember("abcdefgh")

    assert redact("x abcdefgh y abcd") == f"x {MASK} y {MASK}"


def test_very_short_values_are_not_remembered(known_secrets: set[str]) -> None:
    remember("abc")  # masking "abc" everywhere would make every message unreadable

    assert known_secrets == set()
    assert redact("abc") == "abc"


# --- log formatters


def log_record(message: str, *args: Any, exc: BaseException | None = None, **extra: Any) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc else None
    record = logging.LogRecord("ftpexport.test", logging.WARNING, __file__, 1, message, args, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_formatter_writes_one_json_object_a_line(known_secrets: set[str]) -> None:
    record = log_record("uploaded %s\nto %s", "V.zip", "acme/dms", destination="acme/dms", bytes=1234, ok=True)

    line = JsonFormatter().format(record)

    assert "\n" not in line
    document = json.loads(line)
    assert document["message"] == "uploaded V.zip\nto acme/dms"
    assert document["level"] == "warning"
    assert document["logger"] == "ftpexport.test"
    assert (document["destination"], document["bytes"], document["ok"]) == ("acme/dms", 1234, True)
    stamp = datetime.fromisoformat(document["time"])
    assert stamp.utcoffset() is not None
    assert abs(stamp.timestamp() - record.created) < 0.002


def test_json_formatter_turns_other_values_into_text(known_secrets: set[str]) -> None:
    from pathlib import Path

    line = JsonFormatter().format(log_record("x", path=Path("/a/b"), ratio=float("nan"), items=("a", 1)))

    document = json.loads(line, parse_constant=lambda name: pytest.fail(f"not JSON: {name}"))
    assert (document["path"], document["ratio"], document["items"]) == ("/a/b", "nan", ["a", 1])


SECRETS = [
    VALUE,
    'pa"ss\\word',  # JSON escapes quotes and backslashes
    "tab\tand\nnewline",  # and control characters
    "ünïcødé-sécret",
    "quote'single",  # a repr escapes nothing here, but picks other quotes
]


@pytest.mark.parametrize("secret", SECRETS)
def test_json_formatter_masks_secrets_in_message_fields_and_errors(known_secrets: set[str], secret: str) -> None:
    remember(secret)
    record = log_record(
        "login with %s failed",
        secret,
        exc=RuntimeError(f"server said: bad password {secret}"),
        password=secret,
        detail={"nested": [secret, {"deeper": secret}]},
    )

    line = JsonFormatter().format(record)

    document = json.loads(line)
    assert secret not in json.dumps(document, ensure_ascii=False)
    assert secret not in line
    assert document["message"] == f"login with {MASK} failed"
    assert document["password"] == MASK
    assert document["detail"] == {"nested": [MASK, {"deeper": MASK}]}
    assert document["error"] == f"server said: bad password {MASK}"


@pytest.mark.parametrize("secret", SECRETS)
def test_text_formatter_masks_secrets_in_message_fields_and_errors(known_secrets: set[str], secret: str) -> None:
    remember(secret)
    record = log_record(
        "login with %s failed",
        secret,
        exc=RuntimeError(f"bad password {secret}"),
        password=secret,
        detail={"nested": [secret]},
    )

    line = TextFormatter().format(record)

    assert secret not in line
    assert repr(secret)[1:-1] not in line  # not even escaped inside a repr
    assert f"login with {MASK} failed" in line
    assert f"password={MASK}" in line
    assert f"error=bad password {MASK}" in line


def test_text_formatter_layout(known_secrets: set[str]) -> None:
    line = TextFormatter().format(log_record("delivered %s", "V.zip", destination="acme/dms", bytes=10))

    stamp, level, rest = line.split(maxsplit=2)
    assert datetime.fromisoformat(stamp).utcoffset() is not None
    assert level == "WARNING"
    assert rest == "delivered V.zip destination=acme/dms bytes=10"


def test_text_formatter_writes_one_line_of_text(known_secrets: set[str]) -> None:
    # paramiko's own line of a server's disconnect, and an error holding a server's two-line reply
    record = log_record("Disconnect (code 11): \x1b[2Jbye\r\nforged line", exc=RuntimeError("421-a\n421 b"))
    line = TextFormatter().format(record)

    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.endswith("Disconnect (code 11): \\x1b[2Jbye forged line error=421-a 421 b")


@pytest.fixture
def restore_ftpexport_logger() -> Iterator[None]:
    logger = logging.getLogger("ftpexport")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_setup_logging_sends_scrubbed_json_lines(known_secrets: set[str], restore_ftpexport_logger: None) -> None:
    stream = io.StringIO()
    remember(VALUE)

    setup_logging(level=logging.INFO, fmt="json", stream=stream)
    log = logging.getLogger("ftpexport.pipeline")
    log.info("first %s", VALUE, extra={"destination": "acme/dms"})
    log.debug("not shown")
    log.warning("second")

    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == [f"first {MASK}", "second"]
    assert json.loads(lines[0])["destination"] == "acme/dms"
    assert VALUE not in stream.getvalue()
