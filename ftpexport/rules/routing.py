"""Routing: the destinations a record goes to (the user's own beat the client's)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, RecordError
from ..record import Record
from .load import RuleSet
from .model import ClientRules, FTPDestination, SFTPDestination


@dataclass(frozen=True)
class Route:
    """One destination that one record goes to."""

    client: ClientRules
    destination: FTPDestination | SFTPDestination
    #: the user whose own destination this is; None for a client-level destination
    user_id: str | None = None

    @property
    def key(self) -> str:
        """A stable name for the destination, e.g. ``acme-motors/dms`` or ``acme-motors/users/u-42/own``."""
        if self.user_id is None:
            return f"{self.client.client_id}/{self.destination.name}"
        return f"{self.client.client_id}/users/{self.user_id}/{self.destination.name}"


def routes_for(ruleset: RuleSet, record: Record) -> list[Route]:
    """The destinations of ``record``: the user's own if the user has some, else the client's."""
    client_id = record.client_id
    rules = ruleset.clients.get(client_id)
    if rules is None:
        if client_id in ruleset.errors:
            raise RecordError(
                str(record.folder),
                f"the rule file of client {client_id!r} has errors",
                hint=f"run: ftpexport check {ruleset.directory}",
            )
        raise RecordError(
            str(record.folder),
            f"no rule file for client {client_id!r} in {ruleset.directory}",
            hint=f"add {ruleset.directory / (client_id + '.yaml')}",
        )
    user_id = record.user_id
    if user_id is not None and user_id in rules.users:
        return [Route(rules, d, user_id) for d in rules.users[user_id].destinations]
    if not rules.destinations:
        raise RecordError(
            str(record.folder),
            f"client {client_id!r} has no client-level destination and user {user_id!r} has none of their own",
            hint=f"add destinations to {ruleset.source(client_id)}",
        )
    return [Route(rules, d) for d in rules.destinations]


def client_routes(ruleset: RuleSet, client_id: str, user_id: str | None = None) -> list[Route]:
    """The destinations of a client, or of one of its users; raises ``ConfigError`` naming what is missing."""
    rules = ruleset.clients.get(client_id)
    if rules is None:
        if client_id in ruleset.errors:
            raise ConfigError(
                f"the rule file of client {client_id!r} has errors", hint=f"run: ftpexport check {ruleset.directory}"
            )
        raise ConfigError(f"no rule file for client {client_id!r} in {ruleset.directory}")
    if user_id is None:
        if not rules.destinations:
            raise ConfigError(f"{ruleset.source(client_id)}: client {client_id!r} has no client-level destination")
        return [Route(rules, d) for d in rules.destinations]
    if user_id not in rules.users:
        raise ConfigError(
            f"{ruleset.source(client_id)}: user {user_id!r} has no destination of their own",
            hint="their records go to the client's destinations; test those without --user",
        )
    return [Route(rules, d, user_id) for d in rules.users[user_id].destinations]
