"""Unknown keys in rule files: the nearest valid key at the right level, the protocol a key belongs
to, the place a key belongs; and the rule file whose client_id is not its name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ftpexport.errors import RuleError
from ftpexport.rules import FTPDestination, UploadSpec, load_rules, read_rule_file

FTPS = {"name": "tls", "url": "ftps://acme@ftps.example/photos", "password": "${P}"}
SFTP = {"name": "dms", "url": "sftp://acme@dms.example/in", "password": "${P}", "host_key": "ssh-ed25519 AAAA"}


def _errors(tmp_path: Path, document: dict[str, Any], name: str = "acme.yaml") -> dict[str | None, str]:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"client_id": "acme", **document}))
    result = read_rule_file(path)
    assert isinstance(result, list), "the rule file was accepted"
    assert all(isinstance(e, RuleError) for e in result)
    return {e.field: e.reason for e in result}


@pytest.mark.parametrize(
    ("document", "field", "reason"),
    [
        ({"destinations": [{**FTPS, "max_connection": 2}]}, "destinations[0].max_connection", "'max_connections'"),
        ({"destinations": [{**SFTP, "hostkey": "x"}]}, "destinations[0].hostkey", "'host_key'"),
        ({"destinations": [{**SFTP, "timout": 5}]}, "destinations[0].timout", "'timeout'"),
        (
            {"users": {"u-42": {"destinations": [{**SFTP, "know_hosts": "kh"}]}}},
            "users.u-42.destinations[0].know_hosts",
            "'known_hosts'",
        ),
        (
            {"users": {"u-42": {"destination": [FTPS]}}, "destinations": [FTPS]},
            "users.u-42.destination",
            "'destinations'",
        ),
        ({"destination": [FTPS]}, "destination", "'destinations'"),
        ({"destinations": [FTPS], "package": {"archive_nam": "x.zip"}}, "package.archive_nam", "'archive_name'"),
        ({"destinations": [FTPS], "package": {"metadata": {"field": ["vin"]}}}, "package.metadata.field", "'fields'"),
        ({"destinations": [FTPS], "upload": {"if_exist": "skip"}}, "upload.if_exist", "'if_exists'"),
        (
            {"destinations": [FTPS], "notify": {"url": "https://hooks.example/x", "secret": "${S}", "event": []}},
            "notify.event",
            "'events'",
        ),
    ],
)
def test_an_unknown_key_gets_the_nearest_key_of_its_own_level(
    tmp_path: Path, document: dict[str, Any], field: str, reason: str
) -> None:
    errors = _errors(tmp_path, document)
    assert errors[field] == f"unknown key: did you mean {reason}?"


@pytest.mark.parametrize(
    ("destination", "key", "reason"),
    [
        ({**FTPS, "host_key": "ssh-ed25519 AAAA"}, "host_key",
         "host_key applies to sftp:// destinations only (this destination's url is ftps://)"),
        ({**FTPS, "url": "ftps+implicit://a@h/", "key_file": "id"}, "key_file",
         "key_file applies to sftp:// destinations only (this destination's url is ftps+implicit://)"),
        ({**SFTP, "ca_file": "ca.pem"}, "ca_file",
         "ca_file applies to ftps:// and ftps+implicit:// destinations only (this destination's url is sftp://)"),
        ({**SFTP, "allow_plain_ftp": True}, "allow_plain_ftp",
         "allow_plain_ftp applies to ftp:// destinations only (this destination's url is sftp://)"),
        ({**SFTP, "passive": False}, "passive",
         "passive applies to ftp://, ftps:// and ftps+implicit:// destinations only"),
    ],
)  # fmt: skip
def test_a_key_of_the_other_protocol_says_which_protocol_it_is_for(
    tmp_path: Path, destination: dict[str, Any], key: str, reason: str
) -> None:
    errors = _errors(tmp_path, {"users": {"u-1": {"destinations": [destination]}}})
    assert reason in errors[f"users.u-1.destinations[0].{key}"]
    assert errors[f"users.u-1.destinations[0].{key}"].endswith(": remove it or change the url")


def test_a_key_written_at_the_wrong_level_says_where_it_belongs(tmp_path: Path) -> None:
    errors = _errors(tmp_path, {"destinations": [FTPS], "image_name": "x.jpg", "retries": 2, "password": "${P}"})
    assert errors["image_name"] == "unknown key here: image_name belongs under package"
    assert errors["retries"] == "unknown key here: retries belongs under upload"
    assert errors["password"] == ("unknown key here: password belongs under destinations[] or users.ID.destinations[]")


def test_a_key_like_no_other_lists_the_keys_of_its_level(tmp_path: Path) -> None:
    errors = _errors(tmp_path, {"destinations": [{**FTPS, "colour": "red"}], "upload": {"zzz": 1}})
    # the keys of an FTP destination (not those of SFTP ones), of upload (not of the top level)
    ftp_keys = ", ".join(FTPDestination.model_fields)
    assert errors["destinations[0].colour"] == f"unknown key: the keys here are {ftp_keys}"
    assert "name, url, password" in ftp_keys and "ca_file" in ftp_keys and "host_key" not in ftp_keys
    assert errors["upload.zzz"] == f"unknown key: the keys here are {', '.join(UploadSpec.model_fields)}"
    assert "if_exists" in errors["upload.zzz"]


def test_a_copied_rule_file_suggests_both_fixes(tmp_path: Path) -> None:
    errors = _errors(tmp_path, {"destinations": [FTPS]}, name="bravo.yml")
    assert errors["client_id"] == "'acme' does not match the file name bravo.yml: rename the file to acme.yml, " \
                                  "or set client_id: bravo"  # fmt: skip
    # a file name that cannot be a client id: renaming is the only fix
    errors = _errors(tmp_path, {"destinations": [FTPS]}, name="acme copy.yaml")
    assert errors["client_id"] == "'acme' does not match the file name acme copy.yaml: rename the file to acme.yaml"


def test_two_files_for_one_client_name_the_first(tmp_path: Path) -> None:
    for name in ("acme.yaml", "acme.yml"):
        (tmp_path / name).write_text(yaml.safe_dump({"client_id": "acme", "destinations": [FTPS]}))
    (error,) = load_rules(tmp_path).errors["acme"]
    assert error.reason == "'acme' already has a rule file: acme.yaml"
