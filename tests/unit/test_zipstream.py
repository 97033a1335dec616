"""zipstream.py: the zip read from the images while it is sent, byte for byte what write_zip writes."""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import threading
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from records import MakeRecord, vehicle

from ftpexport.errors import RecordChangedError
from ftpexport.package import PackageNames, build_package, metadata_document, write_zip
from ftpexport.plan import make_package, plan_record
from ftpexport.record import Record, load_record
from ftpexport.recordfiles import Identity
from ftpexport.rules import load_rules, routes_for
from ftpexport.zipstream import ZipStream


def _record(make_record: MakeRecord, images: dict[str, bytes]) -> Record:
    """A record read as the exporter reads one it zips: each image's CRC-32 computed with its hash."""
    return load_record(make_record(images=images, fields=vehicle(images=list(images))), crc=lambda data: True)


def _names(record: Record, *, metadata: str | None = "vehicle.json", archive: str = "out.zip") -> PackageNames:
    images = tuple(f"{n:02d}-{image.path.name}" for n, image in enumerate(record.images, 1))
    return PackageNames(images=images, archive=archive, metadata=metadata, done_marker=None)


def _written(record: Record, names: PackageNames, tmp_path: Path) -> bytes:
    metadata = metadata_document(record, ["vin"], names.images) if names.metadata else None
    target = tmp_path / "written.zip"
    write_zip(record, names, metadata, target)
    return target.read_bytes()


def _streamed(record: Record, names: PackageNames, tmp_path: Path, block: int = 256 * 1024) -> tuple[int, bytes]:
    """(the artifact's announced size, the bytes read from it in blocks of ``block``)."""
    fields = ["vin"] if names.metadata else None
    package = build_package(record, names, fields, tmp_path / "unused", stream=True)
    (artifact,) = package.files
    out = io.BytesIO()
    with artifact.open() as stream:
        while chunk := stream.read(block):
            out.write(chunk)
    return artifact.size, out.getvalue()


@pytest.mark.parametrize(
    "images",
    [
        {"01.jpg": b"\xff\xd8one\xff\xd9", "02.jpg": os.urandom(300_000)},
        {"été à Zürich.jpg": b"\xff\xd8\xe9t\xe9", "b.png": b"\x89PNG"},  # UTF-8 names: another flag bit
        {"empty.jpg": b"", "02.jpg": b"\xff\xd8two\xff\xd9"},
    ],
    ids=["ascii", "utf8-names", "empty-image"],
)
@pytest.mark.parametrize("metadata", ["vehicle.json", None], ids=["metadata", "no-metadata"])
def test_the_streamed_zip_is_the_written_zip_byte_for_byte(
    make_record: MakeRecord, tmp_path: Path, images: dict[str, bytes], metadata: str | None
) -> None:
    record = _record(make_record, images)
    names = _names(record, metadata=metadata)

    written = _written(record, names, tmp_path)
    size, streamed = _streamed(record, names, tmp_path)

    assert streamed == written
    assert size == len(written)
    assert not (tmp_path / "unused").exists()  # nothing was written for the stream


@pytest.mark.parametrize("block", [1, 7, 4096, 65536])
def test_any_read_size_gives_the_same_bytes(make_record: MakeRecord, tmp_path: Path, block: int) -> None:
    record = _record(make_record, {"a.jpg": os.urandom(70_001), "b.jpg": os.urandom(5)})
    names = _names(record)

    assert _streamed(record, names, tmp_path, block)[1] == _written(record, names, tmp_path)


def test_zip64_headers_are_the_ones_zipfile_writes(
    make_record: MakeRecord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # images "over 4 GiB" without writing 4 GiB: zipfile and the layout both read zipfile.ZIP64_LIMIT
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    record = _record(make_record, {"small.jpg": b"x" * 10, "big.jpg": os.urandom(5000)})
    names = _names(record)

    written = _written(record, names, tmp_path)
    assert b"PK\x06\x06" in written  # the ZIP64 end of central directory: the case is exercised
    assert _streamed(record, names, tmp_path)[1] == written


def test_the_stream_reads_images_in_blocks_not_whole(make_record: MakeRecord, tmp_path: Path) -> None:
    size = 50 * 1024 * 1024
    folder = make_record(images={}, fields=vehicle(images=["big.jpg"]))
    with (folder / "big.jpg").open("wb") as sparse:
        sparse.truncate(size)
    record = load_record(folder, crc=lambda data: True)

    tracemalloc.start()
    try:
        total = 0
        package = build_package(record, _names(record, metadata=None), None, tmp_path / "w", stream=True)
        with package.files[0].open() as stream:
            while chunk := stream.read(256 * 1024):
                total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert total == package.files[0].size
    assert peak < size // 10, f"peak memory {peak} bytes for a {size}-byte image"


def _read_all(record: Record, names: PackageNames, tmp_path: Path) -> tuple[bytes, BaseException | None]:
    """Read the stream until it ends or fails: (what was read, the error)."""
    package = build_package(record, names, None, tmp_path / "w", stream=True)
    out = io.BytesIO()
    try:
        with package.files[0].open() as stream:
            while chunk := stream.read(4096):
                out.write(chunk)
    except RecordChangedError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_a_write_that_size_and_times_do_not_show_fails_the_stream_before_its_end(
    make_record: MakeRecord, tmp_path: Path
) -> None:
    record = _record(make_record, {"01.jpg": b"\xff\xd8one\xff\xd9", "02.jpg": b"\xff\xd8two\xff\xd9"})
    names = _names(record, metadata=None)
    complete = _written(record, names, tmp_path)
    path = record.images[1].path
    path.write_bytes(b"\xff\xd8TWO\xff\xd9")
    # as if written within the file system's time resolution: the identity looks the same
    changed = replace(record, images=(record.images[0], replace(record.images[1], identity=Identity.of(path.stat()))))

    sent, error = _read_all(changed, names, tmp_path)

    assert isinstance(error, RecordChangedError)
    assert "image '02.jpg' changed after it was read (its bytes are not the ones read: CRC-32 " in error.reason
    assert len(sent) < len(complete)  # the archive never ends: its central directory is not sent
    assert b"PK\x05\x06" not in sent


@pytest.mark.parametrize("block", [1, 7, 4096])
def test_an_image_in_the_middle_written_in_place_stops_the_stream_at_its_end(
    make_record: MakeRecord, tmp_path: Path, block: int
) -> None:
    images = {"01.jpg": os.urandom(5000), "02.jpg": os.urandom(5000), "03.jpg": os.urandom(5000)}
    record = _record(make_record, images)
    names = _names(record, metadata=None)
    # where the next part, 03.jpg's header, starts in the archive
    next_header = zipfile.ZipFile(io.BytesIO(_written(record, names, tmp_path))).infolist()[2].header_offset
    path = record.images[1].path
    path.write_bytes(os.urandom(5000))
    # as if written within the file system's time resolution: the identity looks the same
    images_now = (record.images[0], replace(record.images[1], identity=Identity.of(path.stat())), record.images[2])
    changed = replace(record, images=images_now)

    package = build_package(changed, names, None, tmp_path / "w", stream=True)
    sent = io.BytesIO()
    with pytest.raises(RecordChangedError) as caught, package.files[0].open() as stream:
        while chunk := stream.read(block):
            sent.write(chunk)

    # it fails in the read that reaches the end of 02.jpg: no byte of the next part was returned
    assert next_header - block < sent.tell() <= next_header
    assert caught.value.reason.startswith(
        "image '02.jpg' changed after it was read (its bytes are not the ones read: CRC-32 "
    )


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "written"])
def test_a_zip_of_a_record_read_with_crcs_is_not_hashed_a_second_time(
    make_record: MakeRecord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    record = _record(make_record, {"01.jpg": os.urandom(70_001), "02.jpg": b"", "03.jpg": os.urandom(9)})
    names = _names(record)
    expected = _written(record, names, tmp_path)

    def no_sha256(*args: object) -> object:
        raise AssertionError("sha256 called: the images were hashed again")

    monkeypatch.setattr(hashlib, "sha256", no_sha256)  # each image's CRC-32 is checked instead
    work = tmp_path / "work"
    work.mkdir()
    package = build_package(record, names, ["vin"], work, stream=stream)
    with package.files[0].open() as zipped:
        assert zipped.read() == expected


def test_an_image_grown_after_it_was_read_fails_the_stream(make_record: MakeRecord, tmp_path: Path) -> None:
    record = _record(make_record, {"01.jpg": b"\xff\xd8one\xff\xd9", "02.jpg": b"\xff\xd8two\xff\xd9"})
    names = _names(record, metadata=None)
    package = build_package(record, names, None, tmp_path / "w", stream=True)
    with record.images[0].path.open("ab") as stream:
        stream.write(b"more")

    with (
        pytest.raises(RecordChangedError, match=re.escape("image '01.jpg' changed after it was read")),
        package.files[0].open() as zipped,
    ):
        zipped.read()


def test_an_image_replaced_before_the_package_is_made_fails_before_any_byte(
    make_record: MakeRecord, tmp_path: Path
) -> None:
    record = _record(make_record, {"01.jpg": b"\xff\xd8one\xff\xd9", "02.jpg": b"\xff\xd8two\xff\xd9"})
    other = record.images[1].path.with_name(".swap")
    other.write_bytes(b"\xff\xd8two\xff\xd9")
    other.replace(record.images[1].path)

    with pytest.raises(RecordChangedError, match=re.escape("image '02.jpg' changed after it was read")):
        build_package(record, _names(record, metadata=None), None, tmp_path / "w", stream=True)


def _plan(folder: Path, rules_dir: Path):  # type: ignore[no-untyped-def]
    ruleset = load_rules(rules_dir)
    record = load_record(folder, crc=lambda data: True)
    return plan_record(record, ruleset, routes_for(ruleset, record))


def _rules(tmp_path: Path, destinations: int, atomic: bool) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    urls = "".join(
        f"""
  - name: dms{n}
    url: ftp://u@127.0.0.1:21/in
    password: ${{NOT_USED}}
    allow_plain_ftp: true"""
        for n in range(destinations)
    )
    (rules / "acme-motors.yaml").write_text(
        f"client_id: acme-motors\ndestinations:{urls}\n"
        f"package:\n  format: zip\nupload:\n  atomic: {str(atomic).lower()}\n"
    )
    return rules


@pytest.mark.parametrize(
    "destinations, atomic, streamed",
    [(1, True, True), (2, True, False), (1, False, False)],
    ids=["one-destination-atomic", "two-destinations", "not-atomic"],
)
def test_the_zip_is_streamed_for_one_destination_with_atomic_uploads_only(
    make_record: MakeRecord, tmp_path: Path, destinations: int, atomic: bool, streamed: bool
) -> None:
    plan = _plan(make_record(), _rules(tmp_path, destinations, atomic))
    work = tmp_path / "work"
    work.mkdir()

    package = make_package(plan, work)

    assert [p.name for p in work.iterdir()] == ([] if streamed else [package.files[0].name])
    with package.files[0].open() as stream:
        data = stream.read()
    assert len(data) == package.files[0].size
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None


def test_a_record_read_without_crcs_is_zipped_in_the_spool(make_record: MakeRecord, tmp_path: Path) -> None:
    record = load_record(make_record())  # no CRC-32: the archive cannot be laid out before it is built
    names = _names(record, metadata=None)
    work = tmp_path / "work"
    work.mkdir()

    build_package(record, names, None, work, stream=True)

    assert [p.name for p in work.iterdir()] == ["out.zip"]
    assert (work / "out.zip").read_bytes() == _written(record, names, tmp_path)


def test_the_crcs_are_computed_only_when_asked(make_record: MakeRecord) -> None:
    folder = make_record(images={"01.jpg": b"\xff\xd8one\xff\xd9"}, fields=vehicle(images=["01.jpg"]))
    asked: list[str] = []

    def zipped(data: object) -> bool:
        asked.append(getattr(data, "client_id", ""))
        return True

    assert [i.crc for i in load_record(folder).images] == [None]
    assert [i.crc for i in load_record(folder, crc=zipped).images] == [zipfile.crc32(b"\xff\xd8one\xff\xd9")]
    assert [i.crc for i in load_record(folder, crc=lambda data: False).images] == [None]
    assert asked == ["acme-motors"]


@pytest.mark.parametrize("size", [0, 1, 4099, 3 * 1024 * 1024 + 5], ids=["empty", "one-byte", "small", "3-MiB"])
def test_a_crc32_carried_block_by_block_is_the_one_zip_headers_use(size: int) -> None:
    # record.py and the stream compute CRC-32 with zlib.crc32 block by block; zipfile writes its whole-file value
    data = os.urandom(size)
    running = 0
    for start in range(0, size, 65536):  # as the readers do: block by block, the value carried on
        running = zlib.crc32(data[start : start + 65536], running)

    assert zipfile.crc32(data) == zlib.crc32(data) == running
    assert zlib.crc32(b"") == 0


def test_an_image_read_in_several_blocks_has_the_crc_of_all_its_bytes(make_record: MakeRecord) -> None:
    content = os.urandom(2 * 1024 * 1024 + 7)  # more than one of the reader's 1 MiB blocks
    folder = make_record(images={"01.jpg": content, "02.jpg": b""}, fields=vehicle(images=["01.jpg", "02.jpg"]))

    record = load_record(folder, crc=lambda data: True)

    assert [image.crc for image in record.images] == [zlib.crc32(content), zlib.crc32(b"")]


# --- send_to: the archive over a plain socket, each image by sendfile -------------------------


def _sent_by_send_to(
    record: Record,
    names: PackageNames,
    tmp_path: Path,
    *,
    block: int = 256 * 1024,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[bytes, int, BaseException | None]:
    """(the bytes the other end of a socket received, what send_to returned or -1, its error)."""
    fields = ["vin"] if names.metadata else None
    package = build_package(record, names, fields, tmp_path / "unused", stream=True)
    ours, theirs = socket.socketpair()
    received = bytearray()

    def receive() -> None:
        while chunk := theirs.recv(65536):
            received.extend(chunk)

    reader = threading.Thread(target=receive)
    reader.start()
    returned, error = -1, None
    try:
        with ours, package.files[0].open() as stream:
            returned = stream.send_to(ours, on_progress, block)  # type: ignore[attr-defined]
    except RecordChangedError as exc:
        error = exc
    finally:
        reader.join()
        theirs.close()
    return bytes(received), returned, error


@pytest.mark.parametrize(
    "images",
    [
        {"01.jpg": b"\xff\xd8one\xff\xd9", "02.jpg": os.urandom(300_000)},
        {"été à Zürich.jpg": b"\xff\xd8\xe9t\xe9", "b.png": b"\x89PNG"},
        {"empty.jpg": b"", "02.jpg": b"\xff\xd8two\xff\xd9"},
    ],
    ids=["ascii", "utf8-names", "empty-image"],
)
@pytest.mark.parametrize("metadata", ["vehicle.json", None], ids=["metadata", "no-metadata"])
def test_send_to_sends_the_written_zip_byte_for_byte_with_sendfile(
    make_record: MakeRecord,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    images: dict[str, bytes],
    metadata: str | None,
) -> None:
    record = _record(make_record, images)
    names = _names(record, metadata=metadata)
    written = _written(record, names, tmp_path)
    by_sendfile: list[int] = []
    real_sendfile = os.sendfile

    def counting_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        sent = real_sendfile(out_fd, in_fd, offset, count)
        by_sendfile.append(sent)
        return sent

    def no_read(*args: object) -> int:
        raise AssertionError("an image was read through Python")

    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    monkeypatch.setattr(ZipStream, "readinto", no_read)
    progress: list[int] = []

    received, returned, error = _sent_by_send_to(record, names, tmp_path, block=100_000, on_progress=progress.append)

    assert error is None
    assert received == written
    assert returned == sum(progress) == len(written)
    assert sum(by_sendfile) == sum(image.size for image in record.images)  # every image byte, none else


@pytest.mark.parametrize("when", ["before its turn", "while it is sent"])
@pytest.mark.parametrize("how", ["same size", "shorter", "longer"])
def test_send_to_stops_the_archive_at_the_end_of_an_image_written_since_it_was_read(
    make_record: MakeRecord, tmp_path: Path, when: str, how: str
) -> None:
    images = {"01.jpg": os.urandom(5000), "02.jpg": os.urandom(5000), "03.jpg": os.urandom(5000)}
    record = _record(make_record, images)
    names = _names(record, metadata=None)
    archive = zipfile.ZipFile(io.BytesIO(_written(record, names, tmp_path)))
    second, third = archive.infolist()[1:3]
    path = record.images[1].path
    new = {"same size": os.urandom(5000), "shorter": os.urandom(2000), "longer": os.urandom(9000)}[how]
    # the progress callback runs between two pieces of 1000 bytes: the second puts the sender inside 02.jpg
    trigger = second.header_offset + 1 if when == "before its turn" else third.header_offset - 3000
    done = [0]

    def write_when_there(n: int) -> None:
        done[0] += n
        if done[0] >= trigger and path.read_bytes() != new:
            with path.open("r+b") as image:  # in place: the same file, as a platform rewriting it would
                image.write(new)
                image.truncate()

    received, returned, error = _sent_by_send_to(record, names, tmp_path, block=1000, on_progress=write_when_there)

    assert isinstance(error, RecordChangedError), f"no error: {returned} bytes sent"
    assert error.reason.startswith("image '02.jpg' changed after it was read (")
    assert len(received) <= third.header_offset  # no byte of the next part
    if when == "before its turn":
        assert len(received) <= second.header_offset + len(second.FileHeader())  # none of 02.jpg's bytes
