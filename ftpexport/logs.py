"""Logging setup: text or one JSON object a line, structured fields, secrets scrubbed last."""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from .errors import ConfigError, printable
from .private import create_private, private_folder
from .secret import redact

#: attributes every LogRecord has; anything else was passed with ``extra=`` and is a field
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a log record (what was passed with ``extra=``)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _scrub(value: Any) -> Any:
    """``value`` with known secrets masked in every string, before it is serialized: once in JSON
    (or a repr), a secret holding a quote, a backslash or a control character is escaped and
    ``redact`` on the finished line would no longer find it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_scrub(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and Infinity are not JSON
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info and record.exc_info[1] is not None:
            document["error"] = str(record.exc_info[1])
        return redact(json.dumps(_scrub(document), ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``time level message key=value ...`` for people: one line of text (what a library or a server
    put in it, a newline or an escape sequence, shown as text: ``errors.printable``)."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={_scrub(v)}" for k, v in fields_of(record).items())
        line = f"{_timestamp(record)} {record.levelname:<7} {redact(record.getMessage())}"
        if extras:
            line = f"{line} {extras}"
        if record.exc_info and record.exc_info[1] is not None:
            line = f"{line} error={record.exc_info[1]}"
        return redact(printable(redact(line), one_line=True))


class _Stderr:
    """``sys.stderr`` as it is at each write: a live progress display swaps it to print log lines above itself."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _LogFile(logging.FileHandler):
    """A log file that says once on stderr that it cannot be written (a full disk), not a traceback a line."""

    _told = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self._told:
            self._told = True
            sys.stderr.write(f"ftpexport: cannot write the log file {self.baseFilename}: {sys.exc_info()[1]}; "
                             "log lines are lost until it can be written again\n")  # fmt: skip


def _log_file(path: Path) -> logging.Handler:
    """The handler of ``--log-file``; a new file is created 0600 and a missing folder 0700 (an existing
    file keeps its mode, which its owner may have opened to a log collector)."""
    try:
        private_folder(path.parent)
        create_private(path, narrow_existing=False)
        return _LogFile(path, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open the log file: {exc.strerror or exc}", hint="check --log-file") from exc


def setup_logging(
    *, level: int = logging.WARNING, fmt: str = "text", file: Path | None = None, stream: TextIO | None = None
) -> None:
    """Send ftpexport's logs to ``file`` (or stderr) as text or JSON."""
    handler: logging.Handler = _log_file(file) if file else logging.StreamHandler(stream or _Stderr())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger = logging.getLogger("ftpexport")
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    logging.captureWarnings(True)  # a library's warnings.warn() is a log record of "py.warnings", placed below
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        for old in list(library.handlers):
            library.removeHandler(old)
        library.addHandler(LibraryHandler(logger))
        library.setLevel(logging.DEBUG if level <= logging.DEBUG else logging.CRITICAL + 1)
        library.propagate = False


#: libraries whose logs are ours to place: paramiko logs a failed handshake at ERROR, with the
#: traceback of an expected failure (no banner, refused algorithms) as twenty more ERROR lines; and
#: the libraries' Python warnings, which would otherwise be printed to stderr as two lines of text in
#: the middle of JSON logs (watchdog warns when it watches a new folder twice, which is harmless)
LIBRARY_LOGGERS = ("paramiko", "py.warnings")


class LibraryHandler(logging.Handler):
    """A library's log records as ftpexport debug lines (its errors are reported as ours), tracebacks left out.

    The library's records never reach stderr by themselves: with ``-vv`` they come out in ftpexport's
    format (JSON with ``--log-format json``), at debug level; otherwise not at all. paramiko logs a
    traceback one line per record: those lines, from ``Traceback (most recent call last):`` to the
    exception line that ends it, are dropped.
    """

    _CHAIN = ("During handling of the above exception", "The above exception was the direct cause")

    def __init__(self, target: logging.Logger) -> None:
        super().__init__(logging.DEBUG)
        self.target = target
        self._in_traceback: set[int | None] = set()
        self._state_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if self._traceback_line(record) or not self.target.isEnabledFor(logging.DEBUG):
            return
        line = copy.copy(record)
        line.levelno, line.levelname = logging.DEBUG, "DEBUG"
        line.exc_info = line.exc_text = line.stack_info = None
        self.target.handle(line)

    def _traceback_line(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a library's broken format string: not worth a line
            return True
        with self._state_lock:
            if text.startswith("Traceback (most recent call last)") or text.startswith(self._CHAIN):
                self._in_traceback.add(record.thread)
                return True
            if not text.strip():
                return True
            if record.thread in self._in_traceback:
                if not text.startswith(" "):
                    self._in_traceback.discard(record.thread)  # "SomeError: text" ends the traceback
                return True
        return False
