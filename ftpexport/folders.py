"""What the user passed as INBOX or RECORD: the right kind of folder, or a message saying what to pass.

An inbox holds record folders; a record folder holds ``vehicle.json`` and its images. Passing one
for the other (``run samples/veh-000123``, ``preview samples``) or an inbox's parent folder would
otherwise end in "nothing to do" or in a message about a missing vehicle.json.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError
from .record import RECORD_FILE, is_complete, iter_record_folders

#: sub-folders looked into for records when an inbox holds none itself (is it the inbox's parent?)
_LOOK_DEEPER = 20


def _parent(path: Path) -> Path:
    """The folder that holds ``path``, also for ``.`` and ``..``."""
    return path.parent if path.name not in ("", ".", "..") else Path(os.path.abspath(path)).parent


def inbox_folders(inbox: Path, command: str) -> list[Path]:
    """The sub-folders of ``inbox`` (complete records or not); ``ConfigError`` if it is not an inbox.

    Refused: a missing path, a file, a record folder (it has vehicle.json), and a folder whose
    sub-folders hold no record while their own sub-folders do (the inbox's parent).
    """
    if inbox.is_file():
        raise ConfigError(f"{inbox} is a file, not an inbox folder", hint="pass the folder that holds the records")
    if not inbox.is_dir():
        raise ConfigError(f"{inbox}: the inbox folder does not exist", hint="pass the folder that holds the records")
    if is_complete(inbox):
        raise ConfigError(
            f"{inbox} is a record (it has {RECORD_FILE}), not an inbox",
            hint=f"pass the folder that holds the records: ftpexport {command} {_parent(inbox)}",
        )
    folders = list(iter_record_folders(inbox))
    if folders and not any(is_complete(f) for f in folders):
        for folder in folders[:_LOOK_DEEPER]:
            inner = next((f for f in iter_record_folders(folder) if is_complete(f)), None)
            if inner is not None:
                raise ConfigError(
                    f"{inbox} holds no record, but {folder} does (e.g. {inner.name}): {inbox} is not the inbox",
                    hint=f"pass the folder that holds the records: ftpexport {command} {folder}",
                )
    return folders


def no_record_note(inbox: Path) -> str:
    """What to tell about an inbox without any record folder (nothing to export, or the wrong path?)."""
    files = sum(1 for entry in os.scandir(inbox) if entry.is_file() and not entry.name.startswith("."))
    loose = f" (the {files} file(s) in it are not records: a record is a folder)" if files else ""
    return f"{inbox} holds no record folder (one folder per vehicle, with its {RECORD_FILE}): nothing to export{loose}"


def record_folder(record: Path, command: str = "preview") -> Path:
    """``record`` if it is a record folder; ``ConfigError`` saying what to pass if it is a file or an inbox."""
    if record.is_file():
        raise ConfigError(
            f"{record} is a file, not a record folder",
            hint=f"pass the folder that holds {RECORD_FILE} and the images: ftpexport {command} {_parent(record)}",
        )
    if not record.is_dir():
        raise ConfigError(f"{record}: the record folder does not exist", hint="pass a folder of the inbox")
    if not is_complete(record):
        records = [f for f in iter_record_folders(record) if is_complete(f)]
        if records:
            raise ConfigError(
                f"{record} is an inbox ({len(records)} record folder(s) in it), not a record",
                hint=f"pass one of its record folders: ftpexport {command} {records[0]}",
            )
    return record
