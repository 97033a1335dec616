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


def _stderr(level: int, fmt: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(level), fmt],
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
