"""Intake: which records of a batch need sending, and what is settled already.

For each record folder: is it complete; is it unchanged since all its deliveries were done under
the same rules (the ledger's seen cache: then it is not even read); else read it, route it and plan
its names (a refusal is logged, counted and kept in the ledger); then ask the ledger about each of
its deliveries: done (``unchanged``) and parked (``parked``) ones are settled outcomes, the rest is
what the exporter queues.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from .errors import RecordError
from .events import Observer, Outcome, OutcomeResult, Summary
from .ledger import Delivery, Ledger, RefusalKind
from .plan import FileOptions, Plan, file_policy, plan_record, zipped
from .record import Record, folder_signature, is_complete, load_record
from .recordfiles import FilePolicy
from .refusals import Refusals
from .rules import Route, RuleSet, routes_for

log = logging.getLogger(__name__)

#: a record to send: its plan, the (route, remote folder) still to deliver, the ids of its deliveries done
Prepared = tuple[Plan, list[tuple[Route, str]], list[int]]


class Intake:
    """Reads, plans and checks record folders against the ledger for an exporter."""

    def __init__(self, ledger: Ledger, refusals: Refusals, events: Observer, options: FileOptions) -> None:
        self.ledger = ledger
        self.refusals = refusals
        self.events = events
        self.options = options
        #: the FilePolicy of the rule set it was made for (the rules name SFTP key files)
        self._policy: tuple[RuleSet, FilePolicy] | None = None

    def prepare(self, folder: Path, ruleset: RuleSet, summary: Summary) -> Prepared | None:
        """Load and plan one record: (plan, routes still to send, ids of its deliveries done), or None
        when nothing is left to send (errors, unchanged and parked deliveries go to ``summary``)."""
        if not is_complete(folder):
            summary.incomplete.append(folder)
            return None
        # taken before reading: a file changed while we read it changes the signature for next time
        signature = folder_signature(folder) if ruleset.fingerprint else None
        if signature is not None and self._unchanged(folder, signature, ruleset, summary):
            self.refusals.accepted(folder)
            return None
        record: Record | None = None
        kind: RefusalKind = "record"
        try:
            record = load_record(folder, self._file_policy(ruleset), crc=lambda data: zipped(ruleset, data))
            kind = "rules"
            routes = routes_for(ruleset, record)
            kind = "naming"
            plan = plan_record(record, ruleset, routes)
        except RecordError as exc:
            log.warning("record refused: %s", exc, extra={"record_path": str(folder), "kind": kind})
            summary.record_errors.append(exc)
            self.events.refused(str(folder), record.client_id if record is not None else None, kind)
            self.refusals.refuse(folder, exc, kind, record, ruleset)
            return None
        self.refusals.accepted(folder)
        if signature is not None and record.flat:
            plan = replace(plan, signature=signature)
        pending, done, parked = [], [], False
        for route, remote_dir in plan.routes:
            known = self.ledger.find(record.id, record.content_hash, route.key)
            if known is not None and known.status in ("delivered", "failed"):
                self._settled(folder, known, summary)
                done.append(known.id)
                parked = parked or known.status == "failed"
            else:
                pending.append((route, remote_dir))
        if not pending:
            if plan.signature is not None and not parked:
                self.ledger.mark_seen(str(folder), plan.signature, ruleset.fingerprint, done)
            return None
        return plan, pending, done

    def _file_policy(self, ruleset: RuleSet) -> FilePolicy:
        if self._policy is None or self._policy[0] is not ruleset:
            options = self.options
            policy = file_policy(ruleset, allow_hardlinks=options.allow_hardlinks, protected=options.protected)
            self._policy = (ruleset, policy)
        return self._policy[1]

    def _unchanged(self, folder: Path, signature: str, ruleset: RuleSet, summary: Summary) -> bool:
        """The folder is as it was when all its deliveries were done, under the same rules, and they
        still are: count them unchanged without reading the record again."""
        seen = self.ledger.seen(str(folder))
        if seen is None or (seen.signature, seen.rules) != (signature, ruleset.fingerprint):
            return False
        deliveries = self.ledger.by_ids(seen.delivery_ids)
        if len(deliveries) != len(seen.delivery_ids) or any(d.status != "delivered" for d in deliveries):
            return False  # one was requeued or replaced since: read the record again
        for known in deliveries:
            self._settled(folder, known, summary)
        return True

    def _settled(self, folder: Path, known: Delivery, summary: Summary) -> None:
        """An outcome for a delivery the ledger has done (``unchanged``) or parked (``parked``)."""
        result: OutcomeResult = "unchanged" if known.status == "delivered" else "parked"
        outcome = Outcome(
            known.record_id, str(folder), known.client_id, known.destination, result,
            remote_paths=known.remote_paths, bytes=known.bytes, error=known.last_error,
            attempts=known.attempts, vin=known.vin, user_id=known.user_id, delivery_id=known.id,
        )  # fmt: skip
        summary.outcomes.append(outcome)
        self.events.outcome(outcome)
