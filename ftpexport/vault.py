"""The encrypted secrets store behind ``${secret:NAME}`` references.

One file holds every secret, encrypted as a whole with Fernet (AES-128-CBC + HMAC-SHA256, from
``cryptography``): nothing of it, not even the names, can be read or altered without the key. The
key comes from a key file that only its owner may read (``FTPEXPORT_SECRETS_KEY_FILE``), or from
the environment variable ``FTPEXPORT_SECRETS_KEY``. Values come out as ``SecretStr`` and are
registered for redaction.

Writes are atomic (temporary file, fsync, rename) and the files are created with mode 0600.
``rotate`` re-encrypts everything under a new key; the old key then opens nothing.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SecretError
from .private import NotRegularFile, private_folder, read_regular
from .secret import remember, secret_str

if TYPE_CHECKING:
    from cryptography.fernet import Fernet
    from pydantic import SecretStr

# cryptography is imported where the store is opened, not with this module: the command line
# names the store's options from here, and `--version` or `status` need no cipher

KEY_ENV = "FTPEXPORT_SECRETS_KEY"
KEY_FILE_ENV = "FTPEXPORT_SECRETS_KEY_FILE"
STORE_ENV = "FTPEXPORT_SECRETS"
DEFAULT_STORE = Path(".ftpexport") / "secrets.enc"
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: the largest secret accepted (a private key is a few KB)
MAX_VALUE_BYTES = 64 * 1024
#: more than a key file ever holds (a key is 44 characters): a bigger file is not read to its end
_KEY_FILE_LIMIT = 4096


@dataclass(frozen=True)
class Entry:
    """What ``list`` shows of a secret: never its value."""

    name: str
    created: str
    updated: str


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def generate_key() -> SecretStr:
    """A new random Fernet key."""
    from cryptography.fernet import Fernet

    return secret_str(Fernet.generate_key().decode())


def check_name(name: str) -> str:
    """``name`` if it can be used as ``${secret:NAME}``; else SecretError."""
    if not NAME.fullmatch(name):
        raise SecretError(f"secret name {name!r} is not allowed", hint="use 1 to 64 letters, digits, '.', '_' or '-'")
    return name


def read_key_file(path: Path) -> SecretStr:
    """The key in ``path``; refused unless it is a regular file (a symbolic link to one is fine, as in
    a Kubernetes secret volume) that neither group nor others can read or write."""
    try:
        data, info = read_regular(path, limit=_KEY_FILE_LIMIT)
    except NotRegularFile as exc:
        raise SecretError(
            f"key file {path} is {exc.kind}, not a regular file",
            hint=f"point {KEY_FILE_ENV} (--secrets-key-file) at the file that holds the key, mode 0600 "
            "(ftpexport secrets init writes one)",
        ) from None
    except OSError as exc:
        raise SecretError(f"cannot read key file {path}: {exc.strerror}") from exc
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(
            f"key file {path} is open to group or others (mode {stat.S_IMODE(info.st_mode):04o})",
            hint=f"chmod 600 {path}",
        )
    if info.st_uid != os.geteuid():
        raise SecretError(
            f"key file {path} belongs to uid {info.st_uid}, not to the user running ftpexport",
            hint="the key file must belong to the service user, with mode 0600",
        )
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    return _valid_key(secret_str(text), f"key file {path}")


def key_file_path(key_file: Path | None = None) -> Path | None:
    """``key_file``, else ``$FTPEXPORT_SECRETS_KEY_FILE``; None when the key comes from the environment."""
    if key_file is not None:
        return key_file
    return Path(os.environ[KEY_FILE_ENV]) if os.environ.get(KEY_FILE_ENV) else None


def load_key(key_file: Path | None = None) -> SecretStr:
    """The store key: ``key_file``, else ``$FTPEXPORT_SECRETS_KEY_FILE``, else ``$FTPEXPORT_SECRETS_KEY``."""
    path = key_file_path(key_file)
    if path is not None:
        return read_key_file(path)
    value = os.environ.get(KEY_ENV)
    if value:
        return _valid_key(secret_str(value.strip()), f"environment variable {KEY_ENV}")
    raise SecretError(
        "no key for the secrets store",
        hint=f"set {KEY_FILE_ENV} to a key file (ftpexport secrets init creates one) or {KEY_ENV} to the key",
    )


def _valid_key(key: SecretStr, where: str) -> SecretStr:
    try:
        _fernet(key)
    except (ValueError, TypeError):
        raise SecretError(f"{where} does not hold a valid key (44 characters of url-safe base64)") from None
    return key


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600 from the first byte (a missing folder: 0700)."""
    private_folder(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


class SecretsStore:
    """The secrets file, opened with its key."""

    def __init__(self, path: Path, key: SecretStr) -> None:
        self.path = path
        self._fernet = _fernet(key)
        self._recover_rotation()

    def __repr__(self) -> str:
        return f"SecretsStore({str(self.path)!r})"

    # --- reading

    def _load(self) -> dict[str, dict[str, Any]]:
        token = _read_store(self.path)
        if token is None:
            return {}
        try:
            plain = self._fernet.decrypt(token)
        except _invalid_token():
            raise SecretError(
                f"cannot open the secrets store {self.path} with this key",
                hint="wrong key (it changes with secrets rotate-key), or the file was altered",
            ) from None
        try:
            document = json.loads(plain)
        except ValueError:
            document = None
        secrets = document.get("secrets") if isinstance(document, dict) else None
        fields = {"value", "created", "updated"}
        if not isinstance(secrets, dict) or not all(
            isinstance(entry, dict) and fields <= entry.keys() and isinstance(entry["value"], str)
            for entry in secrets.values()
        ):
            raise SecretError(f"the secrets store {self.path} is not in the expected format")
        return secrets

    def entries(self) -> list[Entry]:
        """Names and dates, sorted by name; never values."""
        return [Entry(name, e["created"], e["updated"]) for name, e in sorted(self._load().items())]

    def get(self, name: str) -> SecretStr | None:
        """The value of secret ``name``, or None."""
        entry = self._load().get(name)
        if entry is None:
            return None
        value: str = entry["value"]
        remember(value)
        return secret_str(value)

    # --- writing

    def create(self) -> None:
        """Write an empty store."""
        self._save({}, self._fernet, self.path)

    def set(self, name: str, value: SecretStr) -> bool:
        """Store ``value`` under ``name``; True when it replaced an existing secret."""
        check_name(name)
        text = value.get_secret_value()
        if not text:
            raise SecretError(f"secret {name}: the value is empty")
        if len(text.encode()) > MAX_VALUE_BYTES:
            raise SecretError(f"secret {name}: the value is over {MAX_VALUE_BYTES // 1024} KB")
        remember(text)
        secrets = self._load()
        stamp = now()
        existed = name in secrets
        created = secrets[name]["created"] if existed else stamp
        secrets[name] = {"value": text, "created": created, "updated": stamp}
        self._save(secrets, self._fernet, self.path)
        return existed

    def remove(self, name: str) -> bool:
        """Delete secret ``name``; False when there was none."""
        secrets = self._load()
        if secrets.pop(name, None) is None:
            return False
        self._save(secrets, self._fernet, self.path)
        return True

    def rotate(self, new_key: SecretStr, key_file: Path | None) -> None:
        """Re-encrypt every secret under ``new_key``; write it to ``key_file`` when given.

        Crash-safe: the store under the new key is written beside the old one first, then the key
        file, then the store is renamed into place; opening the store finishes a rotation that a
        crash interrupted between the last two steps.
        """
        secrets = self._load()
        fernet = _fernet(new_key)
        self._save(secrets, fernet, self._pending())
        if key_file is not None:
            write_private(key_file, new_key.get_secret_value().encode() + b"\n")
        os.replace(self._pending(), self.path)
        self._fernet = fernet

    def _pending(self) -> Path:
        return self.path.with_name(self.path.name + ".rotating")

    def _recover_rotation(self) -> None:
        pending = self._pending()
        token = _read_store(pending)
        if token is None:
            return
        try:
            self._fernet.decrypt(token)
        except _invalid_token():
            return  # a rotation that did not reach the key file: the old store is still the one
        os.replace(pending, self.path)

    @staticmethod
    def _save(secrets: dict[str, dict[str, Any]], fernet: Fernet, path: Path) -> None:
        document = json.dumps({"version": 1, "secrets": secrets}, sort_keys=True).encode()
        write_private(path, fernet.encrypt(document))


def _read_store(path: Path) -> bytes | None:
    """The bytes of a store file, None when there is none; refused unless it is a regular file."""
    try:
        return read_regular(path)[0]
    except FileNotFoundError:
        return None
    except NotRegularFile as exc:
        raise SecretError(
            f"the secrets store {path} is {exc.kind}, not a regular file",
            hint=f"point {STORE_ENV} (--secrets) at the store file, or at a path where secrets init can create one",
        ) from None
    except OSError as exc:
        raise SecretError(f"cannot read the secrets store {path}: {exc.strerror}") from exc


def open_store(path: Path | None = None, key_file: Path | None = None) -> SecretsStore:
    """The store at ``path`` (else ``$FTPEXPORT_SECRETS``, else ``.ftpexport/secrets.enc``) with its key."""
    return SecretsStore(store_path(path), load_key(key_file))


def store_path(path: Path | None = None) -> Path:
    """``path``, else ``$FTPEXPORT_SECRETS``, else ``.ftpexport/secrets.enc``."""
    if path is not None:
        return path
    return Path(os.environ[STORE_ENV]) if os.environ.get(STORE_ENV) else DEFAULT_STORE


class LazyStore:
    """The store, opened on first use: rules that only use ``${ENV}`` references need no key."""

    def __init__(self, path: Path | None = None, key_file: Path | None = None) -> None:
        self.path = path
        self.key_file = key_file
        self._store: SecretsStore | None = None

    def __repr__(self) -> str:
        return f"LazyStore({str(self.path)!r})"

    def get(self, name: str) -> SecretStr | None:
        if self._store is None:
            self._store = open_store(self.path, self.key_file)
            return self._store.get(name)
        try:
            return self._store.get(name)
        except SecretError:
            # the key may have been rotated since we opened the store: read the key again, once
            self._store = open_store(self.path, self.key_file)
            return self._store.get(name)

    @property
    def location(self) -> str:
        return str(self._store.path if self._store else store_path(self.path))


def _fernet(key: SecretStr) -> Fernet:
    from cryptography.fernet import Fernet

    return Fernet(key.get_secret_value().encode())


def _invalid_token() -> type[Exception]:
    from cryptography.fernet import InvalidToken

    return InvalidToken
