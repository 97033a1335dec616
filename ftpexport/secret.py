"""Secret references in rule files (``${ENV_VAR}``), resolved late and held as ``SecretStr``.

Every resolved value is remembered so that ``redact()`` can scrub it from any text that leaves
the process (log lines, error messages) even if a library echoed it back to us.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass

from pydantic import SecretStr

from .errors import SecretError

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_STORE_REF = re.compile(r"^\$\{secret:([A-Za-z0-9_.-]+)\}$")

_known: set[str] = set()
_known_lock = threading.Lock()

MASK = "********"


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret: where it lives, never the value."""

    #: the reference as written, e.g. ``${ACME_PASSWORD}``
    text: str
    env_var: str

    def resolve(self, *, where: str) -> SecretStr:
        """The secret's value; ``where`` (rule file and field) goes into the error if it is missing."""
        value = os.environ.get(self.env_var)
        if value is None or value == "":
            raise SecretError(
                f"{where}: environment variable {self.env_var} is not set",
                hint=f"export {self.env_var}=... in the environment that runs ftpexport",
            )
        remember(value)
        return SecretStr(value)

    def __str__(self) -> str:
        return self.text


def parse_ref(text: str) -> SecretRef:
    """Parse ``${ENV_VAR}``; anything else (a literal password above all) is a ValueError."""
    match = _ENV_REF.match(text.strip())
    if match:
        return SecretRef(text=text.strip(), env_var=match.group(1))
    if _STORE_REF.match(text.strip()):
        raise ValueError(
            "${secret:NAME} references need the encrypted secrets store, which this version does not "
            "have yet; use an environment variable reference such as ${ACME_DMS_PASSWORD}"
        )
    raise ValueError(
        "must be a reference like ${ACME_DMS_PASSWORD}, never the secret itself: put the value in "
        "that environment variable and write its name here"
    )


def remember(value: str) -> None:
    """Register a secret value so ``redact`` scrubs it."""
    if len(value) >= 4:
        with _known_lock:
            _known.add(value)


def redact(text: str) -> str:
    """``text`` with every known secret value replaced by a mask."""
    with _known_lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text
