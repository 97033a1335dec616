"""Secret references in rule files (``${ENV_VAR}``, ``${secret:NAME}``), resolved late, held as ``SecretStr``.

Every resolved value is remembered so that ``redact()`` can scrub it from any text that leaves
the process (log lines, error messages) even if a library echoed it back to us.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .errors import SecretError, printable

if TYPE_CHECKING:
    from pydantic import SecretStr

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_STORE_REF = re.compile(r"^\$\{secret:([A-Za-z0-9_.-]{1,64})\}$")

_known: set[str] = set()
_known_lock = threading.Lock()

MASK = "********"


class SecretSource(Protocol):
    """Where ``${secret:NAME}`` values come from (``vault.SecretsStore``)."""

    location: str

    def get(self, name: str) -> SecretStr | None: ...


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret: where it lives, never the value."""

    #: the reference as written, e.g. ``${ACME_PASSWORD}`` or ``${secret:acme-dms}``
    text: str
    #: the environment variable, for ``${VAR}``
    env_var: str | None = None
    #: the secret's name in the encrypted store, for ``${secret:NAME}``
    store_name: str | None = None

    def resolve(self, *, where: str, store: SecretSource | None = None) -> SecretStr:
        """The secret's value; ``where`` (rule file and field) goes into the error if it is missing."""
        if self.store_name is not None:
            return self._from_store(where, store)
        assert self.env_var is not None
        value = os.environ.get(self.env_var)
        if value is None or value == "":
            raise SecretError(
                f"{where}: environment variable {self.env_var} is not set",
                hint=f"export {self.env_var}=... in the environment that runs ftpexport",
            )
        remember(value)
        return secret_str(value)

    def _from_store(self, where: str, store: SecretSource | None) -> SecretStr:
        if store is None:
            raise SecretError(f"{where}: {self.text} needs the secrets store, and none is configured")
        try:
            value = store.get(self.store_name or "")
        except SecretError as exc:
            raise SecretError(f"{where}: {self.text}: {exc.message}", hint=exc.hint) from None
        if value is None:
            raise SecretError(
                f"{where}: secret {self.store_name!r} is not in the secrets store {store.location}",
                hint=f"store it with: ftpexport secrets set {self.store_name}",
            )
        return value

    def __str__(self) -> str:
        return self.text


def parse_ref(text: str) -> SecretRef:
    """Parse ``${ENV_VAR}`` or ``${secret:NAME}``; anything else (a literal password above all) is a ValueError."""
    stripped = text.strip()
    match = _ENV_REF.fullmatch(stripped)
    if match:
        return SecretRef(text=stripped, env_var=match.group(1))
    match = _STORE_REF.fullmatch(stripped)
    if match:
        return SecretRef(text=stripped, store_name=match.group(1))
    raise ValueError(
        "must be a reference, never the secret itself: store the value with `ftpexport secrets set NAME` "
        "(it reads it from a prompt or stdin) and write ${secret:NAME}, or put it in an environment "
        "variable and write ${VARIABLE}"
    )


def remember(value: str) -> None:
    """Register a secret value so ``redact`` scrubs it, also as an error shows it (``printable``: a
    control character in it as its escape, its lines joined)."""
    if len(value) >= 4:
        with _known_lock:
            _known.update({value, printable(value), printable(value, one_line=True)})


def redact(text: str) -> str:
    """``text`` with every known secret value replaced by a mask."""
    with _known_lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def secret_str(value: str) -> SecretStr:
    """``value`` as a ``SecretStr`` (pydantic is imported on first use: `--version` and the reading
    commands start without it)."""
    from pydantic import SecretStr

    return SecretStr(value)
