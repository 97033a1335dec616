"""The daemon's rules kept fresh: reloaded when a rule file changes; a broken file keeps the last good
version of that client's rules."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import ConfigError
from .load import RuleSet, load_rules

#: the daemon's log, as when the reloader lived in watch.py (operators filter on it)
log = logging.getLogger("ftpexport.watch")


class RulesReloader:
    """Keeps a RuleSet fresh: reloads when a rule file changes; a broken file keeps the last good rules."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stamp = self._fingerprint()
        self.ruleset = load_rules(directory)

    def _fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        try:
            entries = sorted(os.scandir(self.directory), key=lambda e: e.name)
        except OSError:
            return ()
        return tuple((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries if e.is_file())

    def current(self) -> RuleSet:
        stamp = self._fingerprint()
        if stamp == self._stamp:
            return self.ruleset
        self._stamp = stamp
        try:
            fresh = load_rules(self.directory)
        except ConfigError as exc:
            log.error("rules folder unreadable, keeping the last good rules: %s", exc)
            return self.ruleset
        for client_id, errors in fresh.errors.items():
            if client_id in self.ruleset.clients:
                fresh.clients[client_id] = self.ruleset.clients[client_id]
                fresh.sources[client_id] = self.ruleset.sources[client_id]
            for error in errors:
                log.error("rule file refused, keeping the last good version: %s", error)
        log.info("rules reloaded", extra={"clients": len(fresh.clients)})
        self.ruleset = fresh
        return fresh
