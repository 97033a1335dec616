"""``ftpexport secrets init/set/list/remove/rotate-key`` and ``check``'s refusal of literal secrets.

The commands run in-process with CliRunner; values go in through stdin only and never come out.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import invoke
from click.testing import Result
from cryptography.fernet import Fernet

from ftpexport.vault import KEY_ENV, KEY_FILE_ENV, STORE_ENV, SecretsStore, read_key_file

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"

PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDistinctiveTestKeyMaterialThatMustNeverBePrintedAnywhere00\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


@pytest.fixture(autouse=True)
def _no_store_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (KEY_ENV, KEY_FILE_ENV, STORE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def _invoke(*args: str | Path, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    result = invoke(*args, input=input, env=env)
    assert "Traceback" not in result.output
    return result


class Store:
    """A store and its key file in tmp_path, and the commands run against them."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "state" / "secrets.enc"
        self.key_file = tmp_path / "keys" / "secrets.key"
        self.outputs: list[str] = []

    def run(self, *args: str | Path, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        result = _invoke("--secrets", self.path, "--secrets-key-file", self.key_file, *args, input=input, env=env)
        self.outputs += [result.stdout, result.stderr]
        return result

    def open(self) -> SecretsStore:
        return SecretsStore(self.path, read_key_file(self.key_file))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path)
    result = _invoke("--secrets", store.path, "secrets", "init", "--key-file", store.key_file)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(store.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert str(store.key_file) in result.stdout and str(store.path) in result.stdout
    assert read_key_file(store.key_file).get_secret_value() not in result.output
    return store


def _value() -> str:
    return f"pw-{secrets.token_urlsafe(18)}'\"\\"


def test_init_refuses_to_overwrite_a_key_file(store: Store) -> None:
    before = store.key_file.read_bytes()

    again = _invoke("--secrets", store.path, "secrets", "init", "--key-file", store.key_file)

    assert again.exit_code == 2
    assert str(store.key_file) in again.stderr and "exists already" in again.stderr
    assert store.key_file.read_bytes() == before


def test_init_on_an_existing_store_changes_nothing(store: Store, tmp_path: Path) -> None:
    store.run("secrets", "set", "acme-ftps", input="value-1234\n")
    before = store.path.read_bytes()
    other_key_file = tmp_path / "keys" / "other.key"

    again = _invoke("--secrets", store.path, "secrets", "init", "--key-file", other_key_file)

    assert again.exit_code == 2
    assert str(store.path) in again.stderr and "exists already" in again.stderr
    assert store.path.read_bytes() == before
    assert store.open().get("acme-ftps").get_secret_value() == "value-1234"  # type: ignore[union-attr]
    # a refused init leaves no key behind (a key that opens nothing, and blocks the next init)
    assert not other_key_file.exists()


def test_a_tampered_or_foreign_store_is_a_clear_error_not_a_traceback(store: Store) -> None:
    store.run("secrets", "set", "acme-ftps", input="value-1234\n")
    raw = bytearray(store.path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    store.path.write_bytes(bytes(raw))

    tampered = store.run("secrets", "list")

    assert tampered.exit_code == 2
    assert "cannot open the secrets store" in tampered.stderr and str(store.path) in tampered.stderr

    # encrypted with the right key but not a store (another program's file, a future format)
    fernet = Fernet(read_key_file(store.key_file).get_secret_value().encode())
    store.path.write_bytes(fernet.encrypt(b"this is not a secrets store"))
    foreign = invoke("--secrets", store.path, "--secrets-key-file", store.key_file, "secrets", "list")

    assert isinstance(foreign.exception, SystemExit), foreign.exception
    assert foreign.exit_code == 2
    assert str(store.path) in foreign.stderr


def test_set_reads_the_value_from_stdin_and_list_shows_names_and_dates_only(store: Store) -> None:
    password = _value()

    stored = store.run("secrets", "set", "acme-ftps", input=password + "\n")
    key = store.run("secrets", "set", "acme-sftp-key", input=PRIVATE_KEY)
    replaced = store.run("secrets", "set", "acme-ftps", input=password + "\n")

    assert (stored.exit_code, key.exit_code, replaced.exit_code) == (0, 0, 0)
    assert "secret acme-ftps stored" in stored.stdout and "${secret:acme-ftps}" in stored.stdout
    assert "secret acme-ftps replaced" in replaced.stdout
    opened = store.open()
    # the trailing newline of the input is not part of a password; a private key keeps its own
    assert opened.get("acme-ftps").get_secret_value() == password  # type: ignore[union-attr]
    assert opened.get("acme-sftp-key").get_secret_value() == PRIVATE_KEY  # type: ignore[union-attr]

    text = store.run("secrets", "list")
    as_json = store.run("secrets", "list", "--json")

    assert text.exit_code == 0 and as_json.exit_code == 0
    assert [line.split()[0] for line in text.stdout.splitlines()] == ["acme-ftps", "acme-sftp-key"]
    entries = json.loads(as_json.stdout)
    assert [e["name"] for e in entries] == ["acme-ftps", "acme-sftp-key"]
    for entry in entries:
        assert set(entry) == {"name", "created", "updated"}
    for output in store.outputs:
        assert password not in output
        assert "DistinctiveTestKeyMaterial" not in output and "BEGIN OPENSSH" not in output


def test_an_empty_store_lists_nothing(store: Store) -> None:
    assert store.run("secrets", "list").stdout == "the store holds no secret\n"
    assert json.loads(store.run("secrets", "list", "--json").stdout) == []


def test_set_takes_no_value_from_the_command_line(store: Store) -> None:
    value = _value()

    extra = store.run("secrets", "set", "acme-ftps", value, input="from-stdin-1234\n")
    option = store.run("secrets", "set", "--value", value, "acme-ftps", input="from-stdin-1234\n")

    for result in (extra, option):
        assert result.exit_code == 2  # a usage error: nothing stored
        assert "Usage:" in result.stderr
    assert store.open().entries() == []
    assert store.open().get("acme-ftps") is None
    help_text = store.run("secrets", "set", "--help").stdout
    assert "--value" not in help_text and "stdin" in help_text


def test_set_refuses_an_empty_value_and_a_bad_name(store: Store) -> None:
    empty = store.run("secrets", "set", "acme-ftps", input="\n")
    bad_name = store.run("secrets", "set", "acme ftps", input="value-1234\n")

    assert empty.exit_code == 2 and "empty" in empty.stderr
    assert bad_name.exit_code == 2 and "not allowed" in bad_name.stderr
    assert store.open().entries() == []


def test_remove_deletes_a_secret_and_a_missing_one_is_a_clear_error(store: Store) -> None:
    store.run("secrets", "set", "acme-ftps", input="value-1234\n")
    store.run("secrets", "set", "other", input="value-5678\n")

    removed = store.run("secrets", "remove", "acme-ftps")
    missing = store.run("secrets", "remove", "acme-ftps")

    assert removed.exit_code == 0 and "secret acme-ftps removed" in removed.stdout
    assert missing.exit_code == 2
    assert "no secret named 'acme-ftps'" in missing.stderr
    assert [e.name for e in store.open().entries()] == ["other"]


def test_a_wrong_key_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    store.run("secrets", "set", "acme-ftps", input="value-1234\n")

    unsafe = tmp_path / "unsafe.key"
    unsafe.write_bytes(store.key_file.read_bytes())
    unsafe.chmod(0o644)
    open_to_all = _invoke("--secrets", store.path, "--secrets-key-file", unsafe, "secrets", "list")
    no_key = _invoke("--secrets", store.path, "secrets", "list")

    assert open_to_all.exit_code == 2 and "chmod 600" in open_to_all.stderr and str(unsafe) in open_to_all.stderr
    assert no_key.exit_code == 2 and KEY_FILE_ENV in no_key.stderr and KEY_ENV in no_key.stderr


def test_rotate_key_with_a_key_file_replaces_it_and_the_old_key_opens_nothing(store: Store) -> None:
    value = _value()
    store.run("secrets", "set", "acme-ftps", input=value + "\n")
    store.run("secrets", "set", "acme-sftp-key", input=PRIVATE_KEY)
    old_key = store.key_file.read_text().strip()

    rotated = store.run("secrets", "rotate-key")

    assert rotated.exit_code == 0, rotated.output
    assert "2 secrets re-encrypted" in rotated.stdout
    new_key = store.key_file.read_text().strip()
    assert new_key != old_key
    assert stat.S_IMODE(store.key_file.stat().st_mode) == 0o600
    for output in (rotated.stdout, rotated.stderr):
        assert old_key not in output and new_key not in output

    with_old = _invoke("--secrets", store.path, "secrets", "list", env={KEY_ENV: old_key})
    assert with_old.exit_code == 2
    assert "cannot open the secrets store" in with_old.stderr
    assert old_key not in with_old.output

    with_new = _invoke("--secrets", store.path, "secrets", "list", "--json", env={KEY_ENV: new_key})
    assert with_new.exit_code == 0
    assert [e["name"] for e in json.loads(with_new.stdout)] == ["acme-ftps", "acme-sftp-key"]
    assert store.open().get("acme-ftps").get_secret_value() == value  # type: ignore[union-attr]
    assert store.open().get("acme-sftp-key").get_secret_value() == PRIVATE_KEY  # type: ignore[union-attr]


def test_rotate_key_from_the_environment_asks_where_to_write_the_new_key(store: Store, tmp_path: Path) -> None:
    store.run("secrets", "set", "acme-ftps", input="value-1234\n")
    old_key = store.key_file.read_text().strip()
    store.key_file.unlink()  # the key lives in FTPEXPORT_SECRETS_KEY only
    env = {KEY_ENV: old_key}

    refused = _invoke("--secrets", store.path, "secrets", "rotate-key", env=env)

    assert refused.exit_code == 2
    assert "--new-key-file" in refused.stderr and KEY_ENV in refused.stderr
    assert old_key not in refused.output
    # nothing changed: the old key still opens the store
    assert _invoke("--secrets", store.path, "secrets", "list", env=env).exit_code == 0

    new_key_file = tmp_path / "new" / "secrets.key"
    rotated = _invoke("--secrets", store.path, "secrets", "rotate-key", "--new-key-file", new_key_file, env=env)

    assert rotated.exit_code == 0, rotated.output
    assert str(new_key_file) in rotated.stdout and KEY_ENV in rotated.stdout
    assert stat.S_IMODE(new_key_file.stat().st_mode) == 0o600
    new_key = read_key_file(new_key_file).get_secret_value()
    assert new_key != old_key and new_key not in rotated.output and old_key not in rotated.output
    assert _invoke("--secrets", store.path, "secrets", "list", env=env).exit_code == 2
    with_new = _invoke("--secrets", store.path, "secrets", "list", env={KEY_ENV: new_key})
    assert with_new.exit_code == 0 and with_new.stdout.startswith("acme-ftps ")
    with_file = _invoke("--secrets", store.path, "--secrets-key-file", new_key_file, "secrets", "list")
    assert with_file.exit_code == 0 and with_file.stdout.startswith("acme-ftps ")


def test_the_store_and_key_file_can_come_from_the_environment(store: Store) -> None:
    env = {STORE_ENV: str(store.path), KEY_FILE_ENV: str(store.key_file)}

    stored = _invoke("secrets", "set", "acme-ftps", input="value-1234\n", env=env)
    listed = _invoke("secrets", "list", env=env)

    assert stored.exit_code == 0 and str(store.path) in stored.stdout
    assert listed.stdout.startswith("acme-ftps ")


# --- check: literal secrets in rule files


def test_check_finds_no_literal_secret_in_the_example_rules() -> None:
    result = _invoke("check", RULES)
    as_json = _invoke("check", RULES, "--json")

    assert result.exit_code == 0, result.output
    assert as_json.exit_code == 0
    assert "never the secret itself" not in result.output
    assert all(entry["ok"] and not entry["errors"] for entry in json.loads(as_json.stdout)["files"].values())


@pytest.mark.parametrize(
    "field, literal",
    [
        ("password", "hunter2"),
        ("password", "hunter2-" + secrets.token_hex(6)),
        ("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\\nAAAAB3NzaC1yc2EhunterKeyMaterial\\n"),
        ("key_passphrase", "hunter2-passphrase"),
    ],
)
def test_check_refuses_a_literal_secret_and_says_how_to_store_it(tmp_path: Path, field: str, literal: str) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    if field == "password":
        destination = f'    url: ftps://acme@ftps.acme.example/photos\n    password: "{literal}"\n'
    else:
        key_file = "    key_file: id_ed25519\n" if field == "key_passphrase" else ""
        destination = (
            "    url: sftp://acme@dms.acme.example/in\n"
            '    host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"\n'
            f'{key_file}    {field}: "{literal}"\n'
        )
    (rules / "acme-motors.yaml").write_text(f"client_id: acme-motors\ndestinations:\n  - name: dms\n{destination}")

    text = _invoke("check", rules)
    as_json = _invoke("check", rules, "--json")

    assert text.exit_code == 2 and as_json.exit_code == 2
    assert f"destinations[0].{field}" in text.stdout
    assert "ftpexport secrets set" in text.stdout
    errors = json.loads(as_json.stdout)["files"][str(rules / "acme-motors.yaml")]["errors"]
    assert [e["field"] for e in errors] == [f"destinations[0].{field}"]
    assert "ftpexport secrets set" in errors[0]["reason"]
    for output in (text.stdout, text.stderr, as_json.stdout, as_json.stderr):
        assert "hunter" not in output and "BEGIN OPENSSH" not in output


def test_no_command_prints_a_key(store: Store) -> None:
    key = store.key_file.read_text().strip()
    store.run("secrets", "set", "acme-ftps", input="value-1234\n")
    store.run("secrets", "list")
    store.run("secrets", "list", "--json")
    store.run("secrets", "remove", "acme-ftps")
    store.run("secrets", "--help")

    for output in store.outputs:
        assert key not in output


@pytest.mark.parametrize("which", ["key", "store"])
def test_a_fifo_as_key_file_or_store_exits_2_at_once_naming_it(store: Store, tmp_path: Path, which: str) -> None:
    fifo = tmp_path / f"{which}.fifo"
    os.mkfifo(fifo, 0o600)
    key_file, store_file = (fifo, store.path) if which == "key" else (store.key_file, fifo)
    env = {**os.environ, "PYTHONPATH": str(ROOT), KEY_FILE_ENV: str(key_file), STORE_ENV: str(store_file)}
    try:
        # the timeout guards the test: opening a FIFO to read waits for a writer for ever
        done = subprocess.run([sys.executable, "-m", "ftpexport", "secrets", "list"], env=env, capture_output=True,
                              text=True, timeout=30, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"`secrets list` blocked on the FIFO {fifo}")
    assert done.returncode == 2, done.stderr
    what = f"key file {fifo}" if which == "key" else f"the secrets store {fifo}"
    assert done.stderr.startswith(f"ftpexport: error: {what} is a FIFO (named pipe), not a regular file (point "), (
        done.stderr
    )
    assert "Traceback" not in done.stderr
