"""What an operator is told after a mistake: the wrong kind of folder, an empty one, a rule file
copied or misspelt, a bad option value or environment variable, a reader that went away."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from cli_runner import invoke
from processes import ExporterProcess, start_watch

from ftpexport.cli import cli

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"
SAMPLES = ROOT / "samples"


def _refused(*args: str | Path) -> tuple[int, str]:
    """Exit code and stderr of ``ftpexport ARGS`` in a process of its own: a `watch` that is not
    refused fails the test after 30 s instead of running for ever."""
    with ExporterProcess(*args) as process:
        code = process.wait(timeout=30)
    return code, process.stderr


# --- item 12: an inbox, a record, or neither


@pytest.mark.parametrize("command", ["run", "watch"])
def test_a_record_folder_given_as_the_inbox_is_refused_naming_its_parent(command: str, tmp_path: Path) -> None:
    code, stderr = _refused(command, SAMPLES / "veh-000123", "--rules", RULES, "--state", tmp_path / "l.sqlite3")
    assert code == 2, stderr
    assert stderr == (
        f"ftpexport: error: {SAMPLES / 'veh-000123'} is a record (it has vehicle.json), not an inbox "
        f"(pass the folder that holds the records: ftpexport {command} {SAMPLES})\n"
    )
    assert not (tmp_path / "l.sqlite3").exists()  # refused before anything started


def test_the_parent_of_the_inbox_is_refused_naming_the_inbox(tmp_path: Path) -> None:
    inbox = tmp_path / "data" / "inbox"
    shutil.copytree(SAMPLES, inbox)
    result = invoke("run", tmp_path / "data", "--rules", RULES, "--state", tmp_path / "l.sqlite3")
    assert result.exit_code == 2
    assert f"{tmp_path / 'data'} holds no record, but {inbox} does (e.g. veh-000123)" in result.stderr
    assert f"ftpexport run {inbox})" in result.stderr


def test_a_file_given_as_the_inbox_is_refused(tmp_path: Path) -> None:
    result = invoke("run", SAMPLES / "veh-000123" / "vehicle.json", "--rules", RULES, "--state", tmp_path / "l")
    assert result.exit_code == 2
    assert "vehicle.json is a file, not an inbox folder" in result.stderr


def test_run_on_an_inbox_without_records_says_so_and_exits_0(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    result = invoke("run", inbox, "--rules", RULES, "--state", tmp_path / "l.sqlite3")
    # nothing is owed: a cron job over an inbox the platform emptied is not a failure
    assert result.exit_code == 0, result.output
    assert f"ftpexport: {inbox} holds no record folder (one folder per vehicle, with its vehicle.json): " \
           "nothing to export\n" == result.stderr  # fmt: skip
    assert "0 delivered" in result.stdout

    (inbox / "01.jpg").write_bytes(b"x")
    (inbox / "vehicle.txt").write_bytes(b"x")
    loose = invoke("run", inbox, "--rules", RULES, "--state", tmp_path / "l.sqlite3")
    assert loose.exit_code == 0
    assert "(the 2 file(s) in it are not records: a record is a folder)" in loose.stderr

    quiet = invoke("-q", "run", inbox, "--rules", RULES, "--state", tmp_path / "l.sqlite3")
    assert quiet.exit_code == 0 and quiet.output == ""


def test_run_counts_the_record_folders_still_without_vehicle_json(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    for name in ("veh-1", "veh-2"):
        (inbox / name).mkdir(parents=True)
        (inbox / name / "01.jpg").write_bytes(b"x")
    result = invoke("run", inbox, "--rules", RULES, "--state", tmp_path / "l.sqlite3")
    assert result.exit_code == 0, result.output
    assert "2 record folder(s) without vehicle.json yet, left for later" in result.stdout


def test_watch_on_an_inbox_without_records_keeps_watching_and_logs_it(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    daemon = start_watch(inbox, RULES, tmp_path / "l.sqlite3")
    try:
        (warning,) = [e for e in daemon.events() if "holds no record folder" in e["message"]]
        assert warning["level"] == "warning"
        assert "watching for new ones (check the path if records were expected)" in warning["message"]
        assert daemon.alive()
    finally:
        daemon.terminate()
        assert daemon.wait() == 0


def test_preview_of_an_inbox_names_a_record_to_pass() -> None:
    result = invoke("preview", SAMPLES, "--rules", RULES)
    assert result.exit_code == 2
    assert result.stderr == (
        f"ftpexport: error: {SAMPLES} is an inbox (3 record folder(s) in it), not a record "
        f"(pass one of its record folders: ftpexport preview {SAMPLES / 'veh-000123'})\n"
    )
    assert "vehicle.json is missing" not in result.stderr


def test_preview_of_vehicle_json_or_of_nothing_says_what_to_pass(tmp_path: Path) -> None:
    file = invoke("preview", SAMPLES / "veh-000123" / "vehicle.json", "--rules", RULES)
    assert file.exit_code == 2
    assert f"ftpexport preview {SAMPLES / 'veh-000123'})" in file.stderr

    missing = invoke("preview", tmp_path / "veh-404", "--rules", RULES)
    assert missing.exit_code == 2
    assert f"{tmp_path / 'veh-404'}: the record folder does not exist" in missing.stderr


# --- item 15: check, rule files


def test_check_validates_one_rule_file(tmp_path: Path) -> None:
    good = invoke("check", RULES / "bravo-cars.yaml")
    assert good.exit_code == 0, good.output
    assert good.stdout.startswith(f"{RULES / 'bravo-cars.yaml'}: ok\n")
    assert "rules folder" not in good.output

    copied = tmp_path / "delta-cars.yaml"
    shutil.copy(RULES / "bravo-cars.yaml", copied)
    result = invoke("check", copied)
    assert result.exit_code == 2
    assert (
        "error: client_id: 'bravo-cars' does not match the file name delta-cars.yaml: "
        "rename the file to bravo-cars.yaml, or set client_id: delta-cars"
    ) in result.stdout

    other = tmp_path / "bravo-cars.txt"
    shutil.copy(RULES / "bravo-cars.yaml", other)
    refused = invoke("check", other)
    assert refused.exit_code == 2
    assert "is not a rule file: run and watch read only *.yaml and *.yml files" in refused.stderr


def test_an_empty_or_missing_rules_folder_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "rules"
    empty.mkdir()
    (empty / "README.txt").write_text("rule files go here")
    checked = invoke("check", empty)
    assert checked.exit_code == 2
    assert f"no rule files (*.yaml) in {empty}" in checked.stderr

    inbox = tmp_path / "inbox"
    shutil.copytree(SAMPLES, inbox)
    run = invoke("run", inbox, "--rules", empty, "--state", tmp_path / "l.sqlite3")
    assert run.exit_code == 2
    assert f"no rule files (*.yaml) in {empty}" in run.stderr

    missing = invoke("check", tmp_path / "nope")
    assert missing.exit_code == 2
    assert "--rules" not in missing.stderr  # check has no such option
    assert "pass a rules folder or one rule file" in missing.stderr

    file = invoke("run", inbox, "--rules", RULES / "bravo-cars.yaml", "--state", tmp_path / "l.sqlite3")
    assert file.exit_code == 2
    assert f"is a file, not the rules folder (pass --rules {RULES})" in file.stderr


def test_check_suggests_the_key_meant(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(
        """
client_id: acme
destinations:
  - {name: dms, url: 'ftps://u@h/x', password: '${P}', max_conections: 4, host_key: 'ssh-ed25519 AAAA'}
  - {name: box, url: 'sftp://u@h/x', password: '${P}', host_key: 'ssh-ed25519 AAAA', ca_file: ca.pem}
package:
  image_nam: "{{ vin }}.jpg"
retries: 2
"""
    )
    result = invoke("check", tmp_path)
    assert result.exit_code == 2
    out = result.stdout
    assert "error: destinations[0].max_conections: unknown key: did you mean 'max_connections'?" in out
    assert (
        "error: destinations[0].host_key: host_key applies to sftp:// destinations only "
        "(this destination's url is ftps://): remove it or change the url"
    ) in out
    assert "error: destinations[1].ca_file: ca_file applies to ftps:// and ftps+implicit:// destinations only" in out
    assert "error: package.image_nam: unknown key: did you mean 'image_name'?" in out
    assert "error: retries: unknown key here: retries belongs under upload" in out


# --- item 15: options and their environment variables

#: options without an environment variable, and why
NO_ENVVAR = {
    "--version": "prints the version and exits: not a setting",
    # what one query or action is about: a variable left set would silently narrow it (or, for
    # `retry --all`, widen it to every failed delivery)
    "--client": "selects",
    "--destination": "selects",
    "--record": "selects",
    "--all": "selects",
    "--user": "selects",
    "--since": "selects",
    "--until": "selects",
    "--day": "selects",
    "--failed": "selects",
    "--limit": "selects",
    "--format": "the shape of one report (a CSV for a spreadsheet)",
    "--key-file": "where `secrets init` writes a new key once; FTPEXPORT_SECRETS_KEY_FILE is the key in use",
    "--new-key-file": "where `secrets rotate-key` writes the new key once",
    "--samples": "the demo's own input, like INBOX",
}


def _commands(group: click.Group, path: str = "ftpexport") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = [(path, group)]
    context = click.Context(group)
    for name in group.list_commands(context):  # click's API: the main group loads its commands on use
        command = group.get_command(context, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            found += _commands(command, f"{path} {name}")
        else:
            found.append((f"{path} {name}", command))
    return found


def test_every_option_has_an_environment_variable_shown_in_help() -> None:
    meaning: dict[str, str] = {}
    for path, command in _commands(cli):
        help_text = " ".join(invoke(*path.split()[1:], "--help").stdout.split())
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            flag = max(param.opts, key=len)
            if flag in NO_ENVVAR:
                assert not param.envvar, f"{path} {flag} has {param.envvar}: remove it from NO_ENVVAR"
                continue
            assert isinstance(param.envvar, str), f"{path} {flag} has no environment variable"
            assert param.envvar.startswith("FTPEXPORT_"), (path, flag, param.envvar)
            # one variable means one thing, whichever command reads it
            assert meaning.setdefault(param.envvar, flag) == flag, (path, flag, param.envvar)
            assert f"env var: {param.envvar}" in help_text, (path, flag)
        assert "[env:" not in help_text  # the hand-written copies are gone


def test_a_bad_value_says_whether_it_came_from_the_environment(tmp_path: Path) -> None:
    args = ("run", SAMPLES, "--rules", RULES, "--state", tmp_path / "l.sqlite3")
    from_env = invoke(*args, env={"FTPEXPORT_JOBS": "abc"})
    assert from_env.exit_code == 2
    assert "Invalid value for '--jobs' from the environment variable FTPEXPORT_JOBS: 'abc'" in from_env.stderr

    typed = invoke(*args, "--jobs", "abc", env={"FTPEXPORT_JOBS": "4"})
    assert typed.exit_code == 2
    assert "Invalid value for '--jobs': 'abc'" in typed.stderr
    assert "FTPEXPORT_JOBS" not in typed.stderr

    top = invoke("status", env={"FTPEXPORT_LOG_FORMAT": "xml"})
    assert top.exit_code == 2
    assert "Invalid value for '--log-format' from the environment variable FTPEXPORT_LOG_FORMAT" in top.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--rescan", "-1", "-1.0 is not in the range x>0"),
        ("--rescan", "0", "0.0 is not in the range x>0"),
        ("--settle", "-0.5", "-0.5 is not in the range x>=0"),
        ("--settle", "nan", "'nan' is not a number of seconds"),
        ("--grace", "inf", "'inf' is not a number of seconds"),
    ],
)
def test_timing_options_refuse_negative_and_non_numbers(option: str, value: str, message: str, tmp_path: Path) -> None:
    code, stderr = _refused("watch", SAMPLES, "--rules", RULES, "--state", tmp_path / "l.sqlite3", option, value)
    assert code == 2, stderr
    assert f"Invalid value for '{option}': {message}" in stderr
    assert not (tmp_path / "l.sqlite3").exists()


# --- item 15: a reader that goes away, the README's demo output


@pytest.mark.parametrize(
    "args",
    [["demo"], ["--help"], ["check", str(RULES)], ["preview", str(SAMPLES / "veh-000201"), "--rules", str(RULES)]],
)
def test_a_closed_stdout_ends_the_command_quietly(args: list[str]) -> None:
    # `ftpexport demo | head -1`: the reader is gone before (most of) the output is written
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        process = subprocess.run(
            [sys.executable, "-m", "ftpexport", *args], stdout=write_end, stderr=subprocess.PIPE, text=True,
            cwd=ROOT, env=env, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert process.stderr == ""  # no BrokenPipeError, no "Exception ignored"
    assert process.returncode == 141  # as a shell reports any program cut off by its reader


def _readme_demo_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("What the demo prints")
    block = text[text.index("```\n", start) + 4 :]
    return block[: block.index("```\n")].splitlines()


def _stable(lines: list[str]) -> list[str]:
    """Lines without what changes from run to run: the port, the temporary folder, the time."""
    lines = [re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line) for line in lines]
    lines = [re.sub(r"serving \S+/server$", "serving TMP/server", line) for line in lines]
    return [re.sub(r" in \d+\.\d s$", " in N s", line) for line in lines]


def test_the_readme_shows_what_the_demo_really_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the README runs it from the checkout: "from samples"
    result = invoke("demo")
    assert result.exit_code == 0, result.output
    assert _stable(_readme_demo_block()) == _stable(result.stdout.splitlines())
