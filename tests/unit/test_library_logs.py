"""logs.py: what paramiko logs reaches stderr only as ftpexport's own debug lines, tracebacks left out.

paramiko's transport thread logs a failed handshake at ERROR ("Exception (client): Error reading SSH
protocol banner") and then the traceback, one ERROR record per line. Each test runs a fresh
interpreter (so no test framework's log handler hides where Python would print them) that sets up
logging like the CLI and logs exactly that through paramiko's logger.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from paths import ROOT

SCRIPT = """
import logging, socket, sys
import paramiko.util
from ftpexport.logs import setup_logging

setup_logging(level=int(sys.argv[1]), fmt=sys.argv[2])
log = paramiko.util.get_logger("paramiko.transport")
log.debug("starting thread (client mode): 0x1")
try:
    try:
        raise socket.timeout()
    except socket.timeout:
        raise paramiko.SSHException("Error reading SSH protocol banner")
except paramiko.SSHException as exc:
    log.error("Exception (client): %s", exc)
    for line in paramiko.util.tb_strings():  # as paramiko's Transport.run does
        log.error(line)
log.debug("EOF in transport thread")
logging.getLogger("ftpexport.test").debug("ours")
"""


def _stderr(level: int, fmt: str, script: str = SCRIPT) -> str:
    """What ``script`` (SCRIPT: paramiko's failed handshake) prints to stderr, logging set up at ``level``."""
    result = subprocess.run(
        [sys.executable, "-c", script, str(level), fmt],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return result.stderr


@pytest.mark.parametrize("level", [30, 20])
def test_below_debug_nothing_of_the_library_reaches_stderr(level: int) -> None:
    assert _stderr(level, "text") == ""


def test_at_debug_the_library_lines_are_ours_in_json_without_the_traceback() -> None:
    lines = _stderr(10, "json").splitlines()

    documents = [json.loads(line) for line in lines]
    assert [(d["level"], d["logger"], d["message"]) for d in documents] == [
        ("debug", "paramiko.transport", "starting thread (client mode): 0x1"),
        ("debug", "paramiko.transport", "Exception (client): Error reading SSH protocol banner"),
        ("debug", "paramiko.transport", "EOF in transport thread"),
        ("debug", "ftpexport.test", "ours"),
    ]


def test_at_debug_in_text_there_is_no_traceback_either() -> None:
    stderr = _stderr(10, "text")

    assert "Traceback" not in stderr and "File " not in stderr and "TimeoutError" not in stderr
    assert "DEBUG   Exception (client): Error reading SSH protocol banner" in stderr


WARNING_SCRIPT = """
import logging, sys, threading, warnings
from ftpexport.logs import setup_logging

setup_logging(level=int(sys.argv[1]), fmt=sys.argv[2])

def observer():  # as watchdog's inotify emitter thread warns when it watches a folder twice
    warnings.warn_explicit(
        "Callback with id '1' already exists for watch <Watch(wd=2)>. It will be Overwritten.",
        RuntimeWarning, "/site-packages/watchdog/observers/inotify.py", 365, module="watchdog.observers.inotify",
    )

thread = threading.Thread(target=observer)
thread.start()
thread.join()
logging.getLogger("ftpexport.test").warning("ours")
"""


def _warning_stderr(level: int, fmt: str) -> str:
    return _stderr(level, fmt, WARNING_SCRIPT)


def test_a_library_warning_is_not_printed_in_the_middle_of_the_logs() -> None:
    text = _warning_stderr(30, "text").splitlines()
    assert len(text) == 1 and text[0].endswith(" WARNING ours")
    lines = _warning_stderr(30, "json").splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["ours"]


def test_at_debug_a_library_warning_is_one_json_line_of_ours() -> None:
    documents = [json.loads(line) for line in _warning_stderr(10, "json").splitlines()]

    assert [(d["level"], d["logger"]) for d in documents] == [("debug", "py.warnings"), ("warning", "ftpexport.test")]
    assert "RuntimeWarning: Callback with id '1' already exists" in documents[0]["message"]
