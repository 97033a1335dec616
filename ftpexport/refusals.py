"""Refused records: the record folders the exporter could not take, kept in the ledger until fixed or gone.

A record is refused when its ``vehicle.json`` or its images are not valid (kind ``record``), when
no rules send it anywhere (``rules``: no rule file, a broken one, no destination), or when a
template renders a name that cannot be used (``naming``). ``run`` prints them at the end; the
ledger keeps them, so ``status``, ``status --json`` and the metrics show them to the operator of a
daemon too. A folder leaves the list as soon as it is accepted (from then on its deliveries tell
its story), or when its ``vehicle.json`` is gone.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .errors import RecordError
from .ledger import Ledger, RefusalKind
from .record import RECORD_FILE, Record
from .rules import RuleSet
from .secret import redact


class Refusals:
    """The refused record folders of a ledger, with the set of their paths kept in memory so that
    accepting a record that never was refused costs no write."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._lock = threading.Lock()
        self._paths = {row["record_path"] for row in ledger.refused()}

    def refuse(
        self, folder: Path, error: RecordError, kind: RefusalKind, record: Record | None, ruleset: RuleSet
    ) -> None:
        """Keep the refusal of ``folder``: what is known of the record, the reason, the rule file."""
        client_id = record.client_id if record is not None else None
        reason = error.reason + (f" ({error.hint})" if error.hint else "")
        self.ledger.refuse(
            str(folder),
            kind=kind,
            reason=redact(reason),
            record_id=record.id if record is not None else None,
            client_id=client_id,
            rule_file=rule_file(ruleset, client_id) if kind != "record" else None,
        )
        with self._lock:
            self._paths.add(str(folder))

    def accepted(self, folder: Path) -> None:
        """``folder`` was taken: its refusal, if any, is over."""
        path = str(folder)
        with self._lock:
            if path not in self._paths:
                return
        self.ledger.clear_refused(path)
        with self._lock:
            self._paths.discard(path)

    def forget_vanished(self) -> list[str]:
        """Forget the refused folders whose ``vehicle.json`` is gone; returns them."""
        with self._lock:
            paths = sorted(self._paths)
        gone = [path for path in paths if not (Path(path) / RECORD_FILE).is_file()]
        for path in gone:
            self.ledger.clear_refused(path)
            with self._lock:
                self._paths.discard(path)
        return gone


def rule_file(ruleset: RuleSet, client_id: str | None) -> str | None:
    """The rule file of a client, valid or broken; None when the client has none."""
    if client_id is None:
        return None
    if client_id in ruleset.sources:
        return str(ruleset.sources[client_id])
    errors = ruleset.errors.get(client_id)
    return errors[0].file if errors else None
