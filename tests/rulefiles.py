"""Rule files for the tests: ``write_rules`` writes one, ``rule_document`` and the destination
helpers build its contents from a test's servers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from servers import RunningServer


def write_rules(folder: Path, document: dict[str, Any] | str, name: str | None = None) -> Path:
    """Write the rule file ``folder/<name>.yaml`` (the folder is created) and return its path.

    ``document``: a dict (dumped as YAML, keys in their order) or the file's text; ``name`` defaults
    to the dict's ``client_id``. The file is replaced in one step, so a watching daemon never reads
    it half written.
    """
    if name is None:
        assert isinstance(document, dict), "name the file of a rule file given as text"
        name = document["client_id"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    temporary = folder / f".{path.name}.tmp"
    temporary.write_text(document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False))
    os.replace(temporary, path)
    return path


def rule_document(client_id: str, destinations: list[dict[str, Any]], **sections: Any) -> dict[str, Any]:
    """The rule file of ``client_id``: its ``destinations`` and the other ``sections`` not None
    (``upload``, ``notify``, ``package`` ...)."""
    document: dict[str, Any] = {"client_id": client_id, "destinations": destinations}
    document |= {key: value for key, value in sections.items() if value is not None}
    return document


def ftp_destination(
    name: str,
    server: RunningServer,
    folder: str,
    password_env: str,
    *,
    port: int | None = None,
    username: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A plain-FTP destination of a rule file; ``port`` sends it elsewhere (a fault proxy, a closed port)."""
    return {
        "name": name,
        "url": f"ftp://{username or server.username}@{server.host}:{port or server.port}/{folder}",
        "password": "${" + password_env + "}",
        "allow_plain_ftp": True,
        **extra,
    }


def sftp_destination(
    name: str,
    server: RunningServer,
    folder: str,
    *,
    port: int | None = None,
    password_env: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An SFTP destination of a rule file, host key pinned; key login, or the password in the variable
    ``password_env``; ``port``: through a proxy."""
    assert server.client_key_file is not None and server.host_key is not None
    login = {"password": "${" + password_env + "}"} if password_env else {"key_file": str(server.client_key_file)}
    return {
        "name": name,
        "url": f"sftp://{server.username}@{server.host}:{port or server.port}{server.remote_path(folder)}",
        **login,
        "host_key": server.host_key,
        **extra,
    }
