"""The exception tree of ftpexport: every failure a user can meet is one of these.

    FtpexportError                 what went wrong, where, and what to do (``str(err)``)
    ├── ConfigError                bad options or rule files: exit code 2, nothing is sent
    │   ├── RuleError              one rule file: names the file, the field and the reason
    │   └── SecretError            a secret reference that cannot be resolved
    ├── StateError                 the state folder cannot be written (full disk, read-only, I/O
    │                              error): exit code 1, nothing is lost, the next run goes on
    ├── ClaimLostError             a shared ledger gave this process's delivery to another host
    ├── RecordError                one broken inbox record: names the folder and the reason
    │   ├── NamingError            a template that renders a name that is not allowed
    │   └── RecordChangedError     a file of the record changed after it was read: read it again
    └── TransportError             talking to a server failed: names the destination and path
        ├── TransientError         worth retrying: refused/reset connections, timeouts, 4xx replies
        │   └── TooManySessionsError  the server refused one more session (421 / SSH disconnect 12)
        └── PermanentError         retrying will not help until someone changes something
            ├── AuthenticationError   login refused
            ├── HostKeyError          SFTP host key unknown or changed
            ├── TLSError              certificate or protocol version refused
            └── RemoteExistsError     the final name exists and ``if_exists: fail``

Messages never contain secrets: build them from names and paths, never from credentials.
Messages show only text: a character that is not printable (a server's terminal escape, a bidi
control, a CR) is kept as its escape (``printable``), and a ``TransportError``, which carries a
server's words, is one line. This module imports nothing of ours.
"""

from __future__ import annotations


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` as it is safe to show on a terminal and in a log line: each character that is not
    printable (an escape sequence a server sent, a bell, a bidi control, a CR) kept as its escape
    (``\\x1b``, ``\\u202e``); newlines kept, or with ``one_line`` the lines joined by a space (a
    multi-line FTP reply)."""
    if text.isprintable():  # the common case, at once (a transcript's every line comes here)
        return text
    if one_line:
        text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return "".join(_escaped(char) for char in text)


def printable_name(name: str) -> str:
    """A name from the input (a record's folder, a file) as text on one line: each character that is
    not printable, a newline too, kept as its escape (``veh\\x0a1``)."""
    if name.isprintable():
        return name
    return "".join(char if char.isprintable() else _escape(char) for char in name)


def _escaped(char: str) -> str:
    return char if char == "\n" or char.isprintable() else _escape(char)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class FtpexportError(Exception):
    """Base of every error ftpexport reports to a user (one line, no traceback)."""

    #: process exit code when this error ends a command
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = printable(message)
        super().__init__(message)
        self.message = message
        self.hint = None if hint is None else printable(hint)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(FtpexportError):
    """Options or rule files are wrong: nothing can be sent until they are fixed."""

    exit_code = 2


class RuleError(ConfigError):
    """One problem in one rule file, located by file and field."""

    def __init__(self, file: str, field: str | None, reason: str, *, hint: str | None = None) -> None:
        self.file = file
        self.field = field
        self.reason = reason
        where = f"{printable_name(file)}: {field}" if field else printable_name(file)
        super().__init__(f"{where}: {reason}", hint=hint)


class SecretError(ConfigError):
    """A secret reference that cannot be resolved (for example an unset environment variable)."""


class StateError(FtpexportError):
    """The ledger or the spool under the state folder cannot be written: a full disk, a read-only
    file system, an I/O error. Deliveries not recorded as done stay pending (or their records stay
    in the inbox): free space and start again."""


class ClaimLostError(FtpexportError):
    """A shared ledger (PostgreSQL) no longer has this process holding a delivery: its lease ran out
    (the heartbeat could not reach the database in time) and another host may have taken it over.
    The attempt stops before its rename; the delivery is the other host's now."""


class RecordError(FtpexportError):
    """A broken inbox record; the other records go on."""

    def __init__(self, path: str, reason: str, *, hint: str | None = None) -> None:
        self.path = path
        self.reason = reason
        # one line: the folder's name as text, the reason's lines joined
        super().__init__(f"{printable_name(path)}: {printable(reason, one_line=True)}", hint=hint)


class NamingError(RecordError):
    """A template rendered a name that cannot be used on a server."""


class RecordChangedError(RecordError):
    """A file of the record is not the one that was read (replaced, or written since).

    Not the record's fault: its deliveries stay pending and the record is read again.
    """


class TransportError(FtpexportError):
    """A server conversation failed. ``retriable`` says whether trying again may help."""

    retriable = False

    def __init__(
        self,
        message: str,
        *,
        destination: str | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.destination = destination
        self.path = path
        message = printable(message, one_line=True)  # a server's words: one line of text
        self.detail = message
        super().__init__(message, hint=hint)

    def located(self, *, destination: str | None = None, path: str | None = None) -> TransportError:
        """Fill in the destination and remote path if they are not known yet; returns self."""
        if self.destination is None:
            self.destination = destination
        if self.path is None:
            self.path = path
        return self

    def __str__(self) -> str:
        if self.destination:
            return f"destination {self.destination}: {self.reason}"
        return self.reason

    @property
    def reason(self) -> str:
        """The message without the destination, for places that show the destination already."""
        text = f"remote path {self.path}: {self.detail}" if self.path else self.detail
        return f"{text} ({self.hint})" if self.hint else text


class TransientError(TransportError):
    """A failure that may go away by itself: try again later."""

    retriable = True


class TooManySessionsError(TransientError):
    """The server refused one more session (421 too many connections, or an SSH disconnect for too
    many connections): fewer connections will do."""

    #: how many sessions of ours the server may have counted when it refused this one (open, or
    #: connecting meanwhile; set by the pool); more than 0: a limit of the server's, which caps the
    #: destination, not a failure of the server
    sessions_open = 0


#: what to do about a ``TooManySessionsError``
TOO_MANY_HINT = "the delivery is retried on fewer connections: lower max_connections for this destination"


class PermanentError(TransportError):
    """A failure that needs a change on one side (credentials, permissions, configuration)."""


class AuthenticationError(PermanentError):
    """The server refused the user name and password or key."""


class HostKeyError(PermanentError):
    """The SFTP server's host key is not the pinned one."""


class TLSError(PermanentError):
    """The TLS handshake failed: untrusted certificate, wrong host name or old protocol."""


class RemoteExistsError(PermanentError):
    """The final remote name exists already and the rule says ``if_exists: fail``."""
