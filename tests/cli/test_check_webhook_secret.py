"""``ftpexport check`` and the webhook secret of a notify block: one that does not resolve, or is not a
``whsec_`` secret, is named with its file, its field, what to do and what it does to the webhooks."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from cli_runner import invoke
from click.testing import Result

SECRET_ENV = "CHECK_TEST_WEBHOOK_SECRET"
CONSEQUENCE = "until it is fixed, each webhook notification of this client fails"


def _rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    document = {
        "client_id": "acme",
        "destinations": [{"name": "dms", "url": "ftps://acme@ftps.example/photos", "password": "${secret:acme-dms}"}],
        "notify": {"url": "https://hooks.acme.example/ftpexport", "secret": "${" + SECRET_ENV + "}"},
    }
    (folder / "acme.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def _check(rules: Path, *options: str) -> Result:
    return invoke("check", rules, *options)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, f"notify: secret: environment variable {SECRET_ENV} is not set (export {SECRET_ENV}=... in the "
               "environment that runs ftpexport)"),
        ("hunter2-not-whsec", "notify: secret: the webhook secret does not start with whsec_ (store a secret of the "
                              "form whsec_<base64 of 24 to 64 random bytes>"),
        ("whsec_" + base64.b64encode(b"short").decode(),
         "notify: secret: the webhook secret holds 5 bytes, not 24 to 64"),
    ],
)  # fmt: skip
def test_check_names_a_webhook_secret_that_does_not_resolve_or_is_not_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, reason: str
) -> None:
    if value is None:
        monkeypatch.delenv(SECRET_ENV, raising=False)
    else:
        monkeypatch.setenv(SECRET_ENV, value)
    rules = _rules(tmp_path)

    text = _check(rules)
    as_json = _check(rules, "--json")

    assert text.exit_code == 0 and as_json.exit_code == 0, text.output  # the file itself is valid
    [line] = [line for line in text.stdout.splitlines() if "notify: secret" in line]
    assert line.startswith("  warning: ") and reason in line and line.endswith(f"({CONSEQUENCE})")
    [entry] = json.loads(as_json.stdout)["files"].values()
    assert [w for w in entry["warnings"] if reason in w and CONSEQUENCE in w]
    if value is not None:
        assert value not in text.output + as_json.output


def test_check_says_nothing_of_a_good_webhook_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "whsec_" + base64.b64encode(bytes(range(32))).decode())

    result = _check(_rules(tmp_path))

    assert result.exit_code == 0, result.output
    assert "notify" not in result.stdout
