"""vault.py: the encrypted secrets store behind ``${secret:NAME}``; no network.

What is checked: values only come back as ``SecretStr`` and are registered for ``redact``; the file
on disk shows neither values nor names; key files must be private (0600, our own uid) and valid;
a tampered store or a wrong key is a ``SecretError`` (never a cryptography exception); rotation,
including a crash half way through; name and size limits; ``${secret:NAME}`` resolution errors
that say where and what to do; reprs that never show a value.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_runner import invoke
from cryptography.fernet import Fernet
from filemodes import umask
from pydantic import SecretStr

from ftpexport import vault
from ftpexport.errors import SecretError
from ftpexport.rules import load_rules
from ftpexport.secret import MASK, SecretRef, parse_ref, redact
from ftpexport.transport import Endpoint
from ftpexport.vault import (
    KEY_ENV,
    KEY_FILE_ENV,
    MAX_VALUE_BYTES,
    STORE_ENV,
    LazyStore,
    SecretsStore,
    check_name,
    generate_key,
    load_key,
    open_store,
    read_key_file,
    write_private,
)

WHERE = "rules/acme-motors.yaml: destination tls: password"


@pytest.fixture(autouse=True)
def _no_store_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Whatever the machine has configured, these tests see no store, no key and a private cwd."""
    for name in (KEY_ENV, KEY_FILE_ENV, STORE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def _value() -> str:
    """A distinctive secret value, with a quote, a backslash and a non-ASCII letter."""
    return f"v-{secrets.token_urlsafe(18)}'\"\\é"


def _key_file(path: Path, key: SecretStr | None = None, mode: int = 0o600) -> Path:
    write_private(path, (key or generate_key()).get_secret_value().encode() + b"\n")
    path.chmod(mode)
    return path


@pytest.fixture
def key() -> SecretStr:
    return generate_key()


@pytest.fixture
def store(tmp_path: Path, key: SecretStr) -> SecretsStore:
    created = SecretsStore(tmp_path / "state" / "secrets.enc", key)
    created.create()
    return created


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- round trip


def test_set_get_list_remove_round_trip(store: SecretsStore, key: SecretStr) -> None:
    first, second = _value(), _value()

    assert store.set("acme-ftps", SecretStr(first)) is False
    assert store.set("acme.sftp_key-2", SecretStr(second)) is False
    assert store.set("acme-ftps", SecretStr(second + "new")) is True  # replaced

    got = store.get("acme-ftps")
    assert isinstance(got, SecretStr)
    assert got.get_secret_value() == second + "new"
    assert store.get("acme.sftp_key-2").get_secret_value() == second  # type: ignore[union-attr]
    assert store.get("nope") is None

    entries = store.entries()
    assert [e.name for e in entries] == ["acme-ftps", "acme.sftp_key-2"]
    for entry in entries:
        assert set(vars(entry)) == {"name", "created", "updated"}
        assert first not in repr(entry) and second not in repr(entry)
    replaced = entries[0]
    assert replaced.created <= replaced.updated

    # a second handle on the same file (another process) sees the same secrets
    again = SecretsStore(store.path, key)
    assert again.get("acme-ftps").get_secret_value() == second + "new"  # type: ignore[union-attr]

    assert store.remove("acme-ftps") is True
    assert store.remove("acme-ftps") is False
    assert store.get("acme-ftps") is None
    assert [e.name for e in again.entries()] == ["acme.sftp_key-2"]


def test_values_come_back_registered_for_redaction(store: SecretsStore, known_secrets: set[str]) -> None:
    value = _value()
    store.set("acme-ftps", SecretStr(value))
    known_secrets.clear()  # as in a new process: only reading the value may register it

    got = store.get("acme-ftps")

    assert isinstance(got, SecretStr)
    assert value not in repr(got) and value not in str(got)
    assert value in known_secrets
    assert redact(f"login with {value} failed") == f"login with {MASK} failed"


def test_the_store_file_shows_neither_values_nor_names_and_is_private(store: SecretsStore) -> None:
    name = "distinctive-name-" + secrets.token_hex(4)
    value = _value()
    store.set(name, SecretStr(value))

    raw = store.path.read_bytes()
    for clear in (name, value, value.encode().hex()):
        assert clear.encode() not in raw
    assert b"created" not in raw and b"secrets" not in raw
    assert _mode(store.path) == 0o600
    # no temporary file left beside it
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["secrets.enc"]


def test_secrets_init_writes_a_private_key_file_and_a_private_store(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "secrets.key"
    store_file = tmp_path / "state" / "secrets.enc"

    result = invoke("--secrets", store_file, "secrets", "init", "--key-file", key_file)

    assert result.exit_code == 0, result.output
    assert _mode(key_file) == 0o600
    assert _mode(store_file) == 0o600
    key = read_key_file(key_file)
    assert key.get_secret_value() not in result.output
    assert SecretsStore(store_file, key).entries() == []


def test_secrets_init_under_umask_022_makes_every_folder_and_file_it_creates_private(tmp_path: Path) -> None:
    with umask(0o022):
        result = invoke("secrets", "init", "--key-file", "keys/secrets.key")  # cwd: tmp_path

    assert result.exit_code == 0, result.output
    expected = {"keys": 0o700, "keys/secrets.key": 0o600, ".ftpexport": 0o700, ".ftpexport/secrets.enc": 0o600}
    assert {name: _mode(tmp_path / name) for name in expected} == expected


# --- key files


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610])
def test_a_key_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    key_file = _key_file(tmp_path / "secrets.key", mode=mode)

    for load in (lambda: read_key_file(key_file), lambda: load_key(key_file), lambda: open_store(None, key_file)):
        with pytest.raises(SecretError) as caught:
            load()
        message = str(caught.value)
        assert str(key_file) in message
        assert "chmod 600" in message
        assert f"{mode:04o}" in message


def test_a_key_file_from_the_environment_is_checked_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = _key_file(tmp_path / "secrets.key", mode=0o640)
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    # a good key in FTPEXPORT_SECRETS_KEY does not hide the unsafe key file
    monkeypatch.setenv(KEY_ENV, generate_key().get_secret_value())

    with pytest.raises(SecretError) as caught:
        load_key()

    assert str(key_file) in str(caught.value) and "chmod 600" in str(caught.value)


def test_a_key_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the key file to another uid")
    key_file = _key_file(tmp_path / "secrets.key")
    os.chown(key_file, 65534, 65534)

    with pytest.raises(SecretError) as caught:
        read_key_file(key_file)

    message = str(caught.value)
    assert str(key_file) in message
    assert "65534" in message


@pytest.mark.parametrize(
    "content",
    [
        b"not-a-key\n",
        b"",
        b"\n",
        Fernet.generate_key()[:-2] + b"\n",  # truncated
        b"\xff\xfe\x00binary",
        base64.urlsafe_b64encode(os.urandom(31)) + b"\n",  # 31 bytes, not 32
        base64.urlsafe_b64encode(os.urandom(48)) + b"\n",  # 48 bytes
    ],
    ids=["words", "empty", "newline", "truncated", "binary", "31-bytes", "48-bytes"],
)
def test_an_invalid_key_file_is_refused_clearly(tmp_path: Path, content: bytes) -> None:
    key_file = tmp_path / "secrets.key"
    write_private(key_file, content)

    with pytest.raises(SecretError) as caught:
        read_key_file(key_file)

    message = str(caught.value)
    assert str(key_file) in message
    assert "does not hold a valid key" in message
    if content.strip():
        assert content.strip().decode("ascii", "replace") not in message


def test_an_invalid_key_in_the_environment_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "short-" + secrets.token_hex(6)
    monkeypatch.setenv(KEY_ENV, wrong)

    with pytest.raises(SecretError) as caught:
        load_key()

    assert KEY_ENV in str(caught.value) and "does not hold a valid key" in str(caught.value)
    assert wrong not in str(caught.value)


def _without_blocking(call: Callable[[], object], fifo: Path | None = None) -> BaseException | None:
    """What ``call`` raised (None if nothing); fails the test if it is still blocked after 10 s (a FIFO
    opened for reading waits for a writer: one is opened then, so that the thread ends)."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout=10)
        pytest.fail(f"{call} blocked on {fifo}")
    return raised[0] if raised else None


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("fifo", "a FIFO (named pipe)"), ("folder", "a folder"), ("device", "a character device")],
)
def test_a_key_file_that_is_not_a_regular_file_is_refused_at_once_naming_what_it_is(
    tmp_path: Path, kind: str, expected: str
) -> None:
    key_file = tmp_path / "secrets.key"
    if kind == "fifo":
        os.mkfifo(key_file, 0o600)
    elif kind == "folder":
        key_file.mkdir(mode=0o700)
    else:
        key_file.symlink_to("/dev/null")  # a link is followed: what it leads to is checked

    for load in (lambda: read_key_file(key_file), lambda: open_store(tmp_path / "secrets.enc", key_file)):
        caught = _without_blocking(load, key_file if kind == "fifo" else None)
        assert isinstance(caught, SecretError), caught
        assert str(caught).startswith(f"key file {key_file} is {expected}, not a regular file (point {KEY_FILE_ENV}")


def test_a_key_file_reached_through_symbolic_links_is_read(tmp_path: Path, key: SecretStr) -> None:
    # how a Kubernetes secret volume mounts a key: secrets.key -> ..data/secrets.key -> ..2026_11_20/secrets.key
    _key_file(tmp_path / "..2026_11_20" / "secrets.key", key)
    (tmp_path / "..data").symlink_to("..2026_11_20")
    (tmp_path / "secrets.key").symlink_to("..data/secrets.key")

    assert read_key_file(tmp_path / "secrets.key").get_secret_value() == key.get_secret_value()


def test_a_store_that_is_a_fifo_is_refused_at_once(tmp_path: Path, key: SecretStr) -> None:
    fifo = tmp_path / "secrets.enc"
    os.mkfifo(fifo, 0o600)

    caught = _without_blocking(lambda: SecretsStore(fifo, key).entries(), fifo)

    assert isinstance(caught, SecretError), caught
    assert str(caught).startswith(f"the secrets store {fifo} is a FIFO (named pipe), not a regular file")


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as caught:
        read_key_file(tmp_path / "absent.key")

    assert str(tmp_path / "absent.key") in str(caught.value)


def test_no_key_configured_says_which_variables_to_set() -> None:
    for attempt in (load_key, lambda: open_store(Path("secrets.enc")), lambda: LazyStore().get("x")):
        with pytest.raises(SecretError) as caught:
            attempt()
        message = str(caught.value)
        assert "no key" in message
        assert KEY_FILE_ENV in message and KEY_ENV in message
        assert "secrets init" in message


def test_the_environment_key_opens_the_store(
    store: SecretsStore, key: SecretStr, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.set("acme-ftps", SecretStr("value-1234"))
    monkeypatch.setenv(KEY_ENV, key.get_secret_value() + "\n")
    monkeypatch.setenv(STORE_ENV, str(store.path))

    assert open_store().get("acme-ftps").get_secret_value() == "value-1234"  # type: ignore[union-attr]


# --- tampering and wrong keys


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_tampered_store_is_refused_with_a_secret_error(store: SecretsStore, key: SecretStr, where: str) -> None:
    store.set("acme-ftps", SecretStr(_value()))
    raw = bytearray(store.path.read_bytes())
    index = {"first": 0, "middle": len(raw) // 2, "last": len(raw) - 1}[where]
    raw[index] ^= 0x01
    store.path.write_bytes(bytes(raw))

    for read in (lambda: SecretsStore(store.path, key).entries(), lambda: SecretsStore(store.path, key).get("x")):
        with pytest.raises(SecretError) as caught:  # an InvalidToken or a binascii error would fail here
            read()
        assert type(caught.value) is SecretError
        message = str(caught.value)
        assert "cannot open" in message and str(store.path) in message and "with this key" in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("content", [b"", b"garbage", b"gAAAAA" + b"A" * 100])
def test_a_store_that_is_not_a_fernet_token_is_refused(store: SecretsStore, key: SecretStr, content: bytes) -> None:
    store.path.write_bytes(content)

    with pytest.raises(SecretError) as caught:
        SecretsStore(store.path, key).entries()

    assert "cannot open" in str(caught.value) and str(store.path) in str(caught.value)


@pytest.mark.parametrize(
    "document",
    [b"not json", b"[]", b'{"version": 1}', b'{"version": 1, "secrets": {"a": {}}}'],
    ids=["not-json", "a-list", "no-secrets", "entry-without-fields"],
)
def test_a_store_in_an_unexpected_format_is_a_secret_error(
    store: SecretsStore, key: SecretStr, document: bytes
) -> None:
    # Encrypted with the right key (another version of ftpexport, a hand-made file): still a clear error.
    store.path.write_bytes(Fernet(key.get_secret_value().encode()).encrypt(document))

    with pytest.raises(SecretError) as caught:
        SecretsStore(store.path, key).entries()

    assert str(store.path) in str(caught.value)


def test_another_key_cannot_open_the_store(store: SecretsStore) -> None:
    store.set("acme-ftps", SecretStr(_value()))

    with pytest.raises(SecretError) as caught:
        SecretsStore(store.path, generate_key()).get("acme-ftps")

    assert "cannot open the secrets store" in str(caught.value) and "with this key" in str(caught.value)


# --- rotation


def _fill(store: SecretsStore) -> dict[str, str]:
    values = {f"secret-{i}": _value() for i in range(3)}
    values["big-key"] = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "A" * 4000 + "\n-----END OPENSSH PRIVATE KEY-----\n"
    for name, value in values.items():
        store.set(name, SecretStr(value))
    return values


def _contents(store: SecretsStore) -> dict[str, str]:
    return {e.name: store.get(e.name).get_secret_value() for e in store.entries()}  # type: ignore[union-attr]


def test_rotate_re_encrypts_everything_and_the_old_key_opens_nothing(
    store: SecretsStore, key: SecretStr, tmp_path: Path
) -> None:
    values = _fill(store)
    key_file = _key_file(tmp_path / "secrets.key", key)
    new_key = generate_key()

    store.rotate(new_key, key_file)

    assert _mode(key_file) == 0o600
    assert read_key_file(key_file).get_secret_value() == new_key.get_secret_value()
    with pytest.raises(SecretError, match="with this key"):
        SecretsStore(store.path, key).entries()
    reopened = open_store(store.path, key_file)
    assert _contents(reopened) == values
    assert _contents(store) == values  # the rotating handle goes on with the new key
    assert _mode(store.path) == 0o600
    assert not store.path.with_name(store.path.name + ".rotating").exists()


def test_rotate_without_a_key_file_leaves_the_key_to_the_caller(store: SecretsStore, key: SecretStr) -> None:
    values = _fill(store)
    new_key = generate_key()

    store.rotate(new_key, None)

    with pytest.raises(SecretError):
        SecretsStore(store.path, key).entries()
    assert _contents(SecretsStore(store.path, new_key)) == values


def test_a_rotation_cut_after_the_key_file_is_finished_when_the_new_key_opens_the_store(
    store: SecretsStore, key: SecretStr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = _fill(store)
    key_file = _key_file(tmp_path / "secrets.key", key)
    pending = store.path.with_name(store.path.name + ".rotating")
    real_replace = os.replace

    def crash_on_final_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(src) == pending:
            raise OSError("simulated crash before the store's rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_final_rename)
    with pytest.raises(OSError, match="simulated crash"):
        store.rotate(generate_key(), key_file)
    monkeypatch.setattr(os, "replace", real_replace)

    # the crash left: the old store in place, the new one beside it, the new key in the key file
    new_key = read_key_file(key_file)
    assert new_key.get_secret_value() != key.get_secret_value()
    assert pending.exists() and _mode(pending) == 0o600
    Fernet(key.get_secret_value().encode()).decrypt(store.path.read_bytes())  # still under the old key
    Fernet(new_key.get_secret_value().encode()).decrypt(pending.read_bytes())
    # a process that starts now reads the key file: opening the store finishes the rotation
    reopened = open_store(store.path, key_file)
    assert _contents(reopened) == values
    assert not pending.exists()
    with pytest.raises(SecretError):
        SecretsStore(store.path, key).entries()


def test_a_rotation_cut_before_the_key_file_keeps_the_old_key_working(
    store: SecretsStore, key: SecretStr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = _fill(store)
    key_file = _key_file(tmp_path / "secrets.key", key)

    def crash(path: Path, data: bytes) -> None:
        if path == key_file:
            raise OSError("simulated crash before the key file was written")
        write_private(path, data)

    monkeypatch.setattr(vault, "write_private", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.rotate(generate_key(), key_file)
    monkeypatch.setattr(vault, "write_private", write_private)

    assert read_key_file(key_file).get_secret_value() == key.get_secret_value()
    assert _contents(open_store(store.path, key_file)) == values


def test_a_long_running_process_sees_secrets_set_after_it_started_and_survives_a_rotation(
    store: SecretsStore, key: SecretStr, tmp_path: Path
) -> None:
    # watch keeps one LazyStore for its lifetime; the operator uses the CLI meanwhile
    key_file = _key_file(tmp_path / "secrets.key", key)
    daemon = LazyStore(store.path, key_file)
    store.set("acme-ftps", SecretStr("first-value"))
    assert daemon.get("acme-ftps").get_secret_value() == "first-value"  # type: ignore[union-attr]

    operator = open_store(store.path, key_file)
    operator.set("acme-ftps", SecretStr("second-value"))
    operator.set("new-client", SecretStr("third-value"))
    assert daemon.get("acme-ftps").get_secret_value() == "second-value"  # type: ignore[union-attr]
    assert daemon.get("new-client").get_secret_value() == "third-value"  # type: ignore[union-attr]

    # secrets rotate-key replaces the key in the key file the daemon was configured with
    operator.rotate(generate_key(), key_file)
    assert daemon.get("acme-ftps").get_secret_value() == "second-value"  # type: ignore[union-attr]


# --- names and values


@pytest.mark.parametrize("name", ["a", "acme-ftps", "acme.sftp_key-2", "A" * 64, "0", "u-42"])
def test_good_names_are_accepted(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "A" * 65, "acme ftps", "a/b", "../x", "a:b", "${x}", "é", "a\n", "\nb", "a\x00b", "a\tb", "a\\b"],
)
def test_bad_names_are_refused(store: SecretsStore, name: str) -> None:
    with pytest.raises(SecretError) as caught:
        check_name(name)
    assert "not allowed" in str(caught.value)
    with pytest.raises(SecretError):
        store.set(name, SecretStr("value-1234"))
    assert store.entries() == []


def test_empty_and_oversized_values_are_refused(store: SecretsStore) -> None:
    with pytest.raises(SecretError, match="empty"):
        store.set("empty", SecretStr(""))
    with pytest.raises(SecretError, match="64 KB"):
        store.set("huge", SecretStr("x" * (MAX_VALUE_BYTES + 1)))
    # counted in bytes: 32 K two-byte characters is 64 KB + 2 bytes
    with pytest.raises(SecretError, match="64 KB"):
        store.set("huge", SecretStr("é" * (MAX_VALUE_BYTES // 2 + 1)))
    assert store.entries() == []

    store.set("just-fits", SecretStr("x" * MAX_VALUE_BYTES))
    assert len(store.get("just-fits").get_secret_value()) == MAX_VALUE_BYTES  # type: ignore[union-attr]


# --- ${secret:NAME} references


def test_a_store_reference_resolves_to_the_stored_value(store: SecretsStore, tmp_path: Path, key: SecretStr) -> None:
    value = _value()
    store.set("acme-ftps", SecretStr(value))
    key_file = _key_file(tmp_path / "secrets.key", key)

    resolved = parse_ref("${secret:acme-ftps}").resolve(where=WHERE, store=LazyStore(store.path, key_file))

    assert isinstance(resolved, SecretStr) and resolved.get_secret_value() == value


def test_a_store_reference_without_a_store_names_where() -> None:
    with pytest.raises(SecretError) as caught:
        parse_ref("${secret:acme-ftps}").resolve(where=WHERE, store=None)

    assert WHERE in str(caught.value)
    assert "${secret:acme-ftps}" in str(caught.value)


def test_a_store_reference_without_a_key_names_where_and_the_key_variables() -> None:
    with pytest.raises(SecretError) as caught:
        parse_ref("${secret:acme-ftps}").resolve(where=WHERE, store=LazyStore(Path("secrets.enc")))

    message = str(caught.value)
    assert WHERE in message and "acme-ftps" in message
    assert KEY_FILE_ENV in message and KEY_ENV in message


def test_a_store_reference_to_a_store_file_that_does_not_exist_names_where_and_the_store(
    tmp_path: Path,
) -> None:
    key_file = _key_file(tmp_path / "secrets.key")
    missing = tmp_path / "nowhere" / "secrets.enc"

    with pytest.raises(SecretError) as caught:
        parse_ref("${secret:acme-ftps}").resolve(where=WHERE, store=LazyStore(missing, key_file))

    message = str(caught.value)
    assert WHERE in message and "acme-ftps" in message and str(missing) in message


def test_a_missing_secret_names_where_the_secret_and_the_command_to_store_it(
    store: SecretsStore, tmp_path: Path, key: SecretStr
) -> None:
    store.set("other", SecretStr("value-1234"))
    key_file = _key_file(tmp_path / "secrets.key", key)

    with pytest.raises(SecretError) as caught:
        parse_ref("${secret:acme-ftps}").resolve(where=WHERE, store=LazyStore(store.path, key_file))

    message = str(caught.value)
    assert WHERE in message
    assert "'acme-ftps'" in message
    assert "ftpexport secrets set acme-ftps" in message
    assert str(store.path) in message


def test_a_store_that_cannot_be_opened_names_where(store: SecretsStore, tmp_path: Path) -> None:
    store.set("acme-ftps", SecretStr("value-1234"))
    wrong_key_file = _key_file(tmp_path / "wrong.key")

    with pytest.raises(SecretError) as caught:
        parse_ref("${secret:acme-ftps}").resolve(where=WHERE, store=LazyStore(store.path, wrong_key_file))

    assert WHERE in str(caught.value) and "with this key" in str(caught.value)


def test_no_repr_shows_a_value(store: SecretsStore, tmp_path: Path, key: SecretStr) -> None:
    password, private_key = _value(), "-----BEGIN OPENSSH PRIVATE KEY-----\n" + _value() + "\n-----END"
    store.set("acme-ftps", SecretStr(password))
    store.set("acme-sftp-key", SecretStr(private_key))
    key_file = _key_file(tmp_path / "secrets.key", key)
    lazy = LazyStore(store.path, key_file)
    ref = parse_ref("${secret:acme-ftps}")
    resolved = ref.resolve(where=WHERE, store=lazy)  # the lazy store is open now
    endpoint = Endpoint(
        scheme="sftp",
        host="127.0.0.1",
        port=22,
        username="acme",
        password=resolved,
        private_key=parse_ref("${secret:acme-sftp-key}").resolve(where=WHERE, store=lazy),
        key_passphrase=SecretStr(password),
        host_keys=("ssh-ed25519 AAAA",),
    )

    shown = [repr(store), str(store), repr(lazy), str(lazy), repr(ref), str(ref), repr(endpoint), str(endpoint)]
    shown += [repr(SecretRef(text="${secret:acme-ftps}", store_name="acme-ftps")), endpoint.display]
    shown += [repr(e) for e in store.entries()]
    for text in shown:
        assert password not in text
        assert private_key not in text and "BEGIN OPENSSH" not in text
        assert key.get_secret_value() not in text
    assert "secrets.enc" in repr(store) and "secrets.enc" in repr(lazy)


def test_loaded_rules_hold_references_not_values(tmp_path: Path, store: SecretsStore) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "acme-motors.yaml").write_text(
        """
client_id: acme-motors
destinations:
  - name: tls
    url: ftps://acme@ftps.acme.example/photos
    password: ${secret:acme-ftps}
  - name: dms
    url: sftp://acme@dms.acme.example/in
    host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    private_key: ${secret:acme-sftp-key}
"""
    )
    ruleset = load_rules(rules)
    assert ruleset.errors == {}
    destination = ruleset.clients["acme-motors"].destinations[1]
    assert destination.private_key == SecretRef(text="${secret:acme-sftp-key}", store_name="acme-sftp-key")
    assert "${secret:acme-ftps}" in ruleset.clients["acme-motors"].model_dump_json()
