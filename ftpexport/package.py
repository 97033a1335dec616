"""Packaging: a record's images renamed, plus a JSON metadata file, as one zip or as loose files.

The zip is deterministic (same record, same bytes: fixed order, timestamps and attributes) and
images are stored, not deflated, because JPEG and PNG are compressed already. Images are copied
in blocks, never loaded whole into memory.

Images are opened again with ``open_image``: only the file that was checked and hashed when the
record was read, unchanged (``RecordChangedError`` otherwise). In the zip, each image's CRC-32
(which ``zipfile`` computes as it writes the entry) must be the one taken when the record was read
(``Image.crc``), so it holds exactly the bytes that were read; a record read without CRC-32s has
its images hashed again instead, and the zip refused unless that is the record's content hash.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from .errors import NamingError, RecordError
from .naming import PORTABLE_HINT, NameRules, NameTemplate, name_problem, shorten
from .private import private_opener
from .record import Image, Record, check_image, content_digest, open_image
from .recordfiles import changed
from .zipstream import ZipLayout, ZipStream, crc_changed

_COPY_BLOCK = 1024 * 1024
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class PackageNames:
    """Every name a record's package uses, rendered and validated."""

    images: tuple[str, ...]
    archive: str | None
    metadata: str | None
    done_marker: str | None

    def labelled(self) -> list[tuple[str, str]]:
        """(rule file field, name) of every name."""
        found = [("package.image_name", name) for name in self.images]
        for field_name, name in (("package.archive_name", self.archive), ("package.metadata.name", self.metadata),
                                 ("package.done_marker", self.done_marker)):  # fmt: skip
            if name is not None:
                found.append((field_name, name))
        return found


@dataclass(frozen=True)
class Artifact:
    """One file to upload: its remote name, its size and how to read it."""

    name: str
    size: int
    opener: Callable[[], BinaryIO]

    def open(self) -> BinaryIO:
        return self.opener()


@dataclass(frozen=True)
class Package:
    """The files to upload for one record, in upload order; the done marker goes last."""

    files: tuple[Artifact, ...]
    done_marker: Artifact | None
    #: the names inside the archive (zip format), for previews
    archive_listing: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files) + (self.done_marker.size if self.done_marker else 0)


def template_context(record: Record) -> dict[str, Any]:
    """What templates see: every field of vehicle.json as written (dates as strings)."""
    return dict(record.fields)


def render_names(
    record: Record,
    *,
    fmt: str,
    archive_name: NameTemplate,
    image_name: NameTemplate,
    metadata_name: NameTemplate | None,
    done_marker: NameTemplate | None,
    origin: str,
    names: NameRules = "portable",
) -> PackageNames:
    """Render the package's names, valid under ``names``; ``origin`` is the rule file, for messages."""
    where = str(record.folder)
    context = template_context(record)
    images = []
    for image in record.images:
        image_context = {
            **context,
            "n": image.n,
            "ext": image.ext,
            "filename": image.path.name,
            "stem": image.path.stem,
        }
        origin_field = f"{origin}: package.image_name"
        images.append(image_name.render(image_context, record=where, origin=origin_field, names=names))
    metadata = (
        metadata_name.render(context, record=where, origin=f"{origin}: package.metadata.name", names=names)
        if metadata_name
        else None
    )
    archive = (
        archive_name.render(context, record=where, origin=f"{origin}: package.archive_name", names=names)
        if fmt == "zip"
        else None
    )
    marker = (
        done_marker.render(context, record=where, origin=f"{origin}: package.done_marker", names=names)
        if done_marker
        else None
    )
    _refuse_duplicates(where, origin, images, metadata, archive, marker)
    return PackageNames(images=tuple(images), archive=archive, metadata=metadata, done_marker=marker)


def _refuse_duplicates(where: str, origin: str, images: list[str], *others: str | None) -> None:
    seen: set[str] = set()
    for name in images:
        if name in seen:
            raise NamingError(
                where,
                f"{origin}: package.image_name gives two images the same name {name!r}",
                hint="use n (the image's position) in the template, e.g. {{ vin }}_{{ n }}.{{ ext }}",
            )
        seen.add(name)
    for name in others:
        if name is not None and name in seen:
            raise NamingError(where, f"{origin}: two files of the package are both named {name!r}")
        if name is not None:
            seen.add(name)


def refuse_unportable(names: PackageNames, *, where: str, origin: str) -> None:
    """Raise ``NamingError`` for a name of the package a Windows server cannot store, or two names
    it would store as one (they differ only in case); ``origin`` is the rule file and destination."""
    seen: dict[str, str] = {}
    for field_name, name in names.labelled():
        problem = name_problem(name, "file", "portable")
        if problem:
            raise NamingError(where, f"{origin}: {field_name} rendered {shorten(name)}, which {problem}",
                              hint=PORTABLE_HINT)  # fmt: skip
        other = seen.setdefault(_windows_case(name), name)
        if other != name:
            raise NamingError(
                where,
                f"{origin}: the package names {other!r} and {name!r} differ only in case: a Windows server "
                "stores them as one file",
                hint=PORTABLE_HINT,
            )


def _windows_case(name: str) -> str:
    """``name`` as Windows compares names: each character in upper case (one for one, so ß stays ß)."""
    return "".join(upper if len(upper := char.upper()) == 1 else char for char in name)


def metadata_document(record: Record, fields: list[str], image_names: tuple[str, ...]) -> bytes:
    """The metadata JSON: the listed fields (``user.name`` nests under ``user``) and the file names."""
    document: dict[str, Any] = {}
    for path in fields:
        value: Any = record.fields
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        target = document
        *parents, leaf = path.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    document["files"] = list(image_names)
    try:
        # allow_nan=False: NaN and Infinity are not JSON; the record refuses them already
        text = json.dumps(document, ensure_ascii=False, indent=2, allow_nan=False)
    except ValueError as exc:
        raise RecordError(
            str(record.folder), "the metadata file would hold NaN or Infinity, which JSON does not allow"
        ) from exc
    return (text + "\n").encode("utf-8")


def _zip_timestamp(record: Record) -> tuple[int, int, int, int, int, int]:
    stamp: datetime | None = record.data.processed_at
    if stamp is None or stamp.year < 1980:
        return _ZIP_EPOCH
    return (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second - stamp.second % 2)


def _zip_entry(name: str, size: int, when: tuple[int, int, int, int, int, int]) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=when)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3  # unix, so the permissions below are read the same everywhere
    info.external_attr = 0o100644 << 16
    info.file_size = size
    return info


def write_zip(record: Record, names: PackageNames, metadata: bytes | None, target: Path) -> None:
    """Write the archive to ``target``: images in record order, then the metadata file.

    Raises ``RecordChangedError`` (and leaves no ``target``) when an image is not what was read:
    its CRC-32 is checked at the end of its entry, or, for a record read without them, the content
    hash once every image is copied (written in place within the file system's time resolution,
    an image's size and times look the same).
    """
    when = _zip_timestamp(record)
    # the images hashed again only when there is no CRC-32 to check them against (a record read without)
    digest = None if _crcs_known(record) else content_digest(record.record_json)
    try:
        with (
            open(target, "wb", opener=private_opener) as stream,  # 0600: it holds the photos and their names
            zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive,
        ):
            for image, name in zip(record.images, names.images, strict=True):
                info = _zip_entry(name, image.size, when)
                if digest is not None:
                    digest.update(image.size.to_bytes(8, "big"))
                with open_image(record, image) as source, archive.open(info, "w") as dest:
                    _copy(record, image, source, dest, digest)
                # the CRC-32 zipfile computed of the bytes it wrote, now in the entry's header
                if digest is None and (error := crc_changed(record, image, info.CRC)) is not None:
                    raise error
            if metadata is not None and names.metadata is not None:
                with archive.open(_zip_entry(names.metadata, len(metadata), when), "w") as dest:
                    dest.write(metadata)
        if digest is not None and digest.hexdigest() != record.content_hash:
            raise changed(str(record.folder), "an image", "its bytes are not the ones hashed")
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _copy(record: Record, image: Image, source: BinaryIO, dest: BinaryIO, digest: Any | None) -> None:
    """Copy ``image`` into the zip in blocks (hashing them into ``digest`` if any); never more bytes than were read."""
    left = image.size
    while block := source.read(min(_COPY_BLOCK, left + 1)):
        if len(block) > left:
            break
        if digest is not None:
            digest.update(block)
        dest.write(block)
        left -= len(block)
    if left or block:
        raise changed(str(record.folder), f"image {image.path.name!r}", "its size changed")


def _crcs_known(record: Record) -> bool:
    """Whether every image's CRC-32 was taken when the record was read (``load_record(crc=...)``)."""
    return all(image.crc is not None for image in record.images)


def _streamed_zip(record: Record, names: PackageNames, metadata: bytes | None) -> Artifact:
    """The zip ``write_zip`` would write, as an artifact read from the images each time it is opened."""
    assert names.archive is not None
    when = _zip_timestamp(record)
    entries: list[tuple[zipfile.ZipInfo, Image | bytes]] = [
        (_zip_entry(name, image.size, when), image) for image, name in zip(record.images, names.images, strict=True)
    ]
    if metadata is not None and names.metadata is not None:
        entries.append((_zip_entry(names.metadata, len(metadata), when), metadata))
    layout = ZipLayout(entries)
    for image in record.images:
        check_image(record, image)  # a change found now fails before any connection
    return Artifact(name=names.archive, size=layout.size, opener=lambda: ZipStream(record, layout))


def _bytes_artifact(name: str, content: bytes) -> Artifact:
    return Artifact(name=name, size=len(content), opener=lambda: io.BytesIO(content))


def _file_artifact(name: str, path: Path) -> Artifact:
    return Artifact(name=name, size=path.stat().st_size, opener=lambda: path.open("rb"))


def _image_artifact(name: str, record: Record, image: Image) -> Artifact:
    """An image sent as it is: opened again, and checked, each time it is sent."""
    return Artifact(name=name, size=image.size, opener=lambda: open_image(record, image))


def build_package(
    record: Record,
    names: PackageNames,
    metadata_fields: list[str] | None,
    workdir: Path,
    *,
    stream: bool = False,
) -> Package:
    """The files to upload; a zip is written into ``workdir`` (the caller removes it).

    With ``stream``, a zip is not written: it is read from the images while it is sent
    (``zipstream``), for an upload that publishes nothing before the end (atomic). The bytes are
    the same either way.
    """
    metadata = metadata_document(record, metadata_fields, names.images) if metadata_fields is not None else None
    marker = _bytes_artifact(names.done_marker, b"") if names.done_marker else None
    if names.archive is not None:
        listing = (*names.images, *([names.metadata] if metadata is not None and names.metadata else []))
        if stream and _crcs_known(record):
            return Package(
                files=(_streamed_zip(record, names, metadata),),
                done_marker=marker,
                archive_listing=tuple(listing),
            )
        archive_path = workdir / names.archive
        write_zip(record, names, metadata, archive_path)
        return Package(
            files=(_file_artifact(names.archive, archive_path),),
            done_marker=marker,
            archive_listing=tuple(listing),
        )
    for image in record.images:
        check_image(record, image)  # a change found now fails before any connection
    files = [_image_artifact(name, record, image) for image, name in zip(record.images, names.images, strict=True)]
    if metadata is not None and names.metadata is not None:
        files.append(_bytes_artifact(names.metadata, metadata))
    return Package(files=tuple(files), done_marker=marker)
