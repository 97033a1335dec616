"""Security end to end, against real servers: the secrets store, no leak anywhere, TLS, plain FTP.

- ``${secret:NAME}`` passwords and private keys from the encrypted store deliver to FTPS and SFTP;
- a missing secret fails its destination only, with a message naming the file, field and secret;
- a distinctive password and a private key never appear in any output, log, ledger byte or repr;
- FTPS refuses an untrusted certificate, a certificate for another host and a TLS 1.1 server;
- plain FTP needs ``allow_plain_ftp`` and is warned about.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import ssl
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from certificates import make_tls_files
from cli_runner import invoke
from click.testing import Result
from daemons import HOST
from servers import RunningServer, pyftpdlib_server

from ftpexport.ledger import SQLiteLedger
from ftpexport.plan import endpoint_for
from ftpexport.rules import client_routes, load_rules
from ftpexport.vault import KEY_ENV, KEY_FILE_ENV, STORE_ENV, LazyStore

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
#: veh-000124: client acme-motors, user u-7 (no destination of their own), zip WVWZZZAUZLW000124.zip
RECORD = "veh-000124"
ZIP = "WVWZZZAUZLW000124.zip"


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(autouse=True)
def _no_store_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (KEY_ENV, KEY_FILE_ENV, STORE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@dataclass
class Store:
    """A secrets store made with ``secrets init``; values go in with ``secrets set`` from stdin."""

    path: Path
    key_file: Path

    @property
    def options(self) -> list[str | Path]:
        return ["--secrets", self.path, "--secrets-key-file", self.key_file]

    def set(self, name: str, value: str) -> None:
        result = invoke(*self.options, "secrets", "set", name, input=value)
        assert result.exit_code == 0, result.output
        assert value.strip() not in result.output

    def run(self, *args: str | Path, input: str | None = None) -> Result:
        """``ftpexport [global options] --secrets S --secrets-key-file K COMMAND ...``: the global
        options (-vv, --log-file ...) come first in ``args``, up to the command."""
        index = next(i for i, a in enumerate(args) if str(a) in COMMANDS)
        return invoke(*args[:index], *self.options, *args[index:], input=input)


COMMANDS = {"run", "status", "retry", "test-connection", "secrets", "check", "preview", "history"}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    created = Store(tmp_path / "state" / "secrets.enc", tmp_path / "keys" / "secrets.key")
    result = invoke("--secrets", created.path, "secrets", "init", "--key-file", created.key_file)
    assert result.exit_code == 0, result.output
    return created


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    target = tmp_path / "inbox"
    target.mkdir()
    shutil.copytree(SAMPLES / RECORD, target / RECORD)
    return target


def _rules(tmp_path: Path, destinations: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "acme-motors.yaml").write_text(f"client_id: acme-motors\ndestinations:\n{destinations}")
    return folder


def _ftps(name: str, server: RunningServer, password: str, *, ca_file: Path | None, url: str | None = None) -> str:
    ca = f"\n    ca_file: {ca_file}" if ca_file else ""
    return f"""  - name: {name}
    url: {url or server.url("photos")}
    password: {password}{ca}
"""


def _sftp(name: str, server: RunningServer, auth: str) -> str:
    return f"""  - name: {name}
    url: {server.url(name)}
    host_key: "{server.host_key}"
    {auth}
"""


def _report(result: Result) -> dict[str, Any]:
    return json.loads(result.stdout)


def _by_destination(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["destination"]: d for d in report["deliveries"]}


def _key_text(server: RunningServer) -> str:
    assert server.client_key_file is not None
    return server.client_key_file.read_text()


# --- 1. the store end to end


def test_passwords_and_private_keys_from_the_store_deliver_to_ftps_and_sftp(
    tmp_path: Path, store: Store, inbox: Path, ftps_server: RunningServer, sftp_server: RunningServer
) -> None:
    store.set("acme-ftps", ftps_server.password + "\n")
    store.set("acme-sftp-key", _key_text(sftp_server))  # the key file's content, from stdin
    rules = _rules(
        tmp_path,
        _ftps("tls", ftps_server, "${secret:acme-ftps}", ca_file=ftps_server.ca_file)
        + _sftp("dms", sftp_server, "private_key: ${secret:acme-sftp-key}"),
    )
    assert invoke("check", rules).exit_code == 0

    result = store.run("run", inbox, "--rules", rules, "--state", tmp_path / "ledger.sqlite3", "--json")

    assert result.exit_code == 0, result.output
    report = _report(result)
    assert {d: o["result"] for d, o in _by_destination(report).items()} == {
        "acme-motors/tls": "delivered",
        "acme-motors/dms": "delivered",
    }
    assert _files(ftps_server.root) == {f"photos/{ZIP}"}
    assert _files(sftp_server.root) == {f"dms/{ZIP}"}
    assert (ftps_server.root / "photos" / ZIP).read_bytes() == (sftp_server.root / "dms" / ZIP).read_bytes()


def test_the_store_key_can_come_from_the_environment(
    tmp_path: Path,
    store: Store,
    inbox: Path,
    ftps_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store.set("acme-ftps", ftps_server.password)
    rules = _rules(tmp_path, _ftps("tls", ftps_server, "${secret:acme-ftps}", ca_file=ftps_server.ca_file))
    monkeypatch.setenv(KEY_ENV, store.key_file.read_text().strip())
    monkeypatch.setenv(STORE_ENV, str(store.path))

    result = invoke("run", inbox, "--rules", rules, "--state", tmp_path / "ledger.sqlite3")

    assert result.exit_code == 0, result.output
    assert _files(ftps_server.root) == {f"photos/{ZIP}"}


# --- 2. a missing secret


def test_a_missing_secret_fails_that_destination_only_and_says_what_to_do(
    tmp_path: Path, store: Store, inbox: Path, ftps_server: RunningServer, sftp_server: RunningServer
) -> None:
    store.set("acme-sftp-key", _key_text(sftp_server))
    rules = _rules(
        tmp_path,
        _ftps("tls", ftps_server, "${secret:nope}", ca_file=ftps_server.ca_file)
        + _sftp("dms", sftp_server, "private_key: ${secret:acme-sftp-key}"),
    )
    rule_file = str(rules / "acme-motors.yaml")

    result = store.run("run", inbox, "--rules", rules, "--state", tmp_path / "ledger.sqlite3", "--json")
    text = store.run("run", inbox, "--rules", rules, "--state", tmp_path / "other.sqlite3")

    assert result.exit_code == 1 and text.exit_code == 1
    deliveries = _by_destination(_report(result))
    assert deliveries["acme-motors/dms"]["result"] == "delivered"
    failed = deliveries["acme-motors/tls"]
    assert failed["result"] == "failed"
    for output in (failed["error"], text.stdout):
        assert rule_file in output
        assert "destination tls" in output and "password" in output
        assert "'nope'" in output
        assert "ftpexport secrets set nope" in output
    for output in (result.output, text.output):
        assert "Traceback" not in output
    assert _files(ftps_server.root) == set()
    assert _files(sftp_server.root) == {f"dms/{ZIP}"}


def _encrypted_key(tmp_path: Path) -> str:
    path = tmp_path / "encrypted_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(path)], check=True, capture_output=True
    )
    return path.read_text()


@pytest.mark.parametrize("kind", ["not-a-key", "encrypted-without-passphrase"])
def test_a_private_key_that_cannot_be_loaded_is_reported_without_its_content(
    tmp_path: Path, store: Store, inbox: Path, sftp_server: RunningServer, kind: str
) -> None:
    if kind == "not-a-key":
        content = (
            f"-----BEGIN OPENSSH PRIVATE KEY-----\n{secrets.token_urlsafe(60)}\n-----END OPENSSH PRIVATE KEY-----\n"
        )
        reason = "unreadable key"
    else:
        content = _encrypted_key(tmp_path)
        reason = "key_passphrase"
    store.set("acme-sftp-key", content)
    rules = _rules(tmp_path, _sftp("dms", sftp_server, "private_key: ${secret:acme-sftp-key}"))

    deliveries = _run_one(
        tmp_path, store, inbox, _sftp("dms", sftp_server, "private_key: ${secret:acme-sftp-key}"), "l"
    )
    probe = store.run("test-connection", "acme-motors", "--rules", rules, "--json")

    error = deliveries["acme-motors/dms"]["error"]
    assert deliveries["acme-motors/dms"]["result"] == "failed"
    assert "cannot load private_key" in error and reason in error, error
    assert probe.exit_code == 1
    assert "cannot load private_key" in probe.stdout
    body = content.splitlines()[1]
    for output in (error, probe.stdout, probe.stderr, (tmp_path / "l").read_bytes().decode("latin-1")):
        assert body[:40] not in output and body[-40:] not in output
    assert _files(sftp_server.root) == set()


# --- 3. nothing leaks


def _leak_forms(value: str) -> list[str]:
    """``value`` as it would show up raw, JSON-escaped or repr-escaped."""
    return [value, json.dumps(value)[1:-1], repr(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]]


def test_no_password_or_private_key_appears_in_any_output_log_ledger_or_repr(
    tmp_path: Path,
    store: Store,
    inbox: Path,
    ftps_server: RunningServer,
    sftp_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pyftpdlib.authorizers import DummyAuthorizer

    # SQLite folds the -wal file into the database when the last connection closes: keep a copy of
    # the -wal (and -shm) bytes of every ledger as it was just before each close.
    wal_snapshots: dict[str, bytes] = {}
    real_close = SQLiteLedger.close

    def close_after_snapshot(self: SQLiteLedger) -> None:
        for suffix in ("-wal", "-shm"):
            side = Path(f"{self.path}{suffix}")
            if side.exists():
                wal_snapshots[f"{side.name} before close #{len(wal_snapshots)}"] = side.read_bytes()
        real_close(self)

    monkeypatch.setattr(SQLiteLedger, "close", close_after_snapshot)

    token = secrets.token_urlsafe(24)
    password = f"{token}'\"\\q"
    key_text = _key_text(sftp_server)
    key_lines = key_text.splitlines()
    key_slice = key_lines[2][10:50]  # a distinctive 40 characters from the middle of the key
    assert len(key_slice) == 40
    store.set("acme-pw", password)
    store.set("acme-sftp-key", key_text)

    # a server whose password is ours: the success path
    home = tmp_path / "good-home"
    home.mkdir()
    authorizer = DummyAuthorizer()
    authorizer.add_user("leaktest", password, str(home), perm="elradfmwMT")
    with pyftpdlib_server("ftps", authorizer=authorizer) as good:
        rules = _rules(
            tmp_path,
            _ftps(
                "good-ftps",
                good,
                "${secret:acme-pw}",
                ca_file=good.ca_file,
                url=f"ftps://leaktest@{HOST}:{good.port}/in",
            )
            + _ftps("bad-ftps", ftps_server, "${secret:acme-pw}", ca_file=ftps_server.ca_file)
            + _sftp("sftp-key", sftp_server, "private_key: ${secret:acme-sftp-key}")
            + _sftp("bad-sftp", sftp_server, "password: ${secret:acme-pw}"),
        )
        log_file = tmp_path / "log.jsonl"
        state = tmp_path / "ledger.sqlite3"
        logging_options = ["-vv", "--log-format", "json", "--log-file", log_file]
        results: list[Result] = []

        def command(*args: str | Path) -> Result:
            result = store.run(*logging_options, *args)
            results.append(result)
            assert "Traceback" not in result.output
            return result

        first = command("run", inbox, "--rules", rules, "--state", state, "--json", "--retries", "0")
        command("status", "--state", state, "--json")
        command("status", "--state", state)
        command("retry", "--all", "--state", state, "--json")
        again = command("run", inbox, "--rules", rules, "--state", state, "--json", "--retries", "0")
        probe_text = command("test-connection", "acme-motors", "--rules", rules)
        probe_json = command("test-connection", "acme-motors", "--rules", rules, "--json")
        listed = command("secrets", "list", "--json")
        command("check", rules)
        command("check", rules, "--json")
        command("history", "--state", state)
        command("history", "--state", state, "--json")
        text_run = store.run("-vv", "run", inbox, "--rules", rules, "--state", tmp_path / "text.sqlite3")
        results.append(text_run)

        # the scenario did what it should: success where the password is right, refusal where it is wrong
        assert first.exit_code == 1 and again.exit_code == 1
        outcomes = {d: o["result"] for d, o in _by_destination(_report(first)).items()}
        assert outcomes == {
            "acme-motors/good-ftps": "delivered",
            "acme-motors/bad-ftps": "failed",
            "acme-motors/sftp-key": "delivered",
            "acme-motors/bad-sftp": "failed",
        }
        errors = {d: o["error"] for d, o in _by_destination(_report(again)).items() if o["result"] == "failed"}
        assert set(errors) == {"acme-motors/bad-ftps", "acme-motors/bad-sftp"}
        assert all("login" in e.lower() or "authentication" in e.lower() for e in errors.values()), errors
        assert _files(home) == {f"in/{ZIP}"}
        assert probe_text.exit_code == 1 and probe_json.exit_code == 1
        probe_ok = {d["destination"]: d["ok"] for d in _report(probe_json)["destinations"]}
        assert probe_ok == {
            "acme-motors/good-ftps": True,
            "acme-motors/bad-ftps": False,
            "acme-motors/sftp-key": True,
            "acme-motors/bad-sftp": False,
        }
        assert [e["name"] for e in json.loads(listed.stdout)] == ["acme-pw", "acme-sftp-key"]
        assert len(log_file.read_text().splitlines()) >= 4

        # the objects a bug report would print
        ruleset = load_rules(rules)
        lazy = LazyStore(store.path, store.key_file)
        objects: list[object] = [ruleset, lazy, *ruleset.clients.values()]
        for route in client_routes(ruleset, "acme-motors"):
            endpoint = endpoint_for(route, ruleset.source("acme-motors"), lazy)
            assert endpoint.password is not None or endpoint.private_key is not None
            objects += [route, route.destination, endpoint, endpoint.password, endpoint.private_key]

    haystacks: dict[str, str] = {}
    for i, result in enumerate(results):
        haystacks[f"command {i} {result.return_value!r} stdout"] = result.stdout
        haystacks[f"command {i} stderr"] = result.stderr
    haystacks["log file"] = log_file.read_text()
    for i, obj in enumerate(objects):
        haystacks[f"repr of object {i} ({type(obj).__name__})"] = repr(obj) + "\n" + str(obj)
    # every file ftpexport wrote: the ledgers with their -wal/-shm files, the store, the rules
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != store.key_file and not path.is_relative_to(home):
            haystacks[f"file {path.relative_to(tmp_path)}"] = path.read_bytes().decode("latin-1")
    for name, data in wal_snapshots.items():
        haystacks[name] = data.decode("latin-1")
    assert any(name.startswith("file ledger.sqlite3") for name in haystacks)
    assert any(name.startswith("ledger.sqlite3-wal") for name in wal_snapshots), sorted(wal_snapshots)

    needles = {"password": password, "password's random part": token, "private key": key_text}
    needles["private key slice"] = key_slice
    needles["store key"] = store.key_file.read_text().strip()
    leaks = [
        f"{what} in {where}"
        for where, text in haystacks.items()
        for what, value in needles.items()
        for form in _leak_forms(value)
        if form in text
    ]
    assert leaks == []


# --- 4. TLS


def _server_context(cert_file: Path, key_file: Path, *, tls11_only: bool = False) -> Any:
    from OpenSSL import SSL

    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    if tls11_only:
        context.set_min_proto_version(SSL.TLS1_1_VERSION)
        context.set_max_proto_version(SSL.TLS1_1_VERSION)
        context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    else:
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.use_certificate_chain_file(str(cert_file))
    context.use_privatekey_file(str(key_file))
    return context


def _run_one(tmp_path: Path, store: Store, inbox: Path, destinations: str, state: str) -> dict[str, dict[str, Any]]:
    rules = _rules(tmp_path, destinations)
    result = store.run("run", inbox, "--rules", rules, "--state", tmp_path / state, "--json", "--retries", "0")
    assert "Traceback" not in result.output
    deliveries = _by_destination(_report(result))
    assert result.exit_code == (0 if all(d["result"] == "delivered" for d in deliveries.values()) else 1)
    return deliveries


def test_ftps_verifies_the_certificate_against_the_system_cas_or_ca_file(
    tmp_path: Path, store: Store, inbox: Path, ftps_server: RunningServer, ftps_implicit_server: RunningServer
) -> None:
    store.set("ftps-pw", ftps_server.password)
    store.set("implicit-pw", ftps_implicit_server.password)
    explicit, implicit = ftps_server, ftps_implicit_server
    deliveries = _run_one(
        tmp_path,
        store,
        inbox,
        _ftps("no-ca", explicit, "${secret:ftps-pw}", ca_file=None, url=explicit.url("no-ca"))
        + _ftps("with-ca", explicit, "${secret:ftps-pw}", ca_file=explicit.ca_file, url=explicit.url("ca"))
        + _ftps("implicit-no-ca", implicit, "${secret:implicit-pw}", ca_file=None, url=implicit.url("no-ca"))
        + _ftps("implicit-ca", implicit, "${secret:implicit-pw}", ca_file=implicit.ca_file, url=implicit.url("ca")),
        "ledger.sqlite3",
    )

    for name in ("no-ca", "implicit-no-ca"):
        refused = deliveries[f"acme-motors/{name}"]
        assert refused["result"] == "failed"
        assert "certificate is not trusted" in refused["error"]
        assert "unable to get local issuer certificate" in refused["error"]  # the certificate problem
        assert "ca_file" in refused["error"]
    assert deliveries["acme-motors/with-ca"]["result"] == "delivered"
    assert deliveries["acme-motors/implicit-ca"]["result"] == "delivered"
    assert _files(explicit.root) == {f"ca/{ZIP}"}
    assert _files(implicit.root) == {f"ca/{ZIP}"}


def test_ftps_refuses_a_certificate_issued_for_another_host_name(tmp_path: Path, store: Store, inbox: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    tls = make_tls_files(other, names=("not-localhost.example",))
    ca_file, cert_file, key_file = tls.ca_file, tls.cert_file, tls.key_file
    with pyftpdlib_server("ftps", ssl_context=_server_context(cert_file, key_file)) as server:
        store.set("ftps-pw", server.password)
        by_name = f"ftps://{server.username}@localhost:{server.port}/photos"
        deliveries = _run_one(
            tmp_path,
            store,
            inbox,
            _ftps("by-name", server, "${secret:ftps-pw}", ca_file=ca_file, url=by_name)
            + _ftps("by-ip", server, "${secret:ftps-pw}", ca_file=ca_file, url=server.url("photos")),
            "ledger.sqlite3",
        )
        assert _files(server.root) == set()

    for name, host in (("by-name", "localhost"), ("by-ip", HOST)):
        refused = deliveries[f"acme-motors/{name}"]
        assert refused["result"] == "failed"
        assert "certificate is not trusted" in refused["error"]
        assert "mismatch" in refused["error"] and f"not valid for '{host}'" in refused["error"], refused["error"]
        assert "host name" in refused["error"]


def _tls11_client_context() -> ssl.SSLContext:
    reason = "this machine's OpenSSL cannot do TLS 1.1"
    if not ssl.HAS_TLSv1_1:
        pytest.skip(f"{reason}: ssl.HAS_TLSv1_1 is false ({ssl.OPENSSL_VERSION})")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 is deprecated, on purpose
            context.minimum_version = ssl.TLSVersion.TLSv1_1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(f"{reason}: {exc} ({ssl.OPENSSL_VERSION})")
    return context


def _tls_version_after_auth_tls(server: RunningServer, context: ssl.SSLContext) -> str | None:
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220")
        raw.sendall(b"AUTH TLS\r\n")
        assert reader.readline().startswith(b"234")
        try:
            with context.wrap_socket(raw, server_hostname=server.host) as tls:
                version = tls.version()
                tls.sendall(b"QUIT\r\n")
                tls.recv(64)
                return version
        except ssl.SSLError as exc:
            if any(word in str(exc) for word in ("NO_PROTOCOLS_AVAILABLE", "UNSUPPORTED_PROTOCOL")):
                pytest.skip(f"this machine's OpenSSL cannot do TLS 1.1: {exc} ({ssl.OPENSSL_VERSION})")
            raise


def test_ftps_refuses_a_server_that_only_speaks_tls_1_1(tmp_path: Path, store: Store, inbox: Path) -> None:
    tls = make_tls_files(tmp_path)
    context = _server_context(tls.cert_file, tls.key_file, tls11_only=True)
    with pyftpdlib_server("ftps", ssl_context=context) as server:
        # first prove that the server really speaks TLS 1.1, and nothing newer
        assert _tls_version_after_auth_tls(server, _tls11_client_context()) == "TLSv1.1"

        store.set("ftps-pw", server.password)
        deliveries = _run_one(
            tmp_path,
            store,
            inbox,
            _ftps("old-tls", server, "${secret:ftps-pw}", ca_file=tls.ca_file, url=server.url("photos")),
            "ledger.sqlite3",
        )
        assert _files(server.root) == set()

    refused = deliveries["acme-motors/old-tls"]
    assert refused["result"] == "failed"
    assert "TLS failed" in refused["error"]
    assert "PROTOCOL" in refused["error"].upper() and "VERSION" in refused["error"].upper(), refused["error"]
    assert "TLS 1.2+" in refused["error"]


# --- 5. plain FTP


def test_plain_ftp_needs_allow_plain_ftp_and_is_warned_about(
    tmp_path: Path, store: Store, inbox: Path, ftp_server: RunningServer
) -> None:
    store.set("ftp-pw", ftp_server.password)
    plain = f"""  - name: legacy
    url: {ftp_server.url("photos")}
    password: ${{secret:ftp-pw}}
"""
    rules = _rules(tmp_path, plain)
    rule_file = str(rules / "acme-motors.yaml")

    refused = invoke("check", rules)
    refused_json = invoke("check", rules, "--json")
    run_refused = store.run("run", inbox, "--rules", rules, "--state", tmp_path / "refused.sqlite3")

    assert refused.exit_code == 2 and refused_json.exit_code == 2
    assert f"{rule_file}: INVALID" in refused.stdout
    assert "destinations[0]" in refused.stdout and "allow_plain_ftp: true" in refused.stdout
    assert "unencrypted" in refused.stdout
    errors = json.loads(refused_json.stdout)["files"][rule_file]["errors"]
    assert [e["field"] for e in errors] == ["destinations[0]"]
    assert run_refused.exit_code != 0
    assert "rule file refused" in run_refused.stderr and "allow_plain_ftp" in run_refused.stderr
    assert _files(ftp_server.root) == set()  # nothing crossed the network in clear

    rules = _rules(tmp_path, plain + "    allow_plain_ftp: true\n")

    allowed = invoke("check", rules)
    allowed_json = invoke("check", rules, "--json")
    delivered = store.run("run", inbox, "--rules", rules, "--state", tmp_path / "allowed.sqlite3")

    assert allowed.exit_code == 0 and allowed_json.exit_code == 0
    assert f"{rule_file}: ok" in allowed.stdout
    assert "warning: destination legacy uses plain FTP" in allowed.stdout
    assert "unencrypted" in allowed.stdout
    assert any(
        "legacy" in w and "plain FTP" in w for w in json.loads(allowed_json.stdout)["files"][rule_file]["warnings"]
    )
    assert delivered.exit_code == 0, delivered.output
    assert _files(ftp_server.root) == {f"photos/{ZIP}"}
