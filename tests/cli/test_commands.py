"""The commands that need no server of the test's own: check, preview, status, demo."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from cli_runner import invoke

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"
SAMPLES = ROOT / "samples"


def test_check_accepts_the_example_rules_and_warns_about_plain_ftp() -> None:
    result = invoke("check", RULES)
    assert result.exit_code == 0, result.output
    assert f"{RULES / 'acme-motors.yaml'}: ok" in result.stdout
    assert "charlie-auto.yaml: ok" in result.stdout
    assert "destination legacy uses plain FTP" in result.stdout


def test_check_names_file_field_and_reason_and_exits_2(tmp_path: Path) -> None:
    shutil.copy(RULES / "bravo-cars.yaml", tmp_path / "bravo-cars.yaml")
    (tmp_path / "broken.yaml").write_text(
        """
client_id: broken
destinations:
  - name: dms
    url: ftps://u@h/x
    password: hunter2-literal
    passwrd: ${TYPO}
package:
  image_name: "{{ vin }"
"""
    )
    result = invoke("check", tmp_path, "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    broken = report["files"][str(tmp_path / "broken.yaml")]
    assert broken["ok"] is False
    fields = {e["field"]: e["reason"] for e in broken["errors"]}
    assert set(fields) == {"destinations[0].password", "destinations[0].passwrd", "package.image_name"}
    assert "never the secret itself" in fields["destinations[0].password"]
    assert "unknown key" in fields["destinations[0].passwrd"]
    assert "syntax error" in fields["package.image_name"]
    assert "hunter2-literal" not in result.output
    assert report["files"][str(tmp_path / "bravo-cars.yaml")]["ok"] is True

    text = invoke("check", tmp_path)
    assert text.exit_code == 2
    assert f"{tmp_path / 'broken.yaml'}: INVALID" in text.stdout
    assert "error: destinations[0].passwrd: unknown key" in text.stdout


def test_check_refuses_plain_ftp_without_opt_in(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(
        "client_id: acme\ndestinations:\n  - {name: old, url: 'ftp://u@h/p', password: '${P}'}\n"
    )
    result = invoke("check", tmp_path)
    assert result.exit_code == 2
    assert "destinations[0]: plain ftp:// sends the password and the photos unencrypted" in result.stdout
    assert "allow_plain_ftp: true" in result.stdout


def test_preview_shows_names_and_paths_without_network() -> None:
    # The example rules point at hosts that do not exist: a preview that connected would fail.
    result = invoke("preview", SAMPLES / "veh-000124", "--rules", RULES, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["archive_listing"] == [
        "wvwzzzauzlw000124_01.jpg",
        "wvwzzzauzlw000124_02.jpg",
        "wvwzzzauzlw000124_03.jpg",
        "WVWZZZAUZLW000124.json",
    ]
    assert info["sources"] == ["1.jpg", "2.jpg", "10.jpg"]
    assert [d["destination"] for d in info["destinations"]] == ["acme-motors/dms", "acme-motors/tls"]
    assert info["destinations"][0]["files"] == ["/incoming/2026-11-20/WVWZZZAUZLW000124.zip"]
    assert info["destinations"][1]["files"] == ["photos/WVWZZZAUZLW000124.zip"]

    user = json.loads(invoke("preview", SAMPLES / "veh-000123", "--rules", RULES, "--json").stdout)
    assert [(d["destination"], d["level"]) for d in user["destinations"]] == [
        ("acme-motors/users/u-42/own-ftps", "user")
    ]
    text = invoke("preview", SAMPLES / "veh-000201", "--rules", RULES)
    assert "inbox/B-77/VF3MCYHZRKS000201.done" in text.stdout


def test_preview_of_a_broken_record_is_one_line_and_exit_1(tmp_path: Path) -> None:
    record = tmp_path / "veh-x"
    shutil.copytree(SAMPLES / "veh-000123", record)
    data = json.loads((record / "vehicle.json").read_text())
    (record / "vehicle.json").write_text(json.dumps({**data, "vin": "TOO-SHORT"}))
    result = invoke("preview", record, "--rules", RULES)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"ftpexport: error: {record}: vehicle.json: vin:")
    assert "Traceback" not in result.output


def test_preview_checks_the_record_files_as_run_does(tmp_path: Path) -> None:
    record = Path(shutil.copytree(SAMPLES / "veh-000123", tmp_path / "veh-x"))
    ledger = tmp_path / "state" / "ledger.sqlite3"
    ledger.parent.mkdir()
    shutil.copy(record / "03.png", ledger)  # stands for the ledger: a file ftpexport must never send
    (record / "03.png").unlink()
    os.link(ledger, record / "03.png")

    refused = invoke("preview", record, "--rules", RULES, "--state", tmp_path / "other.sqlite3")
    allowed = invoke("preview", record, "--rules", RULES, "--state", tmp_path / "other.sqlite3", "--allow-hardlinks")
    from_env = invoke(
        "preview",
        record,
        "--rules",
        RULES,
        env={"FTPEXPORT_ALLOW_HARDLINKS": "1", "FTPEXPORT_STATE": str(tmp_path / "o.sqlite3")},
    )
    own = invoke("preview", record, "--rules", RULES, "--state", ledger, "--allow-hardlinks")

    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"ftpexport: error: {record}: image '03.png' has 2 hard links")
    assert "--allow-hardlinks" in refused.stderr
    assert allowed.exit_code == 0 and from_env.exit_code == 0, allowed.output + from_env.output
    assert "wvwzzz1jzxw000001_03.png" in allowed.stdout
    assert own.exit_code == 1
    assert f"image '03.png' is the ledger ({ledger}): ftpexport never sends its own files" in own.stderr


def test_status_without_a_ledger_exits_2(tmp_path: Path) -> None:
    result = invoke("status", "--state", tmp_path / "none.sqlite3")
    assert result.exit_code == 2
    assert "no ledger here yet" in result.stderr


def test_demo_exports_the_samples_to_a_loopback_ftp_server() -> None:
    result = invoke("demo")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "exporting 3 sample records" in out
    assert "3 delivered, 0 unchanged, 0 failed" in out
    assert "second run, same records: 0 uploaded, 3 already delivered" in out
    # the remote tree with the zip listings, as the demo's rule files ask
    assert "acme-motors/incoming/2026-11-20/WVWZZZAUZLW000124.zip" in out
    assert "    wvwzzzauzlw000124_03.jpg" in out
    assert "users/u-42/WVWZZZ1JZXW000001.zip" in out
    assert "bravo-cars/B-77/VF3MCYHZRKS000201.done" in out


def test_environment_variables_mirror_the_options(tmp_path: Path) -> None:
    result = invoke("preview", SAMPLES / "veh-000201", "--json", env={"FTPEXPORT_RULES": str(RULES)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["client_id"] == "bravo-cars"


def test_check_refuses_control_characters_smuggled_into_a_url(tmp_path: Path) -> None:
    # %0d%0a in an FTP path would otherwise end the STOR command and start another one.
    (tmp_path / "acme.yaml").write_text(
        "client_id: acme\ndestinations:\n  - {name: d, url: 'ftps://u@h/in%0d%0aDELE%20x', password: '${P}'}\n"
    )
    result = invoke("check", tmp_path)
    assert result.exit_code == 2
    assert "destinations[0].url: the URL's user or path holds control characters" in result.stdout


def test_check_renders_every_name_template_for_the_sample_vehicle(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(
        """
client_id: acme
destinations:
  - {name: dms, url: "ftps://u@h/x", password: "${P}", remote_dir: "{{ processed_at }}"}
package:
  archive_name: "{{ vin.ljust(999999999) }}.zip"
  metadata: {name: "{{ '{:>999999999}'.format(vin) }}.json"}
"""
    )
    (tmp_path / "bravo.yaml").write_text(
        """
client_id: bravo
destinations:
  - {name: dms, url: "ftps://u@h/x", password: "${P}", names: posix, remote_dir: "{{ processed_at }}"}
package:
  archive_name: "{{ extra.branch }}_{{ vin }}.zip"
"""
    )

    result = invoke("check", tmp_path)

    assert result.exit_code == 2
    acme = str(tmp_path / "acme.yaml")
    assert f"{acme}: INVALID" in result.stdout
    assert "error: package.archive_name: template '{{ vin.ljust(999999999) }}.zip' cannot be rendered: " \
           "str.ljust(999999999) would build a value over 4096 characters" in result.stdout  # fmt: skip
    assert "error: package.metadata.name: template" in result.stdout
    assert "error: destinations[0].remote_dir: template '{{ processed_at }}' renders '2026-11-20T14:03:00+01:00'" \
           in result.stdout  # fmt: skip
    # a field the sample does not have may be in the client's records: a warning, the file is ok
    assert f"{tmp_path / 'bravo.yaml'}: ok" in result.stdout
    assert "warning: package.archive_name: template '{{ extra.branch }}_{{ vin }}.zip' fails for the sample" \
           in result.stdout  # fmt: skip
