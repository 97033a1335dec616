"""Planning: a record -> its routes -> the names of its files and the remote folder at each destination.

Everything here is decided before any connection: ``plan_record`` renders every name of a record for
its destinations (raising ``NamingError`` for one that cannot be written there), ``make_package``
builds its files, ``endpoint_for`` turns a route into a transport endpoint, resolving its secrets at
the last moment, and ``preview_record`` shows all of it for one record without any network.
"""

from __future__ import annotations

import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr

from .package import Package, PackageNames, build_package, refuse_unportable, render_names, template_context
from .record import Record, VehicleData, load_record
from .recordfiles import FilePolicy
from .rules import ClientRules, Route, RuleSet, SFTPDestination, routes_for
from .secret import SecretSource
from .transport import Endpoint


@dataclass(frozen=True)
class Plan:
    """A record ready to send: its names and the remote folder at each destination."""

    record: Record
    rules: ClientRules
    source: str
    names: PackageNames
    routes: tuple[tuple[Route, str], ...]
    #: ``folder_signature`` of the record folder taken before it was read; None: not to be remembered
    signature: str | None = None


def endpoint_for(route: Route, source: str, store: SecretSource | None = None) -> Endpoint:
    """The transport endpoint of a route; secrets are resolved here, at the last moment."""
    destination = route.destination
    where = f"{source}: destination {destination.name}"

    def resolve(field_name: str) -> SecretStr | None:
        ref = getattr(destination, field_name, None)
        return ref.resolve(where=f"{where}: {field_name}", store=store) if ref is not None else None

    common = {
        "scheme": destination.scheme,
        "host": destination.host,
        "port": destination.port,
        "username": destination.username,
        "password": resolve("password"),
        "timeout": destination.timeout,
        "label": route.key,
    }
    if isinstance(destination, SFTPDestination):
        return Endpoint(
            **common,  # type: ignore[arg-type]
            host_keys=tuple(destination.host_key or ()),
            known_hosts=destination.known_hosts,
            key_file=destination.key_file,
            private_key=resolve("private_key"),
            key_passphrase=resolve("key_passphrase"),
            ssh_legacy_algorithms=tuple(destination.ssh_legacy_algorithms),
        )
    return Endpoint(
        **common,  # type: ignore[arg-type]
        ca_file=destination.ca_file,
        passive=destination.passive,
        client_cert=destination.client_cert,
        client_key_file=destination.client_key_file,
        client_key=resolve("client_key"),
        client_key_passphrase=resolve("client_key_passphrase"),
    )


def file_policy(ruleset: RuleSet, *, allow_hardlinks: bool, protected: tuple[tuple[Path, str], ...]) -> FilePolicy:
    """What records may deliver: ``protected``, the SFTP key files and the FTPS client key files of the
    rules are never sent."""
    keys = []
    for rules in ruleset.clients.values():
        destinations = [*rules.destinations, *(d for user in rules.users.values() for d in user.destinations)]
        keys += [(d.key_file, "an SFTP key file of the rules") for d in destinations if getattr(d, "key_file", None)]
        keys += [(d.client_key_file, "an FTPS client key file of the rules")
                 for d in destinations if getattr(d, "client_key_file", None)]  # fmt: skip
    return FilePolicy(allow_hardlinks=allow_hardlinks, protected=(*protected, *keys))


def plan_record(record: Record, ruleset: RuleSet, routes: list[Route]) -> Plan:
    """Render every name of the record for its destinations; raises ``NamingError``."""
    rules = routes[0].client
    source = ruleset.source(rules.client_id)
    spec = rules.package
    names = render_names(
        record,
        fmt=spec.format,
        archive_name=spec.archive_name,
        image_name=spec.image_name,
        metadata_name=spec.metadata.name if spec.metadata else None,
        done_marker=spec.done_marker,
        origin=source,
        names="posix",  # then checked for each destination that needs portable names
    )
    context = template_context(record)
    planned = []
    for route in routes:
        if route.destination.names == "portable":
            refuse_unportable(names, where=str(record.folder), origin=f"{source}: destination {route.destination.name}")
        base = route.destination.base_path
        template = route.destination.remote_dir
        if template is None:
            planned.append((route, base))
            continue
        sub = template.render(
            context,
            record=str(record.folder),
            origin=f"{source}: destination {route.destination.name}: remote_dir",
            names=route.destination.names,
        )
        planned.append((route, posixpath.join(base, sub)))
    return Plan(record=record, rules=rules, source=source, names=names, routes=tuple(planned))


def zipped(ruleset: RuleSet, data: VehicleData) -> bool:
    """Whether the rules zip the record of ``data``: its images' CRC-32 are then computed as they are
    read (``load_record(crc=...)``), for the zip's headers and its check."""
    rules = ruleset.clients.get(data.client_id)
    return rules is not None and rules.package.format == "zip"


def make_package(plan: Plan, workdir: Path) -> Package:
    """Build the files of a planned record in ``workdir``.

    A zip for one destination, uploaded atomically, is not written there: it is read from the
    images while it is sent (``zipstream``). Several destinations share one copy in ``workdir``.
    """
    metadata = plan.rules.package.metadata
    stream = len(plan.routes) == 1 and plan.rules.upload.atomic
    return build_package(plan.record, plan.names, metadata.fields if metadata else None, workdir, stream=stream)


class FileOptions(Protocol):
    """The settings that decide which files a record may deliver (``pipeline.Options`` has them)."""

    @property
    def allow_hardlinks(self) -> bool: ...

    @property
    def protected(self) -> tuple[tuple[Path, str], ...]: ...


def preview_record(folder: Path, ruleset: RuleSet, options: FileOptions | None = None) -> dict[str, Any]:
    """What exporting ``folder`` would send where, without any network; raises ``RecordError``.

    The record's files are checked as an export with ``options`` would check them.
    """
    allow_hardlinks = options.allow_hardlinks if options is not None else False
    protected = options.protected if options is not None else ()
    policy = file_policy(ruleset, allow_hardlinks=allow_hardlinks, protected=protected)
    record = load_record(folder, policy, crc=lambda data: zipped(ruleset, data))
    plan = plan_record(record, ruleset, routes_for(ruleset, record))
    with tempfile.TemporaryDirectory(prefix="ftpexport-preview-") as tmp:
        package = make_package(plan, Path(tmp))
    destinations = []
    for route, remote_dir in plan.routes:
        destination = route.destination
        marker = [package.done_marker] if package.done_marker is not None else []
        files = [posixpath.join(remote_dir, f.name) for f in (*package.files, *marker)]
        destinations.append(
            {
                "destination": route.key,
                "level": "user" if route.user_id else "client",
                "url": f"{destination.scheme}://{destination.username}@{destination.host}:{destination.port}",
                "remote_dir": remote_dir,
                "files": files,
            }
        )
    return {
        "record": str(folder),
        "id": record.id,
        "client_id": record.client_id,
        "user_id": record.user_id,
        "content_hash": record.content_hash,
        "rule_file": plan.source,
        "format": plan.rules.package.format,
        "files": [{"name": f.name, "bytes": f.size} for f in package.files],
        "archive_listing": list(package.archive_listing),
        "sources": [image.path.name for image in record.images],
        "destinations": destinations,
    }
