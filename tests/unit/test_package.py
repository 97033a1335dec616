"""package.py: names, the zip (order, bytes, determinism, streaming), loose files and metadata."""

from __future__ import annotations

import json
import os
import re
import shutil
import tracemalloc
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fifo_guard import without_hanging
from paths import RULES, SAMPLES
from pydantic import SecretStr
from records import VIN, MakeRecord, vehicle

from ftpexport import package as package_module
from ftpexport import zipstream as zipstream_module
from ftpexport.errors import NamingError, RecordChangedError, RecordError
from ftpexport.naming import NameTemplate
from ftpexport.package import (
    Package,
    PackageNames,
    build_package,
    metadata_document,
    refuse_unportable,
    render_names,
    template_context,
    write_zip,
)
from ftpexport.record import Record, load_record, open_image
from ftpexport.recordfiles import FilePolicy, Identity
from ftpexport.rules import PackageSpec, load_rule_file
from ftpexport.transport import Endpoint, upload_file
from ftpexport.transport.memory import BLOCK_SIZE as MEMORY_BLOCK
from ftpexport.transport.memory import MemoryServer

ACME = RULES / "acme-motors.yaml"
BRAVO = RULES / "bravo-cars.yaml"


def spec_of(rule_file: Path) -> PackageSpec:
    return load_rule_file(rule_file).package


def names_for(record: Record, spec: PackageSpec, origin: str = "rules/x.yaml") -> PackageNames:
    return render_names(
        record,
        fmt=spec.format,
        archive_name=spec.archive_name,
        image_name=spec.image_name,
        metadata_name=spec.metadata.name if spec.metadata else None,
        done_marker=spec.done_marker,
        origin=origin,
    )


def package_for(record: Record, spec: PackageSpec, workdir: Path) -> tuple[PackageNames, Package]:
    names = names_for(record, spec)
    workdir.mkdir(parents=True, exist_ok=True)
    return names, build_package(record, names, spec.metadata.fields if spec.metadata else None, workdir)


def spec(**package: Any) -> PackageSpec:
    return PackageSpec.model_validate(package)


# --- zip


def test_zip_holds_the_images_in_record_order_under_their_rendered_names(tmp_path: Path) -> None:
    record = load_record(SAMPLES / "veh-000123")

    names, package = package_for(record, spec_of(ACME), tmp_path)

    assert names.images == ("wvwzzz1jzxw000001_01.jpg", "wvwzzz1jzxw000001_02.jpg", "wvwzzz1jzxw000001_03.png")
    assert names.archive == "WVWZZZ1JZXW000001.zip"
    assert names.metadata == "WVWZZZ1JZXW000001.json"
    assert names.done_marker is None
    assert package.done_marker is None
    (artifact,) = package.files
    assert artifact.name == "WVWZZZ1JZXW000001.zip"
    archive_path = tmp_path / "WVWZZZ1JZXW000001.zip"
    assert artifact.size == archive_path.stat().st_size
    assert package.total_bytes == artifact.size
    with artifact.open() as stream:
        assert stream.read() == archive_path.read_bytes()
    with zipfile.ZipFile(archive_path) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [*names.images, "WVWZZZ1JZXW000001.json"]
        assert list(package.archive_listing) == archive.namelist()
        for image, name in zip(record.images, names.images, strict=True):
            assert archive.read(name) == image.path.read_bytes()
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
        assert {info.date_time for info in archive.infolist()} == {(2026, 11, 20, 14, 3, 0)}
        assert {info.external_attr >> 16 for info in archive.infolist()} == {0o100644}


def test_zip_metadata_holds_the_rule_fields_with_user_name_nested(tmp_path: Path) -> None:
    record = load_record(SAMPLES / "veh-000123")

    names, _ = package_for(record, spec_of(ACME), tmp_path)

    with zipfile.ZipFile(tmp_path / "WVWZZZ1JZXW000001.zip") as archive:
        raw = archive.read("WVWZZZ1JZXW000001.json")
    assert json.loads(raw) == {
        "id": "veh-000123",
        "vin": "WVWZZZ1JZXW000001",
        "stock_number": "A1234",
        "make": "Volkswagen",
        "model": "Golf",
        "year": 2021,
        "user": {"name": "Jeanne Dupont"},
        "processed_at": "2026-11-20T14:03:00+01:00",
        "extra": {"dealer_code": "ACM01"},
        "files": list(names.images),
    }
    assert "email" not in raw.decode()  # only the listed fields leave the platform


def test_metadata_keeps_the_listed_order_and_gives_null_for_missing_fields(make_record: MakeRecord) -> None:
    fields = vehicle()
    del fields["user"]
    record = load_record(make_record(fields=fields))

    raw = metadata_document(record, ["vin", "colour", "user.name", "extra.dealer_code", "extra.missing"], ("a.jpg",))

    assert raw.endswith(b"\n")
    document = json.loads(raw)
    assert document == {
        "vin": VIN,
        "colour": None,
        "user": {"name": None},
        "extra": {"dealer_code": "ACM01", "missing": None},
        "files": ["a.jpg"],
    }
    assert list(document) == ["vin", "colour", "user", "extra", "files"]


def test_metadata_is_utf8_without_escapes() -> None:
    record = load_record(SAMPLES / "veh-000124")

    raw = metadata_document(record, ["user.name"], ())

    assert "Marc Lefèvre".encode() in raw


def test_a_zip_without_metadata_holds_only_the_images(tmp_path: Path) -> None:
    record = load_record(SAMPLES / "veh-000123")

    _, package = package_for(record, spec(metadata=None), tmp_path)

    with zipfile.ZipFile(tmp_path / package.files[0].name) as archive:
        assert archive.namelist() == [f"{VIN.lower()}_0{n}.{ext}" for n, ext in ((1, "jpg"), (2, "jpg"), (3, "png"))]
    assert package.archive_listing == tuple(archive.namelist())


def test_the_zip_is_deterministic(tmp_path: Path) -> None:
    one = Path(shutil.copytree(SAMPLES / "veh-000123", tmp_path / "one" / "veh-000123"))
    two = Path(shutil.copytree(SAMPLES / "veh-000123", tmp_path / "elsewhere" / "other-name"))
    os.utime(two / "01.jpg", (1_000_000_000, 1_000_000_000))
    os.utime(two / "vehicle.json", (2_000_000_000, 2_000_000_000))
    (two / "02.jpg").chmod(0o600)

    built = []
    for n, folder in enumerate((one, one, two)):
        _, package = package_for(load_record(folder), spec_of(ACME), tmp_path / f"work{n}")
        with package.files[0].open() as stream:
            built.append(stream.read())

    assert len(built[0]) > 10_000
    assert built[0] == built[1] == built[2]


def test_a_record_without_date_gets_the_zip_epoch(make_record: MakeRecord, tmp_path: Path) -> None:
    fields = vehicle()
    del fields["processed_at"]
    record = load_record(make_record(fields=fields))

    _, package = package_for(record, spec(), tmp_path / "work")

    with zipfile.ZipFile(tmp_path / "work" / package.files[0].name) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_write_zip_streams_images_instead_of_reading_them_whole(make_record: MakeRecord, tmp_path: Path) -> None:
    size = 50 * 1024 * 1024
    folder = make_record(images={}, fields=vehicle(images=["big.jpg"]))
    with (folder / "big.jpg").open("wb") as sparse:
        sparse.truncate(size)
    record = load_record(folder)
    names = PackageNames(images=("big.jpg",), archive="big.zip", metadata=None, done_marker=None)
    target = tmp_path / "big.zip"

    tracemalloc.start()
    try:
        write_zip(record, names, None, target)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < size // 10, f"peak memory {peak} bytes for a {size}-byte image"
    with zipfile.ZipFile(target) as archive:
        (info,) = archive.infolist()
        assert (info.filename, info.file_size, info.compress_size) == ("big.jpg", size, size)
        with archive.open(info) as stream:
            assert stream.read(1024 * 1024) == bytes(1024 * 1024)


# --- loose files


def test_files_format_gives_loose_artifacts_in_order_with_metadata_last(tmp_path: Path) -> None:
    record = load_record(SAMPLES / "veh-000201")

    names, package = package_for(record, spec_of(BRAVO), tmp_path)

    stem = "VF3MCYHZRKS000201"
    assert names.archive is None
    assert [f.name for f in package.files] == [
        f"{stem}-1.jpg",
        f"{stem}-2.jpg",
        f"{stem}-3.png",
        f"{stem}-4.jpg",
        f"{stem}.json",
    ]
    for image, artifact in zip(record.images, package.files, strict=False):
        with artifact.open() as stream:
            assert stream.read() == image.path.read_bytes()
        assert artifact.size == image.size
    with package.files[-1].open() as stream:
        metadata = json.loads(stream.read())
    assert metadata["files"] == [f.name for f in package.files[:-1]]
    assert metadata["extra"] == {"branch": "Lyon"}
    assert metadata["user"] == {"name": "Sam Okafor"}
    # the done marker is separate, empty, and not among the files
    assert package.done_marker is not None
    assert package.done_marker.name == f"{stem}.done"
    assert package.done_marker.size == 0
    assert package.done_marker.open().read() == b""
    assert package.done_marker.name not in [f.name for f in package.files]
    assert package.archive_listing == ()
    assert package.total_bytes == sum(f.size for f in package.files)
    assert list(tmp_path.iterdir()) == []  # loose files need no work files


def test_artifacts_can_be_opened_more_than_once(tmp_path: Path) -> None:
    _, package = package_for(load_record(SAMPLES / "veh-000201"), spec_of(BRAVO), tmp_path)

    for artifact in (package.files[0], package.files[-1]):
        with artifact.open() as first, artifact.open() as second:
            assert first.read() == second.read()


# --- names


def test_image_templates_see_position_extension_and_file_name() -> None:
    record = load_record(SAMPLES / "veh-000201")

    names = names_for(record, spec(image_name="{{ n }}-{{ stem }}-{{ filename }}.{{ ext }}"))

    assert names.images == (
        "1-front-front.jpg.jpg",
        "2-side-side.jpg.jpg",
        "3-rear-rear.png.png",
        "4-interior-interior.jpg.jpg",
    )


def test_duplicate_image_names_are_a_naming_error() -> None:
    record = load_record(SAMPLES / "veh-000123")

    with pytest.raises(NamingError) as caught:
        names_for(record, spec(image_name="{{ vin }}.jpg"), origin="rules/acme-motors.yaml")

    assert caught.value.path == str(record.folder)
    assert caught.value.reason == (
        "rules/acme-motors.yaml: package.image_name gives two images the same name 'WVWZZZ1JZXW000001.jpg'"
    )
    assert "{{ vin }}_{{ n }}" in str(caught.value)


def test_a_metadata_name_equal_to_an_image_name_is_a_naming_error() -> None:
    record = load_record(SAMPLES / "veh-000123")
    same = spec(image_name="{{ n }}.{{ ext }}", metadata={"name": "1.jpg"}, format="files")

    with pytest.raises(NamingError, match=re.escape("two files of the package are both named '1.jpg'")):
        names_for(record, same)


def test_a_bad_rendered_name_names_the_rule_file_and_field(make_record: MakeRecord) -> None:
    record = load_record(make_record(fields=vehicle(stock_number="A/12")))

    with pytest.raises(NamingError) as caught:
        names_for(record, spec(archive_name="{{ stock_number }}.zip"), origin="rules/acme.yaml")
    assert "rules/acme.yaml: package.archive_name: template '{{ stock_number }}.zip' rendered 'A/12.zip'" in str(
        caught.value
    )

    names = names_for(record, spec(archive_name="{{ stock_number | safe_name }}_{{ vin }}.zip"))
    assert names.archive == f"A_12_{VIN}.zip"


def test_the_done_marker_is_rendered_and_checked_too(make_record: MakeRecord) -> None:
    record = load_record(make_record(fields=vehicle(make="../x")))

    with pytest.raises(NamingError, match=re.escape("package.done_marker: template")):
        names_for(record, spec(done_marker="{{ make }}.done"))


def test_template_context_is_a_copy_of_the_record_fields() -> None:
    record = load_record(SAMPLES / "veh-000123")

    context = template_context(record)
    context["vin"] = "changed"

    assert record.fields["vin"] == VIN


def test_name_templates_from_rules_are_compiled_objects() -> None:
    package = spec_of(ACME)

    assert isinstance(package.image_name, NameTemplate)
    assert package.image_name.kind == "file"


# --- only the files that were read: a file replaced or written after the record was read


SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- NOT THE RECORD'S"


def _read_record(make: MakeRecord) -> Record:
    return load_record(make(images={"01.jpg": b"\xff\xd8one\xff\xd9", "02.jpg": b"\xff\xd8two\xff\xd9"}))


def _rename_over(path: Path, content: bytes) -> None:
    """Put another file in ``path``'s place, as ``mv other path`` does (a hard link to it stays out of the record)."""
    other = path.with_name(".swap")
    other.write_bytes(content)
    os.link(other, path.parent.parent / "kept-link")  # the file has two names, as a linked secret would
    other.replace(path)


def _nothing_holds_the_secret(folder: Path) -> None:
    for path in folder.rglob("*"):
        assert not path.is_file() or SECRET not in path.read_bytes(), path


@pytest.mark.parametrize("how", ["same size", "shorter", "longer"])
def test_a_loose_image_written_while_it_is_sent_is_not_renamed_into_place(
    make_record: MakeRecord, tmp_path: Path, how: str
) -> None:
    content = os.urandom(5 * MEMORY_BLOCK)  # sent in several blocks: the write lands in the middle
    record = load_record(make_record(images={"01.jpg": content, "02.jpg": b"\xff\xd8two\xff\xd9"}))
    _, package = package_for(record, spec_of(BRAVO), tmp_path / "work")
    path = record.images[0].path
    new = {"same size": os.urandom(len(content)), "shorter": content[:100], "longer": content + b"more"}[how]
    server = MemoryServer()
    endpoint = Endpoint("ftp", "dms.example", 21, "acme", SecretStr("not-a-real-password"), timeout=30.0)

    def write_in_place(n: int) -> None:
        if path.read_bytes() != new:
            with path.open("r+b") as image:  # the same file, as a platform rewriting it would
                image.write(new)
                image.truncate()

    artifact = package.files[0]
    with server.transport(endpoint) as transport, pytest.raises(RecordChangedError) as caught:
        upload_file(transport, artifact.open, artifact.size, "", artifact.name, callback=write_in_place)

    assert caught.value.reason == (
        "image '01.jpg' changed after it was read (it was written while it was sent); the record will be read again"
    )
    assert server.renames == {}  # nothing took the image's name on the server
    assert server.listing() == {}  # and what was sent under its temporary name is gone

@pytest.mark.parametrize("rules", [ACME, BRAVO], ids=["zip", "files"])
def test_an_image_renamed_over_after_the_record_was_read_is_refused_when_packaging(
    make_record: MakeRecord, tmp_path: Path, rules: Path
) -> None:
    record = _read_record(make_record)
    _rename_over(record.images[1].path, SECRET)
    work = tmp_path / "work"

    with pytest.raises(RecordChangedError) as caught:
        package_for(record, spec_of(rules), work)

    assert caught.value.path == str(record.folder)
    assert caught.value.reason == (
        "image '02.jpg' changed after it was read (another file is in its place); the record will be read again"
    )
    assert list(work.iterdir()) == []  # no zip left behind


def test_a_loose_image_swapped_after_the_package_was_built_is_not_sent(make_record: MakeRecord, tmp_path: Path) -> None:
    record = _read_record(make_record)
    _, package = package_for(record, spec_of(BRAVO), tmp_path / "work")
    _rename_over(record.images[0].path, SECRET)

    with pytest.raises(RecordChangedError, match=re.escape("image '01.jpg' changed after it was read")):
        package.files[0].open()
    with package.files[1].open() as stream:  # the other image is still the one that was read
        assert stream.read() == b"\xff\xd8two\xff\xd9"


@pytest.mark.parametrize("stream", [True, False], ids=["streamed zip", "loose files"])
def test_the_check_before_a_transfer_opens_no_image_and_each_is_opened_once_to_send(
    make_record: MakeRecord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    record = load_record(make_record(), crc=lambda data: True)
    opened: list[str] = []

    def counting(record: Record, image: Any) -> Any:
        opened.append(image.path.name)
        return open_image(record, image)

    monkeypatch.setattr(package_module, "open_image", counting)
    monkeypatch.setattr(zipstream_module, "open_image", counting)
    spec_ = spec_of(ACME if stream else BRAVO)
    names = names_for(record, spec_)
    package = build_package(record, names, None, tmp_path, stream=stream)
    assert opened == []  # checked by their size and times: nothing opened yet

    for artifact in package.files:
        with artifact.open() as source:
            source.read()
    assert opened == [image.path.name for image in record.images]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed zip", "loose files"])
def test_an_image_made_a_symbolic_link_or_removed_after_it_was_read_fails_before_the_transfer(
    make_record: MakeRecord, tmp_path: Path, stream: bool
) -> None:
    linked = load_record(make_record("linked"), crc=lambda data: True)
    removed = load_record(make_record("removed"), crc=lambda data: True)
    spec_ = spec_of(ACME if stream else BRAVO)
    first = linked.images[0].path
    (tmp_path / "other.jpg").write_bytes(first.read_bytes())
    first.unlink()
    first.symlink_to(tmp_path / "other.jpg")
    removed.images[1].path.unlink()

    symlink = f"image '{first.name}' changed after it was read (it is now a symbolic link)"
    with pytest.raises(RecordChangedError, match=re.escape(symlink)):
        build_package(linked, names_for(linked, spec_), None, tmp_path / "work", stream=stream)
    gone = removed.images[1].path.name
    missing = f"image '{gone}' changed after it was read (No such file or directory)"
    with pytest.raises(RecordChangedError, match=re.escape(missing)):
        build_package(removed, names_for(removed, spec_), None, tmp_path / "work", stream=stream)


@pytest.mark.parametrize("rules", [ACME, BRAVO], ids=["zip", "files"])
def test_an_image_written_in_place_after_it_was_read_is_refused(
    make_record: MakeRecord, tmp_path: Path, rules: Path
) -> None:
    record = _read_record(make_record)
    path = record.images[0].path
    before = path.stat()
    path.write_bytes(b"\xff\xd8ONE\xff\xd9")  # the same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # its old time put back

    with pytest.raises(RecordChangedError, match=r"image '01.jpg' changed after it was read \(it was written since\)"):
        package_for(record, spec_of(rules), tmp_path / "work")


def test_a_write_that_size_and_times_do_not_show_is_caught_by_the_zips_hash(
    make_record: MakeRecord, tmp_path: Path
) -> None:
    record = _read_record(make_record)  # without CRC-32s (as preview reads it): the images are hashed again
    path = record.images[1].path
    path.write_bytes(b"\xff\xd8TWO\xff\xd9")
    # as if written within the file system's time resolution: the identity looks the same
    images = (record.images[0], replace(record.images[1], identity=Identity.of(path.stat())))
    changed = replace(record, images=images)
    work = tmp_path / "work"

    with pytest.raises(RecordChangedError, match=re.escape("an image changed after it was read (its bytes are not")):
        package_for(changed, spec_of(ACME), work)

    assert list(work.iterdir()) == []


def test_a_write_in_the_middle_that_size_and_times_do_not_show_is_caught_by_its_crc_before_the_next_image(
    make_record: MakeRecord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a record read as the exporter reads one it zips: with each image's CRC-32
    images = {"01.jpg": os.urandom(3000), "02.jpg": os.urandom(3000), "03.jpg": os.urandom(3000)}
    record = load_record(make_record(images=images, fields=vehicle(images=list(images))), crc=lambda data: True)
    path = record.images[1].path
    now = os.urandom(3000)
    path.write_bytes(now)
    # as if written within the file system's time resolution: the identity looks the same
    images_now = (record.images[0], replace(record.images[1], identity=Identity.of(path.stat())), record.images[2])
    opened: list[str] = []
    monkeypatch.setattr(
        package_module, "open_image", lambda record, image: opened.append(image.path.name) or open_image(record, image)
    )
    work = tmp_path / "work"

    with pytest.raises(RecordChangedError) as caught:
        package_for(replace(record, images=images_now), spec_of(ACME), work)

    assert opened == ["01.jpg", "02.jpg"]  # it failed at the end of 02.jpg: 03.jpg was not copied
    assert caught.value.reason == (
        f"image '02.jpg' changed after it was read (its bytes are not the ones read: CRC-32 {zlib.crc32(now):08x}, "
        f"{zlib.crc32(images['02.jpg']):08x} when the record was read); the record will be read again"
    )
    assert list(work.iterdir()) == []


def test_an_image_grown_after_it_was_read_is_refused(make_record: MakeRecord, tmp_path: Path) -> None:
    record = _read_record(make_record)
    with record.images[0].path.open("ab") as stream:
        stream.write(SECRET)

    with pytest.raises(RecordChangedError, match=re.escape("image '01.jpg' changed after it was read")):
        package_for(record, spec_of(ACME), tmp_path / "work")
    _nothing_holds_the_secret(tmp_path / "work")


@pytest.mark.parametrize("rules", [ACME, BRAVO], ids=["zip", "files"])
def test_a_fifo_put_in_an_images_place_after_it_was_read_does_not_hang_the_package(
    make_record: MakeRecord, tmp_path: Path, rules: Path
) -> None:
    record = _read_record(make_record)
    path = record.images[0].path
    path.unlink()
    os.mkfifo(path)

    with pytest.raises(RecordChangedError, match=re.escape("image '01.jpg' changed after it was read")):
        without_hanging(path, lambda: package_for(record, spec_of(rules), tmp_path / "work"))


def test_a_record_read_with_hard_links_allowed_packages_the_linked_file(
    make_record: MakeRecord, tmp_path: Path
) -> None:
    (tmp_path / "shared.jpg").write_bytes(b"\xff\xd8shared\xff\xd9")
    folder = make_record(images={"01.jpg": b"\xff\xd8one\xff\xd9"}, fields=vehicle(images=["01.jpg", "02.jpg"]))
    os.link(tmp_path / "shared.jpg", folder / "02.jpg")
    record = load_record(folder, FilePolicy(allow_hardlinks=True))

    names, package = package_for(record, spec_of(ACME), tmp_path / "work")

    with zipfile.ZipFile(tmp_path / "work" / package.files[0].name) as archive:
        assert archive.read(names.images[1]) == b"\xff\xd8shared\xff\xd9"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_the_metadata_writer_never_emits_nan_or_infinity(make_record: MakeRecord, value: float) -> None:
    record = load_record(make_record())
    # load_record refuses them: a record made some other way must not get them out either
    poisoned = replace(record, fields={**record.fields, "extra": {"price": value}})

    with pytest.raises(RecordError, match="the metadata file would hold NaN or Infinity"):
        metadata_document(poisoned, ["vin", "extra.price"], ("a.jpg",))


# --- names at each destination: portable unless the destination's server is POSIX-only

PORTABILITY_RULES = """
client_id: acme-motors
destinations:
  - {name: windows, url: "ftps://acme@win.example/in", password: "${P}"}
  - {name: linux, url: "ftps://acme@nix.example/in", password: "${P}", names: posix}
package:
  archive_name: "{{ stock_number }}.zip"
  image_name: "{{ stem }}.{{ ext }}"
"""


def plan_for(tmp_path: Path, make_record: MakeRecord, rules: str = PORTABILITY_RULES, **fields: Any) -> Any:
    from ftpexport.plan import plan_record
    from ftpexport.rules import load_rules, routes_for

    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "acme-motors.yaml").write_text(rules)
    ruleset = load_rules(folder)
    assert not ruleset.errors, ruleset.errors
    record = load_record(make_record(fields=vehicle(**fields)))
    routes = routes_for(ruleset, record)
    return plan_record(record, ruleset, routes)


@pytest.mark.parametrize("stock_number", ["CON", "aux", "lpt1", "Nul", "A:1", 'a"b', "A1|2"])
def test_a_name_windows_cannot_store_is_refused_naming_the_destination(
    tmp_path: Path, make_record: MakeRecord, stock_number: str
) -> None:
    with pytest.raises(NamingError) as caught:
        plan_for(tmp_path, make_record, stock_number=stock_number)

    assert f"acme-motors.yaml: destination windows: package.archive_name rendered '{stock_number}.zip'" in str(
        caught.value
    )
    assert "names: posix" in str(caught.value)


def test_a_posix_only_server_takes_the_wider_set(tmp_path: Path, make_record: MakeRecord) -> None:
    rules = PORTABILITY_RULES.replace('password: "${P}"}', 'password: "${P}", names: posix}', 1)

    plan = plan_for(tmp_path, make_record, rules, stock_number="CON")

    assert plan.names.archive == "CON.zip"
    assert [route.destination.name for route, _ in plan.routes] == ["windows", "linux"]


def test_names_that_differ_only_in_case_are_one_file_on_windows(tmp_path: Path, make_record: MakeRecord) -> None:
    images = {"a.jpg": b"\xff\xd8a", "A.jpg": b"\xff\xd8b"}
    folder = make_record(fields=vehicle(images=list(images)), images=images)
    record = load_record(folder)
    names = render_names(record, fmt="files", archive_name=NameTemplate("{{ vin }}.zip"),
                         image_name=NameTemplate("{{ stem }}.{{ ext }}"), metadata_name=None, done_marker=None,
                         origin="rules/acme.yaml", names="posix")  # fmt: skip
    assert names.images == ("a.jpg", "A.jpg")

    with pytest.raises(NamingError, match=r"'a\.jpg' and 'A\.jpg' differ only in case: a Windows server stores them"):
        refuse_unportable(names, where=str(folder), origin="rules/acme.yaml: destination dms")


def test_duplicates_are_found_after_nfc_normalisation(tmp_path: Path, make_record: MakeRecord) -> None:
    folder = make_record(fields=vehicle(images=["1.jpg", "2.jpg"], extra={"a": "Lefe\u0300vre", "b": "Lef\u00e8vre"}),
                         images={"1.jpg": b"\xff\xd81", "2.jpg": b"\xff\xd82"})  # fmt: skip
    record = load_record(folder)
    template = "{% if n == 1 %}{{ extra.a }}{% else %}{{ extra.b }}{% endif %}.jpg"

    with pytest.raises(NamingError, match=r"gives two images the same name 'Lef\u00e8vre\.jpg'"):
        render_names(record, fmt="files", archive_name=NameTemplate("{{ vin }}.zip"),
                     image_name=NameTemplate(template), metadata_name=None, done_marker=None,
                     origin="rules/acme.yaml")  # fmt: skip
