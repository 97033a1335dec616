"""``--state`` as a URL: every command on a shared PostgreSQL ledger, ``--lease``, what ``status`` shows
of the hosts, and the database password never shown.

A URL stays a URL (a path stays a path); ``FTPEXPORT_STATE`` works as ``--state`` does. The real
PostgreSQL of the fixtures (``pg_url``: a new database for the test) is logged in to in either of
libpq's ways, the fixture ``login``: the password written inside the URL, or in ``PGPASSWORD`` beside a
URL without it. Every output of every command (stdout, stderr, ``--log-file``, ``-vv``, ``--json``,
errors) is searched for the password, as written and percent-encoded.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import postgres
import pytest
from cli_runner import invoke
from click.testing import Result
from faults import closed_port
from polling import eventually
from processes import ExporterProcess, start_watch
from records import make_record
from rulefiles import ftp_destination, rule_document, write_rules
from servers import RunningServer

from ftpexport.ledger import Ledger, display_state, open_ledger

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FTP_PASSWORD_ENV = "STATE_URL_FTP_PASSWORD"

#: every command that reads or writes the ledger, with the arguments it needs besides --state
LEDGER_COMMANDS: dict[str, list[str]] = {
    "status": [],
    "status --json": ["--json"],
    "report": ["--since", "7d"],
    "report csv": ["--since", "7d", "--format", "csv"],
    "report json": ["--since", "7d", "--format", "json"],
    "history": [],
    "history --json": ["--json"],
    "retry": ["--all"],
    "retry --json": ["--all", "--json"],
}


@dataclass(frozen=True)
class Shared:
    """A shared ledger as the user gives it: the URL to pass, the env to run with, the password."""

    url: str
    env: dict[str, str]
    password: str
    #: the URL as every output may show it: no password
    shown: str

    def clean(self, *outputs: str | Result) -> None:
        """Fail if any output holds the password, as written or percent-encoded."""
        for output in outputs:
            text = output.output if isinstance(output, Result) else output
            for form in {self.password, quote(self.password, safe="")}:
                assert form not in text, f"the database password is shown:\n{text}"


@pytest.fixture(params=["password in the url", "PGPASSWORD"])
def login(
    request: pytest.FixtureRequest,
    pg_url: str,
    postgresql_session: postgres.PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Shared:
    """The test's database, logged in to with the password in the URL or in PGPASSWORD (not both)."""
    server = postgresql_session
    database = pg_url.rsplit("/", 1)[1]
    if request.param == "PGPASSWORD":
        return Shared(pg_url, dict(server.env), server.password, pg_url)
    monkeypatch.delenv("PGPASSWORD")
    return Shared(server.url(database, password=True), {}, server.password, pg_url)


def _fill(ledger: Ledger) -> dict[str, int]:
    """One delivered and one failed delivery of acme-motors; their ids."""
    ids = {}
    for record, result in (("veh-000001", "delivered"), ("veh-000002", "failed")):
        delivery = ledger.open_delivery(record_id=record, content_hash="h", client_id="acme-motors",
                                        destination="acme-motors/dms", record_path=f"/inbox/{record}",
                                        vin=f"VIN{record[-6:]:>14}")  # fmt: skip
        attempt = ledger.start_attempt(delivery.id, f"cid-{record}")
        if result == "delivered":
            ledger.succeed(delivery.id, attempt, [f"/dms/{record}.zip"], 1234)
        else:
            ledger.fail(delivery.id, attempt, "550 permission denied: /dms/veh-000002.zip", final=True)
        ids[record] = delivery.id
    return ids


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- a URL stays a URL, a path a path (no database needed)


@pytest.mark.parametrize("given", ["--state", "FTPEXPORT_STATE"])
@pytest.mark.parametrize("command", [*LEDGER_COMMANDS, "run", "watch"])
def test_a_url_of_no_known_backend_is_refused_by_every_command_naming_it_without_its_password(
    command: str, given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password, env_password = "pw-" + secrets.token_urlsafe(12), "env-" + secrets.token_urlsafe(12)
    monkeypatch.setenv("PGPASSWORD", env_password)
    url = f"mysql://exporter:{password}@db.example:3306/ledger?sslmode=require&password={password}"
    (tmp_path / "inbox").mkdir()
    write_rules(tmp_path / "rules", rule_document("acme-motors", []))
    args = ([tmp_path / "inbox", "--rules", tmp_path / "rules"] if command in ("run", "watch")
            else LEDGER_COMMANDS[command])  # fmt: skip
    state = ["--state", url] if given == "--state" else []
    env = {"FTPEXPORT_STATE": url} if given == "FTPEXPORT_STATE" else {}

    result = invoke(command.split()[0], *args, *state, env=env)

    assert result.exit_code == 2, result.output
    assert "--state mysql://exporter@db.example:3306/ledger?sslmode=require: no ledger backend" in result.stderr
    assert password not in result.output and env_password not in result.output
    assert "Traceback" not in result.output
    assert not list(Path.cwd().glob("mysql:*")), "a URL was taken for a file name"


def test_preview_with_a_url_state_protects_no_file_and_opens_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    password = "pw-" + secrets.token_urlsafe(12)
    url = f"postgresql://exporter:{password}@db.example/ledger"  # never dialled: preview opens no ledger

    result = invoke("preview", ROOT / "samples" / "veh-000124", "--rules", ROOT / "rules", "--state", url, "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["archive_listing"][0] == "wvwzzzauzlw000124_01.jpg"
    assert password not in result.output


def test_a_folder_is_still_refused_as_state_and_a_missing_file_named(tmp_path: Path) -> None:
    folder = invoke("status", "--state", tmp_path)
    assert folder.exit_code == 2
    assert f"Invalid value for '--state': File '{tmp_path}' is a directory." in folder.stderr

    missing = invoke("status", env={"FTPEXPORT_STATE": str(tmp_path / "none.sqlite3")})
    assert missing.exit_code == 2
    assert f"ftpexport: error: {tmp_path / 'none.sqlite3'}: no ledger here yet" in missing.stderr


@pytest.mark.parametrize("command", ["run", "watch"])
def test_lease_reaches_the_export_options_from_the_option_or_its_variable(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ftpexport.cli.export as export

    seen: list[Any] = []

    def instead(*args: Any, **kwargs: Any) -> Any:  # the export itself is not what this test is about
        seen.append(args[3])
        raise SystemExit(0)

    monkeypatch.setattr(export, "export_once" if command == "run" else "watch_inbox", instead)
    (tmp_path / "inbox").mkdir()
    write_rules(tmp_path / "rules", rule_document("acme-motors", []))
    base = [command, tmp_path / "inbox", "--rules", tmp_path / "rules", "--state", tmp_path / "l.sqlite3"]

    assert invoke(*base, "--lease", "3").exit_code == 0
    assert invoke(*base, env={"FTPEXPORT_LEASE": "7.5"}).exit_code == 0
    assert invoke(*base).exit_code == 0
    assert [options.lease for options in seen] == [3.0, 7.5, 20.0]
    assert seen[0].spool_dir == tmp_path / "l.sqlite3.spool"

    url = "postgresql://exporter@db.example/ledger"
    assert invoke(*base[:-2], "--state", url).exit_code == 0
    assert seen[-1].spool_dir is None  # each process of a shared ledger spools in a temporary folder
    assert not any("l.sqlite3" in str(path) for path, _ in seen[-1].protected)

    for bad in ("0", "-1", "nan", "inf", "abc"):
        refused = invoke(*base, env={"FTPEXPORT_LEASE": bad})
        assert refused.exit_code == 2, (bad, refused.output)
        assert "Invalid value for '--lease' from the environment variable FTPEXPORT_LEASE" in refused.stderr


# --- the reading commands on a real PostgreSQL


def test_every_ledger_command_works_on_a_database_and_never_shows_its_password(login: Shared) -> None:
    def run(name: str, *extra: str) -> Result:
        result = invoke(name.split()[0], *LEDGER_COMMANDS[name], *extra, "--state", login.url, env=login.env)
        assert result.exit_code == 0, (name, result.output)
        login.clean(result)
        return result

    # an empty database: the schema is made on first use, every command answers
    for name in LEDGER_COMMANDS:
        run(name)
    assert "nothing matches" in run("status").stdout
    assert _json(run("status --json"))["state"] == login.shown

    with open_ledger(login.url) as ledger:
        ids = _fill(ledger)

    status = _json(run("status --json"))
    assert {(r["destination"], r["delivered"], r["failed"]) for r in status["destinations"]} == {
        ("acme-motors/dms", 1, 1)
    }
    assert (status["state"], status["hosts"], status["held"]) == (login.shown, [], [])
    assert "550 permission denied" in run("status").stdout
    report = _json(run("report json"))
    assert [d["record_id"] for d in report["deliveries"]] == ["veh-000001"]
    assert "veh-000001" in run("report csv").stdout
    history = _json(run("history --json"))
    assert sorted(a["record_id"] for a in history["attempts"]) == ["veh-000001", "veh-000002"]
    requeued = _json(run("retry --json"))
    assert [d["id"] for d in requeued["requeued"]] == [ids["veh-000002"]]
    assert "0 failed deliveries requeued" in run("retry").stdout

    # debug logging of the database driver included
    verbose = invoke("-vv", "status", "--state", login.url, env=login.env)
    assert verbose.exit_code == 0, verbose.output
    login.clean(verbose)


def test_a_refused_login_names_the_database_without_any_password(login: Shared) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    if login.env:  # PGPASSWORD
        url, env = login.url, {"PGPASSWORD": wrong}
    else:
        url, env = login.url.replace(login.password, wrong), {}

    result = invoke("status", "--state", url, env=env)

    assert result.exit_code != 0, result.output
    assert login.shown in result.stderr, result.stderr
    assert wrong not in result.output
    login.clean(result)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["status"], ["history"], ["report", "--since", "2026-01-01"]], ids=str)
def test_a_reading_command_on_a_database_that_does_not_answer_says_so_within_seconds(command: list[str]) -> None:
    # an operator waiting at the prompt is told after 5 s, not after a daemon's 30 s retry window
    password = "pw-" + secrets.token_urlsafe(12)
    url = f"postgresql://ftpexport:{password}@127.0.0.1:{closed_port()}/ftpexport"

    result = invoke(*command, "--state", url)

    assert result.exit_code != 0, result.output
    assert "cannot reach the ledger's database (tried for 5 s)" in result.stderr, result.stderr
    assert password not in result.output
    assert "Traceback" not in result.output
    # the outage is told once; psycopg's pool, trying to reconnect, is not heard at this level
    assert result.stderr.count("ledger database unreachable, trying again for up to 5 s") == 1, result.stderr
    assert "error connecting in" not in result.stderr


def test_a_url_listing_several_servers_uses_the_one_that_answers_for_writes(login: Shared) -> None:
    # README: the hosts may list every node of a failover pair and let libpq pick the primary
    server = urlsplit(login.url).netloc.rpartition("@")[2]
    nodes = f"{server.split(':')[0]}:{closed_port()},{server}"  # the first one does not answer
    url = login.url.replace(server, nodes) + "?target_session_attrs=read-write"

    result = invoke("status", "--json", "--state", url, env=login.env)

    assert _json(result)["state"] == login.shown.replace(server, nodes) + "?target_session_attrs=read-write"
    login.clean(result)


# --- status: the hosts and what they hold


def test_status_shows_each_host_and_which_delivery_it_holds(login: Shared) -> None:
    with open_ledger(login.url) as ledger:
        ids = _fill(ledger)
        pending = ledger.open_delivery(record_id="veh-000003", content_hash="h", client_id="acme-motors",
                                       destination="acme-motors/dms", record_path="/inbox/veh-000003",
                                       vin="VIN000003")  # fmt: skip
        host = ledger.coordination
        host.register()
        assert host.claim(pending.id, "acme-motors/dms").ok
        assert host.take_slot("acme-motors/dms", 2) is not None

        document = _json(invoke("status", "--json", "--state", login.url, env=login.env))
        text = invoke("status", "--state", login.url, env=login.env)
        other = _json(invoke("status", "--json", "--client", "bravo-cars", "--state", login.url, env=login.env))
        host.leave()
        after = invoke("status", "--state", login.url, env=login.env)
        after_json = _json(invoke("status", "--json", "--state", login.url, env=login.env))

    [row] = document["hosts"]
    assert row | {"name": host.name, "alive": True, "deliveries": 1, "connections": 1} == row
    assert 0 <= row["heartbeat_age_seconds"] < 60
    [held] = document["held"]
    assert held | {"delivery_id": pending.id, "holder": host.name, "client_id": "acme-motors",
                   "destination": "acme-motors/dms", "record_id": "veh-000003"} == held  # fmt: skip
    assert ids["veh-000001"] not in [d["delivery_id"] for d in document["held"]]
    assert other["held"] == [] and len(other["hosts"]) == 1  # --client narrows the deliveries, not the hosts

    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    hosts_at = lines.index(f"hosts sharing {login.shown}:")
    assert lines[hosts_at + 1].split() == ["host", "alive", "last", "heartbeat", "deliveries", "connections"]
    [host_line] = lines[hosts_at + 3 : lines.index("", hosts_at)]
    assert host_line.startswith(host.name)
    assert host_line.split()[1] == "yes" and host_line.split()[-2:] == ["1", "1"]
    assert "deliveries held by a host:" in lines
    held_line = lines[lines.index("deliveries held by a host:") + 3]
    assert held_line.split()[:3] == [host.name, "acme-motors/dms", "veh-000003"]
    assert "left)" in held_line

    assert f"hosts sharing {login.shown}: none (no run or watch is using it)" in after.stdout
    assert "deliveries held by a host: none" in after.stdout
    assert (after_json["hosts"], after_json["held"]) == ([], [])
    login.clean(text, after)


def test_status_of_a_sqlite_file_has_no_hosts(tmp_path: Path) -> None:
    state = tmp_path / "ledger.sqlite3"
    with open_ledger(state) as ledger:
        _fill(ledger)

    document = _json(invoke("status", "--json", "--state", state))
    text = invoke("status", "--state", state)

    assert (document["state"], document["hosts"], document["held"]) == (str(state), [], [])
    assert "hosts" not in text.stdout and "held" not in text.stdout


# --- run and watch on a real PostgreSQL


@pytest.fixture
def acme_rules(tmp_path: Path, ftp_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(FTP_PASSWORD_ENV, ftp_server.password)
    folder = tmp_path / "rules"
    write_rules(folder, rule_document("acme-motors", [ftp_destination("dms", ftp_server, "dms", FTP_PASSWORD_ENV)]))
    return folder


def test_run_delivers_over_a_database_and_shows_no_password(
    login: Shared, tmp_path: Path, acme_rules: Path, ftp_server: RunningServer
) -> None:
    inbox = tmp_path / "inbox"
    for n in (1, 2):
        make_record(inbox, n, "acme-motors")
    log_file = tmp_path / "log" / "ftpexport.log"

    first = invoke("--log-file", log_file, "-vv", "run", inbox, "--rules", acme_rules, "--state", login.url,
                   "--lease", "5", env=login.env)  # fmt: skip
    again = invoke("run", inbox, "--rules", acme_rules, "--state", login.url, "--json", env=login.env)

    assert first.exit_code == 0, first.output
    assert "2 delivered" in first.stdout
    assert _json(again)["unchanged"] == 2
    assert sorted(p.name for p in (ftp_server.root / "dms").iterdir()) == ["WVWZZZAUZLW000001.zip",
                                                                          "WVWZZZAUZLW000002.zip"]  # fmt: skip
    status = _json(invoke("status", "--json", "--state", login.url, env=login.env))
    assert [(r["delivered"], r["pending"]) for r in status["destinations"]] == [(2, 0)]
    login.clean(first, again, log_file.read_text())
    assert not list(Path.cwd().glob("postgresql:*")), "a URL was taken for a file name (a lock, a spool)"


def test_watch_shares_a_database_shows_its_host_in_status_and_no_password(
    login: Shared, tmp_path: Path, acme_rules: Path, ftp_server: RunningServer
) -> None:
    inbox = tmp_path / "inbox"
    make_record(inbox, 1, "acme-motors")
    log_file = tmp_path / "watch.log"
    env = {**login.env, FTP_PASSWORD_ENV: ftp_server.password}

    def status() -> dict[str, Any]:
        return _json(invoke("status", "--json", "--state", login.url, env=login.env))

    def delivered(count: int) -> Callable[[], bool]:
        return lambda: [r["delivered"] for r in status()["destinations"]] == [count]

    daemon = start_watch(inbox, acme_rules, login.url, "--lease", "3", env=env)  # type: ignore[arg-type]
    second = ExporterProcess("--log-file", log_file, "-vv", "watch", inbox, "--rules", acme_rules,
                             "--state", login.url, "--lease", "3", env=env)  # fmt: skip
    with daemon, second:
        eventually(delivered(1), "the first record delivered")
        eventually(lambda: len(status()["hosts"]) == 2, "both watch processes in status")
        hosts = status()["hosts"]
        assert all(h["alive"] for h in hosts), hosts
        make_record(inbox, 2, "acme-motors")
        eventually(delivered(2), "the second record delivered")
        text = invoke("status", "--state", login.url, env=login.env)
        assert f"hosts sharing {login.shown}:" in text.stdout
        daemon.terminate()
        second.terminate()
        assert daemon.wait() == 0, daemon.stderr
        assert second.wait() == 0, second.stderr

    watching = daemon.logged("watching")
    assert watching and watching[0]["state"] == display_state(login.url) == login.shown
    assert status()["hosts"] == []  # each left on SIGTERM
    login.clean(daemon.stdout, daemon.stderr, second.stdout, second.stderr, log_file.read_text(), text)
