"""record.py: loading a vehicle.json and its images, ordering, hashing, and every broken kind."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fifo_guard import without_hanging
from paths import RULES, SAMPLES
from records import VIN, MakeRecord, vehicle

from ftpexport import record as record_module
from ftpexport.errors import RecordError
from ftpexport.plan import file_policy
from ftpexport.record import MAX_RECORD_BYTES, is_complete, iter_record_folders, load_record, natural_key
from ftpexport.recordfiles import FilePolicy, own_files
from ftpexport.rules import load_rules

# --- valid records


def test_sample_record_loads_with_its_fields_and_images_in_listed_order() -> None:
    record = load_record(SAMPLES / "veh-000123")

    assert record.id == "veh-000123"
    assert record.client_id == "acme-motors"
    assert record.user_id == "u-42"
    assert record.data.vin == "WVWZZZ1JZXW000001"
    assert [image.path.name for image in record.images] == ["01.jpg", "02.jpg", "03.png"]
    assert [image.n for image in record.images] == [1, 2, 3]
    assert [image.ext for image in record.images] == ["jpg", "jpg", "png"]
    assert [image.size for image in record.images] == [
        (SAMPLES / "veh-000123" / name).stat().st_size for name in ("01.jpg", "02.jpg", "03.png")
    ]
    # templates see the JSON as written: dates stay strings
    assert record.fields["processed_at"] == "2026-11-20T14:03:00+01:00"
    assert record.data.processed_at is not None
    assert record.data.processed_at.utcoffset() is not None


def test_every_sample_loads() -> None:
    loaded = {folder.name: load_record(folder) for folder in iter_record_folders(SAMPLES)}

    assert sorted(loaded) == ["veh-000123", "veh-000124", "veh-000201"]
    assert [i.path.name for i in loaded["veh-000201"].images] == ["front.jpg", "side.jpg", "rear.png", "interior.jpg"]


def test_listed_order_wins_over_name_order(make_record: MakeRecord) -> None:
    folder = make_record(
        images={"a.jpg": b"a", "b.jpg": b"b", "c.png": b"c"},
        fields=vehicle(images=["c.png", "a.jpg", "b.jpg"]),
    )

    record = load_record(folder)

    assert [(i.path.name, i.n, i.ext) for i in record.images] == [
        ("c.png", 1, "png"),
        ("a.jpg", 2, "jpg"),
        ("b.jpg", 3, "jpg"),
    ]


def test_without_images_list_the_folder_images_come_in_natural_order() -> None:
    record = load_record(SAMPLES / "veh-000124")

    assert [image.path.name for image in record.images] == ["1.jpg", "2.jpg", "10.jpg"]
    assert [image.n for image in record.images] == [1, 2, 3]


def test_natural_order_skips_other_files_and_lowers_the_extension(make_record: MakeRecord) -> None:
    fields = vehicle()
    del fields["images"]
    folder = make_record(
        images={"10.JPG": b"10", "2.Png": b"2", "1.jpeg": b"1", "notes.txt": b"x", ".hidden.jpg": b"h"},
        fields=fields,
    )

    record = load_record(folder)

    assert [(i.path.name, i.n, i.ext) for i in record.images] == [
        ("1.jpeg", 1, "jpeg"),
        ("2.Png", 2, "png"),
        ("10.JPG", 3, "jpg"),
    ]


def test_natural_key_orders_numbers_by_value() -> None:
    assert sorted(["10.jpg", "2.jpg", "1.jpg", "img10.jpg", "img9.jpg"], key=natural_key) == [
        "1.jpg",
        "2.jpg",
        "10.jpg",
        "img9.jpg",
        "img10.jpg",
    ]


def test_unknown_top_level_fields_are_kept(make_record: MakeRecord) -> None:
    record = load_record(make_record(fields=vehicle(color="blue", options={"roof": "sun"})))

    assert record.fields["color"] == "blue"
    assert record.fields["options"] == {"roof": "sun"}


def test_a_symlink_to_an_image_inside_the_folder_is_accepted(make_record: MakeRecord) -> None:
    folder = make_record(images={"real.jpg": b"pixels"}, fields=vehicle(images=["link.jpg"]))
    (folder / "link.jpg").symlink_to("real.jpg")

    record = load_record(folder)

    assert [(i.path.name, i.size) for i in record.images] == [("real.jpg", 6)]


def test_images_read_through_a_linked_inbox_have_the_paths_resolve_gives(
    make_record: MakeRecord, tmp_path: Path
) -> None:
    # a plain image name is checked with one lstat, not resolve(): the path must be the same
    folder = make_record(images={"01.jpg": b"one", "02.jpg": b"two"}, fields=vehicle(images=["01.jpg", "02.jpg"]))
    linked = tmp_path / "inbox-link"
    linked.symlink_to(folder.parent)

    record = load_record(linked / folder.name)

    resolved = [(linked / folder.name / name).resolve() for name in ("01.jpg", "02.jpg")]
    assert [image.path for image in record.images] == resolved
    assert record.images[0].path.parent == folder.resolve() and record.flat


# --- completeness


def test_a_folder_without_vehicle_json_is_not_complete(make_record: MakeRecord) -> None:
    folder = make_record(write_json=False)

    assert is_complete(folder) is False
    with pytest.raises(RecordError) as caught:
        load_record(folder)
    assert caught.value.path == str(folder)
    assert "vehicle.json is missing" in caught.value.reason


def test_a_folder_with_vehicle_json_is_complete(make_record: MakeRecord) -> None:
    assert is_complete(make_record()) is True


def test_iter_record_folders_lists_subfolders_in_natural_order_without_hidden_ones(tmp_path: Path) -> None:
    for name in ("r10", "r2", ".tmp", "r1"):
        (tmp_path / name).mkdir()
    (tmp_path / "file.txt").write_text("x")

    assert [p.name for p in iter_record_folders(tmp_path)] == ["r1", "r2", "r10"]


def test_iter_record_folders_of_a_missing_inbox_is_a_record_error(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="the inbox folder does not exist"):
        list(iter_record_folders(tmp_path / "nope"))


# --- content hash


def _copy_sample(tmp_path: Path, name: str = "veh-000123", target: str = "copy") -> Path:
    return Path(shutil.copytree(SAMPLES / name, tmp_path / target))


def test_content_hash_is_stable_across_loads_and_folders(tmp_path: Path) -> None:
    first = load_record(SAMPLES / "veh-000123").content_hash
    again = load_record(SAMPLES / "veh-000123").content_hash
    elsewhere = load_record(_copy_sample(tmp_path)).content_hash

    assert len(first) == 64
    assert int(first, 16) >= 0  # hexadecimal
    assert first == again == elsewhere


def test_content_hash_changes_when_one_image_byte_changes(tmp_path: Path) -> None:
    folder = _copy_sample(tmp_path)
    before = load_record(folder).content_hash
    image = folder / "02.jpg"
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0x01
    image.write_bytes(bytes(data))

    assert load_record(folder).content_hash != before


def test_content_hash_changes_when_vehicle_json_changes(tmp_path: Path) -> None:
    folder = _copy_sample(tmp_path)
    before = load_record(folder).content_hash
    document = json.loads((folder / "vehicle.json").read_text())
    document["stock_number"] = "A1235"
    (folder / "vehicle.json").write_text(json.dumps(document))

    assert load_record(folder).content_hash != before


def test_content_hash_changes_when_the_image_order_changes(make_record: MakeRecord) -> None:
    images = {"a.jpg": b"aaaa", "b.jpg": b"bbbb"}
    one = load_record(make_record("one", images=images, fields=vehicle(images=["a.jpg", "b.jpg"])))
    two = load_record(make_record("two", images=images, fields=vehicle(images=["b.jpg", "a.jpg"])))

    assert one.content_hash != two.content_hash


# --- broken records: a RecordError naming the folder and the reason

Setup = Callable[[MakeRecord, Path], Path]


def _without(key: str) -> Setup:
    def setup(make: MakeRecord, tmp: Path) -> Path:
        fields = vehicle()
        del fields[key]
        return make(fields=fields)

    return setup


def _fields(**overrides: object) -> Setup:
    return lambda make, tmp: make(fields=vehicle(**overrides))


def _raw(content: bytes) -> Setup:
    return lambda make, tmp: make(raw=content)


def _image_link_outside(make: MakeRecord, tmp: Path) -> Path:
    (tmp / "outside.jpg").write_bytes(b"not yours")
    folder = make(images={"01.jpg": b"x"}, fields=vehicle(images=["01.jpg", "02.jpg"]))
    (folder / "02.jpg").symlink_to(tmp / "outside.jpg")
    return folder


def _unlisted_image_link_outside(make: MakeRecord, tmp: Path) -> Path:
    (tmp / "outside.jpg").write_bytes(b"not yours")
    fields = vehicle()
    del fields["images"]
    folder = make(images={"1.jpg": b"x"}, fields=fields)
    (folder / "2.jpg").symlink_to(tmp / "outside.jpg")
    return folder


def _json_link_outside(make: MakeRecord, tmp: Path) -> Path:
    (tmp / "elsewhere.json").write_text(json.dumps(vehicle()))
    folder = make(write_json=False)
    (folder / "vehicle.json").symlink_to(tmp / "elsewhere.json")
    return folder


def _listed_parent_name(make: MakeRecord, tmp: Path) -> Path:
    (tmp / "x.jpg").write_bytes(b"outside")
    return make(fields=vehicle(images=["01.jpg", "../x.jpg"]))


def _too_big(make: MakeRecord, tmp: Path) -> Path:
    document = json.dumps(vehicle(padding="x" * MAX_RECORD_BYTES)).encode()
    return make(raw=document)


def _image_symlink_loop(make: MakeRecord, tmp: Path) -> Path:
    folder = make(images={"01.jpg": b"x"})
    (folder / "02.jpg").symlink_to("02.jpg")
    return folder


def _json_symlink_loop(make: MakeRecord, tmp: Path) -> Path:
    folder = make(write_json=False)
    (folder / "vehicle.json").symlink_to("vehicle.json")
    return folder


def _json_is_a_folder(make: MakeRecord, tmp: Path) -> Path:
    folder = make(write_json=False)
    (folder / "vehicle.json").mkdir()
    return folder


def _unlisted() -> dict[str, Any]:
    fields = vehicle()
    del fields["images"]
    return fields


def _no_images_at_all(make: MakeRecord, tmp: Path) -> Path:
    fields = vehicle()
    del fields["images"]
    return make(images={"notes.txt": b"no photo here"}, fields=fields)


BROKEN: dict[str, tuple[Setup, str]] = {
    "invalid JSON": (_raw(b'{"id": "veh-1", '), "vehicle.json is not valid JSON"),
    "not UTF-8": (_raw(b'{"id": "\xff"}'), "vehicle.json is not valid JSON"),
    "JSON array": (_raw(b"[1, 2, 3]"), "vehicle.json must hold a JSON object"),
    "JSON string": (_raw(b'"veh-1"'), "vehicle.json must hold a JSON object"),
    "missing vin": (_without("vin"), "vin: Field required"),
    "missing client_id": (_without("client_id"), "client_id: Field required"),
    "missing id": (_without("id"), "id: Field required"),
    "VIN with I": (_fields(vin="WVWZZZ1JZXW00000I"), "vin: a VIN is 17 characters"),
    "VIN with O": (_fields(vin="WVWZZZ1JZXW00000O"), "vin: a VIN is 17 characters"),
    "VIN with Q": (_fields(vin="QVWZZZ1JZXW000001"), "vin: a VIN is 17 characters"),
    "VIN of 16": (_fields(vin=VIN[:16]), "vin: a VIN is 17 characters"),
    "VIN of 18": (_fields(vin=VIN + "1"), "vin: a VIN is 17 characters"),
    "VIN lower case": (_fields(vin=VIN.lower()), "vin: a VIN is 17 characters"),
    "VIN with a newline": (_fields(vin=VIN + "\n"), "vin: a VIN is 17 characters"),
    "VIN not a string": (_fields(vin=12345678901234567), "vin:"),
    "listed image missing": (
        _fields(images=["01.jpg", "03.jpg"]),
        "image '03.jpg' is listed in vehicle.json but is missing",
    ),
    "listed image twice": (_fields(images=["01.jpg", "01.jpg"]), "images lists '01.jpg' more than once"),
    "absolute image name": (_fields(images=["/etc/hostname"]), "is not a file name inside the record"),
    "image without extension": (
        lambda make, tmp: make(images={"photo": b"x"}, fields=vehicle(images=["photo"])),
        "image 'photo' has no extension",
    ),
    "image symlink outside": (_image_link_outside, "image '02.jpg' resolves outside the record folder"),
    "unlisted image symlink outside": (
        _unlisted_image_link_outside,
        "image '2.jpg' resolves outside the record folder",
    ),
    "vehicle.json symlink outside": (_json_link_outside, "vehicle.json resolves outside the record folder"),
    "listed ../x.jpg": (_listed_parent_name, "image '../x.jpg' resolves outside the record folder"),
    "vehicle.json over 1 MiB": (_too_big, f"more than the {MAX_RECORD_BYTES} allowed"),
    "100000 nested lists": (
        _raw(b'{"id": "veh-1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        "vehicle.json is nested too deeply",
    ),
    "date without UTC offset": (
        _fields(processed_at="2026-11-20T14:03:00"),
        "processed_at: the date needs a UTC offset",
    ),
    "date that is not a date": (_fields(processed_at="yesterday"), "processed_at:"),
    "no images at all": (_no_images_at_all, "the record has no images"),
    "empty images list": (_fields(images=[]), "the record has no images"),
    "images not a list": (_fields(images="01.jpg"), "images: Input should be a valid list"),
    "user without id": (_fields(user={"name": "Jeanne"}), "user.id: Field required"),
    "lone surrogate": (_raw(b'{"id": "veh-1", "stock_number": "\\ud800"}'), "not valid Unicode"),
    # Python 3.13's Path.resolve() no longer raises on a loop: the image then is not a file
    "image symlink loop": (
        _image_symlink_loop,
        "symlink loop" if sys.version_info < (3, 13) else "image '02.jpg' is listed in vehicle.json but is missing",
    ),
    "vehicle.json symlink loop": (_json_symlink_loop, "symlink loop"),
    "vehicle.json is a folder": (_json_is_a_folder, "vehicle.json is not a regular file"),
    "2000 listed images": (
        _fields(images=[f"{i}.jpg" for i in range(2000)]),
        "images: List should have at most 500 items",
    ),
    "2000 image files": (
        lambda make, tmp: make(images={f"{i}.jpg": b"x" for i in range(2000)}, fields=_unlisted()),
        "2000 images, more than the 500 allowed",
    ),
    # Python's json accepts NaN and Infinity (and 1e400 becomes Infinity): they are not JSON
    "NaN in a nested field": (
        _raw(json.dumps(vehicle(extra={"dealer_code": "ACM01", "price": float("nan")})).encode()),
        "vehicle.json: extra.price: NaN is not a JSON number",
    ),
    "Infinity in a list": (
        _raw(json.dumps(vehicle(extra={"prices": [1.5, float("inf")]})).encode()),
        "vehicle.json: extra.prices.1: Infinity (or a number too large) is not a JSON number",
    ),
    "-Infinity at the top level": (
        _raw(json.dumps(vehicle(mileage=float("-inf"))).encode()),
        "vehicle.json: mileage: -Infinity (or a number too large) is not a JSON number",
    ),
    "a number too large for a float": (
        _raw(json.dumps(vehicle(user={"id": "u-1"})).encode()[:-1] + b', "weight": 1e400}'),
        "vehicle.json: weight: Infinity (or a number too large) is not a JSON number",
    ),
    "NaN as the year": (_raw(json.dumps(vehicle(year=float("nan"))).encode()), "vehicle.json: year: NaN"),
}


@pytest.mark.parametrize("setup, reason", list(BROKEN.values()), ids=list(BROKEN))
def test_a_broken_record_names_the_folder_and_the_reason(
    make_record: MakeRecord, tmp_path: Path, setup: Setup, reason: str
) -> None:
    folder = setup(make_record, tmp_path)

    with pytest.raises(RecordError) as caught:
        load_record(folder)

    error = caught.value
    assert error.path == str(folder)
    assert str(error).startswith(f"{folder}: ")
    assert reason in error.reason, error.reason
    assert len(str(error)) < 600, "the message must stay one readable line"


def test_a_record_error_does_not_echo_large_invalid_json(make_record: MakeRecord) -> None:
    marker = "PAYLOAD-MARKER"
    folder = make_record(raw=('{"id": "' + marker * 20_000).encode())

    with pytest.raises(RecordError) as caught:
        load_record(folder)

    assert "not valid JSON" in caught.value.reason
    assert marker not in str(caught.value)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("field", ["vin", "id", "client_id", "processed_at", "year"])
def test_a_validation_error_does_not_echo_the_field_value(make_record: MakeRecord, field: str) -> None:
    marker = "ECHO" * 50_000
    folder = make_record(fields=vehicle(**{field: marker}))

    with pytest.raises(RecordError) as caught:
        load_record(folder)

    assert f"{field}:" in caught.value.reason
    assert "ECHOECHO" not in str(caught.value)
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize(
    ("fields", "field", "char"),
    [
        ({"id": "veh-1\x1b[2J"}, "id", "U+001B"),
        ({"id": "veh-1\nFORGED line"}, "id", "U+000A"),
        ({"client_id": "acme\u202e"}, "client_id", "U+202E"),
        ({"user": {"id": "u-42\x07"}}, "user.id", "U+0007"),
    ],
)
def test_an_id_that_is_not_text_is_refused_naming_the_field_and_the_character(
    make_record: MakeRecord, fields: dict[str, Any], field: str, char: str
) -> None:
    # ids are shown on terminals and in logs: an escape sequence or a newline there drives the
    # operator's terminal or forges a line
    folder = make_record(fields=vehicle(**fields))

    with pytest.raises(RecordError) as caught:
        load_record(folder)

    assert f"{field}: holds a control or invisible character ({char})" in str(caught.value)
    assert str(caught.value).isprintable()


def test_ids_with_spaces_accents_and_punctuation_are_taken(make_record: MakeRecord) -> None:
    folder = make_record(fields=vehicle(id="véh 1/2 #3", user={"id": "Jeanne Dupont-Müller"}))
    assert load_record(folder).id == "véh 1/2 #3"


def test_a_long_listed_image_name_is_cut_short_in_the_message(make_record: MakeRecord) -> None:
    name = "sub/" * 250 + ".jpg"  # long, but under the limit: reaches the file system check
    folder = make_record(fields=vehicle(images=[name]))

    with pytest.raises(RecordError) as caught:
        load_record(folder)

    assert "is listed in vehicle.json but is missing" in caught.value.reason
    assert "(1004 characters)" in caught.value.reason
    assert len(str(caught.value)) < 400


def test_an_image_name_the_file_system_refuses_is_a_record_error(make_record: MakeRecord) -> None:
    name = "n" * 300 + ".jpg"  # one component longer than 255 bytes: the OS says ENAMETOOLONG
    folder = make_record(fields=vehicle(images=[name]))

    with pytest.raises(RecordError) as caught:
        load_record(folder)

    assert caught.value.path == str(folder)
    assert "File name too long" in caught.value.reason
    assert "(304 characters)" in caught.value.reason
    assert len(str(caught.value)) < 400


def test_an_image_name_longer_than_the_os_allows_is_a_record_error(make_record: MakeRecord) -> None:
    folder = make_record(fields=vehicle(images=["A" * 5000 + ".jpg"]))

    with pytest.raises(RecordError) as caught:
        load_record(folder)

    assert "images.0" in caught.value.reason
    assert "AAAAAAAAAA" not in str(caught.value)


# --- only the record's own regular files (hard links, FIFOs, ftpexport's own files, races)


def test_a_non_finite_number_error_says_what_to_write_instead(make_record: MakeRecord) -> None:
    folder = make_record(raw=json.dumps(vehicle(extra={"price": float("nan")})).encode())

    with pytest.raises(RecordError) as caught:
        load_record(folder)

    assert caught.value.hint is not None and "finite number, null" in caught.value.hint


def _linked_record(make: MakeRecord, target: Path, name: str = "02.jpg") -> Path:
    """A record whose image ``name`` is a hard link to ``target``."""
    folder = make(images={"01.jpg": b"\xff\xd8own photo\xff\xd9"}, fields=vehicle(images=["01.jpg", name]))
    os.link(target, folder / name)
    return folder


def test_a_hard_linked_image_is_refused_by_default_naming_the_file_and_what_to_do(
    make_record: MakeRecord, tmp_path: Path
) -> None:
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:$6$secret-hash:19000:0:99999:7:::\n")
    folder = _linked_record(make_record, secret, "03.jpg")

    with pytest.raises(RecordError) as caught:
        load_record(folder)

    error = caught.value
    assert error.path == str(folder)
    assert "image '03.jpg' has 2 hard links" in error.reason
    assert error.hint is not None
    assert "copy the file into the record" in error.hint
    assert "--allow-hardlinks" in error.hint and "FTPEXPORT_ALLOW_HARDLINKS=1" in error.hint
    assert "secret-hash" not in str(error)


def test_an_unlisted_hard_linked_image_is_refused_too(make_record: MakeRecord, tmp_path: Path) -> None:
    (tmp_path / "elsewhere.jpg").write_bytes(b"someone else's")
    folder = make_record(images={"1.jpg": b"own"}, fields=_unlisted())
    os.link(tmp_path / "elsewhere.jpg", folder / "2.jpg")

    with pytest.raises(RecordError, match=re.escape("image '2.jpg' has 2 hard links")):
        load_record(folder)


def test_a_hard_linked_vehicle_json_is_refused_by_default(make_record: MakeRecord, tmp_path: Path) -> None:
    (tmp_path / "shared.json").write_text(json.dumps(vehicle()))
    folder = make_record(write_json=False)
    os.link(tmp_path / "shared.json", folder / "vehicle.json")

    with pytest.raises(RecordError, match=re.escape("vehicle.json has 2 hard links")):
        load_record(folder)
    assert load_record(folder, FilePolicy(allow_hardlinks=True)).id == "veh-1"


def test_hard_linked_images_are_delivered_when_the_operator_allows_them(
    make_record: MakeRecord, tmp_path: Path
) -> None:
    (tmp_path / "deduplicated.jpg").write_bytes(b"\xff\xd8the same photo\xff\xd9")
    folder = _linked_record(make_record, tmp_path / "deduplicated.jpg")

    record = load_record(folder, FilePolicy(allow_hardlinks=True))

    assert [(i.path.name, i.size) for i in record.images] == [("01.jpg", 13), ("02.jpg", 18)]
    assert record.images[1].identity.ino == (tmp_path / "deduplicated.jpg").stat().st_ino


def _own_files(tmp_path: Path) -> dict[str, Path]:
    state = tmp_path / "state"
    state.mkdir()
    files = {
        "the secrets store": state / "secrets.enc",
        "the secrets store's key file": tmp_path / "keys" / "secrets.key",
        "the ledger": state / "ledger.sqlite3",
        "the ledger-wal": state / "ledger.sqlite3-wal",
        "the ledger's lock file": state / "ledger.sqlite3.lock",
        "the log file": state / "ftpexport.log",
    }
    for path in files.values():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"OWN-FILE-CONTENT")
    return files


@pytest.mark.parametrize("allow_hardlinks", [False, True], ids=["default", "hard links allowed"])
@pytest.mark.parametrize(
    "which", ["the secrets store", "the secrets store's key file", "the ledger", "the ledger-wal",
              "the ledger's lock file", "the log file"],
)  # fmt: skip
def test_ftpexports_own_files_are_never_delivered_whatever_the_options(
    make_record: MakeRecord, tmp_path: Path, which: str, allow_hardlinks: bool
) -> None:
    files = _own_files(tmp_path)
    protected = own_files(
        store=files["the secrets store"],
        key_file=files["the secrets store's key file"],
        ledger=files["the ledger"],
        log_file=files["the log file"],
    )
    folder = _linked_record(make_record, files[which])

    with pytest.raises(RecordError) as caught:
        load_record(folder, FilePolicy(allow_hardlinks=allow_hardlinks, protected=protected))

    what = "the ledger" if which == "the ledger-wal" else which
    assert f"image '02.jpg' is {what} ({files[which]}): ftpexport never sends its own files" in caught.value.reason


def test_vehicle_json_linked_to_the_key_file_is_refused_even_with_hard_links_allowed(
    make_record: MakeRecord, tmp_path: Path
) -> None:
    key = tmp_path / "secrets.key"
    key.write_text(json.dumps(vehicle()))  # even one that would parse
    folder = make_record(write_json=False)
    os.link(key, folder / "vehicle.json")
    policy = FilePolicy(allow_hardlinks=True, protected=own_files(store=None, key_file=key, ledger=None, log_file=None))

    with pytest.raises(RecordError, match=re.escape("vehicle.json is the secrets store's key file")):
        load_record(folder, policy)


def test_the_sftp_key_files_of_the_rules_are_never_delivered(make_record: MakeRecord, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    key = rules / "keys" / "bravo_ed25519"  # bravo-cars.yaml: key_file: keys/bravo_ed25519
    key.parent.mkdir(exist_ok=True)
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    folder = _linked_record(make_record, key)
    policy = file_policy(load_rules(rules), allow_hardlinks=True, protected=())

    with pytest.raises(RecordError, match=re.escape("image '02.jpg' is an SFTP key file of the rules")):
        load_record(folder, policy)


def test_the_ftps_client_key_files_of_the_rules_are_never_delivered(make_record: MakeRecord, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    key = rules / "certs" / "client.key"
    key.parent.mkdir(parents=True)
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    (rules / "acme.yaml").write_text(
        "client_id: acme\ndestinations:\n  - name: dms\n    url: ftps://u@dms.example/\n    password: ${P}\n"
        "    client_cert: certs/client.pem\n    client_key_file: certs/client.key\n"
    )
    folder = _linked_record(make_record, key)
    policy = file_policy(load_rules(rules), allow_hardlinks=True, protected=())

    with pytest.raises(RecordError, match=re.escape("image '02.jpg' is an FTPS client key file of the rules")):
        load_record(folder, policy)


@pytest.mark.parametrize("listed", [True, False], ids=["listed", "unlisted"])
def test_a_fifo_image_is_refused_without_hanging(make_record: MakeRecord, listed: bool) -> None:
    fields = vehicle(images=["01.jpg", "02.jpg"]) if listed else _unlisted()
    folder = make_record(images={"01.jpg": b"x"}, fields=fields)
    os.mkfifo(folder / "02.jpg")

    with pytest.raises(RecordError) as caught:
        without_hanging(folder / "02.jpg", lambda: load_record(folder))

    assert "image '02.jpg' is not a regular file (a FIFO)" in caught.value.reason


def test_a_fifo_vehicle_json_is_refused_without_hanging(make_record: MakeRecord) -> None:
    folder = make_record(write_json=False)
    os.mkfifo(folder / "vehicle.json")

    with pytest.raises(RecordError, match=re.escape("vehicle.json is not a regular file (a FIFO)")):
        without_hanging(folder / "vehicle.json", lambda: load_record(folder))


def _after_resolving(monkeypatch: pytest.MonkeyPatch, swap: Callable[[Path], None]) -> None:
    """``swap(path)`` right after an image's path is resolved and found inside the record: a file
    replaced between that check and the open."""
    real = record_module._inside

    def inside(root: Path, folder: Path, entry: str, where: str, name: str) -> Path:
        resolved = real(root, folder, entry, where, name)
        if name.startswith("image"):
            swap(resolved)
        return resolved

    monkeypatch.setattr(record_module, "_inside", inside)


def test_an_image_replaced_by_a_symlink_after_the_check_is_not_followed(
    make_record: MakeRecord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secret.txt").write_bytes(b"NOT-THE-RECORD'S")
    folder = make_record(images={"01.jpg": b"own"}, fields=vehicle(images=["01.jpg"]))

    def swap(path: Path) -> None:
        path.unlink()
        path.symlink_to(tmp_path / "secret.txt")

    _after_resolving(monkeypatch, swap)

    with pytest.raises(RecordError, match=re.escape("image '01.jpg' is not a regular file (a symbolic link)")):
        load_record(folder)


def test_a_folder_replaced_by_a_symlink_after_the_check_is_not_followed(
    make_record: MakeRecord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "01.jpg").write_bytes(b"NOT-THE-RECORD'S")
    folder = make_record(images={}, fields=vehicle(images=["sub/01.jpg"]))
    (folder / "sub").mkdir()
    (folder / "sub" / "01.jpg").write_bytes(b"own")

    def swap(path: Path) -> None:
        path.parent.rename(folder / "old-sub")
        path.parent.symlink_to(outside)

    _after_resolving(monkeypatch, swap)

    with pytest.raises(RecordError, match="a folder on its way is now a symbolic link"):
        load_record(folder)


def test_the_content_hash_and_the_images_come_from_the_checked_file(make_record: MakeRecord) -> None:
    folder = make_record(images={"01.jpg": b"\xff\xd8one\xff\xd9"}, fields=vehicle(images=["01.jpg"]))

    record = load_record(folder)

    (image,) = record.images
    info = (folder / "01.jpg").stat()
    assert (image.identity.dev, image.identity.ino, image.identity.size) == (info.st_dev, info.st_ino, 7)
    assert (image.identity.mtime_ns, image.identity.ctime_ns) == (info.st_mtime_ns, info.st_ctime_ns)
    assert record.record_json == (folder / "vehicle.json").read_bytes()
