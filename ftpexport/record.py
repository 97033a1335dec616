"""A processed vehicle record: load and validate ``vehicle.json`` and the images of its folder."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from .errors import RecordError
from .recordfiles import CheckedFile, FileGuard, FilePolicy, Identity, check_unchanged, reopen

RECORD_FILE = "vehicle.json"
#: a vehicle.json larger than this is refused before it is parsed
MAX_RECORD_BYTES = 1024 * 1024
MAX_IMAGES = 500
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".heic", ".avif"})

_VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
#: listed image names longer than this are refused before any file system call
MAX_IMAGE_NAME = 1024
#: how much of a name from the input an error message quotes
_QUOTE = 80
_HASH_CHUNK = 1024 * 1024


def _check_vin(value: str) -> str:
    if not _VIN.fullmatch(value):  # fullmatch: "$" would accept a trailing newline
        raise ValueError("a VIN is 17 characters of A-Z and 0-9 without I, O and Q")
    return value


def _check_shown(value: str) -> str:
    """An id is shown on terminals, in logs and in the ledger: it must be text (an escape sequence
    or a newline in it would drive the operator's terminal or forge a line)."""
    if not value.isprintable():
        bad = next(char for char in value if not char.isprintable())
        raise ValueError(
            f"holds a control or invisible character (U+{ord(bad):04X}): an id is shown on terminals and in "
            "logs, write it as text"
        )
    return value


#: an id of the record, its client or its user
ShownId = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_check_shown)]


def _check_aware(value: datetime | None) -> datetime | None:
    if value is not None and value.utcoffset() is None:
        raise ValueError("the date needs a UTC offset, e.g. 2026-11-20T14:03:00+01:00")
    return value


class User(BaseModel):
    """The platform user who uploaded the vehicle."""

    model_config = ConfigDict(extra="allow")

    id: Annotated[str, Field(min_length=1), AfterValidator(_check_shown)]
    name: str | None = None
    email: str | None = None


class VehicleData(BaseModel):
    """The validated content of ``vehicle.json``; unknown top-level fields are kept."""

    model_config = ConfigDict(extra="allow")

    id: ShownId
    client_id: ShownId
    vin: Annotated[str, AfterValidator(_check_vin)]
    event: str | None = None
    user: User | None = None
    stock_number: str | None = None
    make: str | None = None
    model: str | None = None
    year: int | None = None
    processed_at: Annotated[datetime | None, AfterValidator(_check_aware)] = None
    images: list[Annotated[str, Field(min_length=1, max_length=MAX_IMAGE_NAME)]] | None = Field(
        default=None, max_length=MAX_IMAGES
    )
    extra: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Image:
    """One image of a record, in delivery order."""

    path: Path
    #: 1-based position in the record
    n: int
    #: extension without the dot, lower case
    ext: str
    size: int
    #: the file that was checked and hashed; packaging refuses any other (see ``open_image``)
    identity: Identity
    #: CRC-32 of the bytes that were hashed, computed on the same read: a zip can then be laid
    #: out, headers included, without reading the image first (``zipstream``), and the image's
    #: bytes are checked against it while the zip is read or written (not hashed a second time)
    crc: int | None = None


@dataclass(frozen=True)
class Record:
    """A complete, validated inbox record."""

    folder: Path
    data: VehicleData
    #: the parsed JSON as written, for templates (dates stay strings, unknown fields included)
    fields: dict[str, Any]
    images: tuple[Image, ...]
    #: sha256 over vehicle.json and the image bytes: a new hash means "vehicle updated"
    content_hash: str
    #: vehicle.json as read: the start of ``content_hash``, which the zip is checked against
    record_json: bytes = field(repr=False)

    @property
    def id(self) -> str:
        return self.data.id

    @property
    def client_id(self) -> str:
        return self.data.client_id

    @property
    def user_id(self) -> str | None:
        return self.data.user.id if self.data.user else None

    @property
    def flat(self) -> bool:
        """Every image is a file of the folder itself, so ``folder_signature`` sees every change."""
        root = self.folder.resolve()
        return all(image.path.parent == root for image in self.images)


def natural_key(name: str) -> list[int | str]:
    """Sort key that puts ``2.jpg`` before ``10.jpg``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_complete(folder: Path) -> bool:
    """Whether the record's ``vehicle.json`` exists (it is written last)."""
    return (folder / RECORD_FILE).is_file()


def folder_signature(folder: Path) -> str | None:
    """What the files of a record folder look like, without reading them; None when it cannot be listed.

    Each entry's name, type, size, modification and change times and inode: a file rewritten,
    replaced by a rename, added or removed changes it, even with its old modification time put
    back (the change time cannot be set). Only the folder's own entries: a record whose images
    live in a sub-folder must not be judged by it (see ``Record.flat``).
    """
    lines = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                st = entry.stat()  # through a symbolic link: the file it points to
                lines.append(
                    f"{entry.name}/{st.st_mode >> 12}/{st.st_size}/{st.st_mtime_ns}/{st.st_ctime_ns}/{st.st_ino}"
                )
    except OSError:
        return None
    lines.sort()
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def iter_record_folders(inbox: Path) -> Iterator[Path]:
    """The sub-folders of ``inbox`` in name order (hidden ones excluded); complete or not."""
    try:
        entries = sorted(os.scandir(inbox), key=lambda e: natural_key(e.name))
    except FileNotFoundError as exc:
        raise RecordError(str(inbox), "the inbox folder does not exist") from exc
    for entry in entries:
        if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
            yield Path(entry.path)


def load_record(
    folder: Path, policy: FilePolicy | None = None, *, crc: Callable[[VehicleData], bool] | None = None
) -> Record:
    """Read and validate the record in ``folder``; raises ``RecordError`` naming what is wrong.

    Its files are opened and checked as ``policy`` says (``recordfiles``: regular files of the
    record only, no hard links by default, never ftpexport's own files) and read from the checked
    descriptor. When ``crc(data)`` says so (the record will be zipped), each image's CRC-32 is
    computed on the same read as the hash (``Image.crc``).
    """
    where = str(folder)
    try:
        return _load_record(folder, (policy or FilePolicy()).guard(), crc)
    except RecursionError:
        raise
    except RuntimeError as exc:  # Path.resolve() of Python < 3.13 on a symlink loop
        raise RecordError(where, "a symbolic link of the record points back to itself (a symlink loop)") from exc
    except OSError as exc:  # unreadable files, names the OS refuses, symlink loops on Python >= 3.13
        if exc.errno == errno.ELOOP:
            raise RecordError(where, "a symbolic link of the record points back to itself (a symlink loop)") from exc
        what = _quote(Path(exc.filename).name) if isinstance(exc.filename, str) else "a file of the record"
        raise RecordError(where, f"cannot read {what}: {exc.strerror or type(exc).__name__}") from exc


def _load_record(folder: Path, guard: FileGuard, crc: Callable[[VehicleData], bool] | None) -> Record:
    where = str(folder)
    root = folder.resolve()
    json_path = _inside(root, folder, RECORD_FILE, where, RECORD_FILE)
    try:
        stream, identity = guard.open(root, json_path, where=where, name=RECORD_FILE)
    except FileNotFoundError as exc:
        raise RecordError(where, f"{RECORD_FILE} is missing: the record is not complete yet") from exc
    with stream:
        raw_bytes = stream.read(MAX_RECORD_BYTES + 1) if identity.size <= MAX_RECORD_BYTES else b""
    size = max(identity.size, len(raw_bytes))
    if size > MAX_RECORD_BYTES:
        raise RecordError(where, f"{RECORD_FILE} is {size} bytes, more than the {MAX_RECORD_BYTES} allowed")
    try:
        fields = json.loads(raw_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(where, f"{RECORD_FILE} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise RecordError(where, f"{RECORD_FILE} is nested too deeply") from exc
    if not isinstance(fields, dict):
        raise RecordError(where, f"{RECORD_FILE} must hold a JSON object")
    _refuse_non_finite(fields, where)
    try:
        # JSON may escape lone surrogates (\ud800): such text cannot become a name or UTF-8 metadata
        json.dumps(fields, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        reason = f"{RECORD_FILE} holds text that is not valid Unicode (a lone surrogate escape)"
        raise RecordError(where, reason) from exc
    try:
        data = VehicleData.model_validate(fields)
    except ValidationError as exc:
        raise RecordError(where, f"{RECORD_FILE}: {_describe(exc)}") from exc
    digest = content_digest(raw_bytes)
    listed = _find_images(root, folder, data.images)
    with_crc = crc is not None and crc(data)
    images = tuple(_read_image(guard, root, name, path, n, where, digest, with_crc)
                   for n, (name, path) in enumerate(listed, 1))  # fmt: skip
    return Record(
        folder=folder,
        data=data,
        fields=fields,
        images=images,
        content_hash=digest.hexdigest(),
        record_json=raw_bytes,
    )


def _refuse_non_finite(fields: dict[str, Any], where: str) -> None:
    """Refuse NaN, Infinity and -Infinity (and numbers too large for a float, which become Infinity).

    Python's ``json`` accepts them, but they are not JSON: a metadata file holding one would not be
    valid JSON for the client's system.
    """
    # each entry: a value and where it is, as (key, where its parent is): no path copied per value
    stack: list[tuple[Any, Any]] = [(fields, None)]
    while stack:
        value, where_in = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            keys = []
            while where_in is not None:
                key, where_in = where_in
                keys.append(str(key))
            name = ".".join(reversed(keys))
            name = name if len(name) <= _QUOTE else name[:_QUOTE] + "..."
            what = "NaN" if math.isnan(value) else f"{'-' if value < 0 else ''}Infinity (or a number too large)"
            raise RecordError(
                where,
                f"{RECORD_FILE}: {name}: {what} is not a JSON number",
                hint="write a finite number, null, or the value as a string",
            )
        if isinstance(value, dict):
            stack += [(item, (key, where_in)) for key, item in reversed(value.items())]
        elif isinstance(value, list):
            stack += [(item, (index, where_in)) for index, item in reversed(list(enumerate(value)))]


def _describe(exc: ValidationError) -> str:
    """Pydantic's errors as ``field: reason`` pairs, without echoing input values."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def _quote(name: str) -> str:
    """``name`` for a message: repr'd and cut short, so an error never echoes large input."""
    return repr(name) if len(name) <= _QUOTE else repr(name[:_QUOTE]) + f"... ({len(name)} characters)"


def _inside(root: Path, folder: Path, entry: str, where: str, name: str) -> Path:
    """``folder / entry`` resolved, refused if it (or a symlink on the way) points outside ``root``
    (``folder`` resolved).

    A plain name that is not a symbolic link is ``root / entry`` as it is: one ``lstat`` instead of
    one for each component of the path (a record's images are read on the way to every upload).
    """
    if entry not in ("", ".", "..") and "/" not in entry:
        try:
            if not stat.S_ISLNK(os.lstat(os.path.join(folder, entry)).st_mode):
                return root / entry
        except OSError:
            pass  # missing, or a name the OS refuses: resolve() says what it says, the open what is wrong
    resolved = (folder / entry).resolve()
    if not resolved.is_relative_to(root):
        raise RecordError(
            where,
            f"{name} resolves outside the record folder (to {resolved})",
            hint="records may only deliver their own files; replace the link with the file itself",
        )
    return resolved


def _find_images(root: Path, folder: Path, listed: list[str] | None) -> list[tuple[str, Path]]:
    """The record's images as (name, resolved path), in delivery order; not opened yet."""
    where = str(folder)
    if listed is None:
        names = sorted(
            (
                entry.name
                for entry in os.scandir(folder)
                if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".")
            ),
            key=natural_key,
        )
        if len(names) > MAX_IMAGES:
            raise RecordError(where, f"{len(names)} images, more than the {MAX_IMAGES} allowed")
    else:
        names = listed
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise RecordError(where, f"images lists {', '.join(map(_quote, duplicates))} more than once")
    paths = []
    for name in names:
        if "\x00" in name or Path(name).is_absolute():
            raise RecordError(where, f"image name {_quote(name)} is not a file name inside the record")
        paths.append((name, _inside(root, folder, name, where, f"image {_quote(name)}")))
    if not paths:
        raise RecordError(where, "the record has no images", hint=f"add image files or list them in {RECORD_FILE}")
    return paths


def _read_image(
    guard: FileGuard, root: Path, name: str, path: Path, n: int, where: str, digest: Any, with_crc: bool
) -> Image:
    """Open and check one image, and add its size and bytes to ``digest`` from the checked descriptor."""
    label = f"image {_quote(name)}"
    try:
        stream, identity = guard.open(root, path, where=where, name=label)
    except FileNotFoundError as exc:
        raise RecordError(where, f"{label} is listed in {RECORD_FILE} but is missing") from exc
    ext = Path(name).suffix.lower().lstrip(".")
    with stream:
        if not ext:
            raise RecordError(where, f"{label} has no extension")
        digest.update(identity.size.to_bytes(8, "big"))
        read = crc = 0
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
            if with_crc:
                # zlib's releases the GIL for the time it computes (binascii's, as fast, holds it):
                # the uploads of the records read before go on meanwhile
                crc = zlib.crc32(chunk, crc)
            read += len(chunk)
        if read != identity.size or Identity.of(os.fstat(stream.fileno())) != identity:
            raise RecordError(
                where,
                f"{label} changed while it was read",
                hint="the platform should write vehicle.json last, once every image is complete",
            )
    return Image(path=path, n=n, ext=ext, size=identity.size, identity=identity, crc=crc if with_crc else None)


def content_digest(record_json: bytes) -> Any:
    """A sha256 with vehicle.json in it; the images' sizes and bytes follow, in order, for ``content_hash``."""
    digest = hashlib.sha256()
    digest.update(len(record_json).to_bytes(8, "big"))
    digest.update(record_json)
    return digest


def check_image(record: Record, image: Image) -> None:
    """``RecordChangedError`` unless ``image`` is still the file that was checked and hashed, unchanged
    (what ``open_image`` would find), without opening it: a change found before a transfer starts
    fails it before the server gets a byte."""
    check_unchanged(image.path, image.identity, where=str(record.folder), name=f"image {_quote(image.path.name)}")


def open_image(record: Record, image: Image) -> CheckedFile:
    """The image opened again for packaging or sending: ``RecordChangedError`` unless it is the file
    that was checked and hashed, unchanged (and from ``verify()`` once it is read, if it was written
    since)."""
    return reopen(image.path, image.identity, where=str(record.folder), name=f"image {_quote(image.path.name)}")
