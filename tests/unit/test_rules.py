"""rules/: the example rule files, broken rule files (file, field, reason), routing and URLs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from paths import RULES, SAMPLES
from records import MakeRecord, vehicle
from rulefiles import write_rules

from ftpexport.errors import ConfigError, RecordError, RuleError
from ftpexport.record import load_record
from ftpexport.rules import (
    ClientRules,
    FTPDestination,
    RuleFileError,
    SFTPDestination,
    load_rule_file,
    load_rules,
    read_rule_file,
    routes_for,
    rule_warnings,
)
from ftpexport.secret import SecretRef

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
LITERAL = "hunter2-Sup3r-Literal"


def base_rules() -> dict[str, Any]:
    """A valid rule file of client ``acme`` as a dict."""
    return {
        "client_id": "acme",
        "destinations": [
            {"name": "dms", "url": "sftp://acme@dms.example/incoming", "password": "${ACME_DMS}", "host_key": HOST_KEY},
            {"name": "tls", "url": "ftps://acme@ftps.example/photos", "password": "${ACME_FTPS}"},
        ],
        "package": {"archive_name": "{{ vin }}.zip"},
        "users": {
            "u-42": {"destinations": [{"name": "own-ftps", "url": "ftps://jeanne@ftp.example/p", "password": "${U42}"}]}
        },
    }


def errors_of(path: Path) -> list[RuleError]:
    result = read_rule_file(path)
    assert isinstance(result, list), f"expected errors, the file loaded: {result}"
    return result


# --- the examples


def test_the_example_rule_files_load_without_errors() -> None:
    ruleset = load_rules(RULES)

    assert ruleset.errors == {}
    assert sorted(ruleset.clients) == ["acme-motors", "bravo-cars", "charlie-auto"]
    assert ruleset.source("acme-motors") == str(RULES / "acme-motors.yaml")
    acme = ruleset.clients["acme-motors"]
    assert [d.name for d in acme.destinations] == ["dms", "tls"]
    assert isinstance(acme.destinations[0], SFTPDestination)
    assert isinstance(acme.destinations[1], FTPDestination)
    assert acme.destinations[0].password == SecretRef(text="${ACME_DMS_PASSWORD}", env_var="ACME_DMS_PASSWORD")
    assert str(acme.package.image_name) == "{{ vin | lower }}_{{ '%02d' | format(n) }}.{{ ext }}"
    assert ruleset.clients["bravo-cars"].package.format == "files"
    assert ruleset.clients["charlie-auto"].upload.if_exists == "skip"


def test_each_example_file_loads_alone() -> None:
    for path in sorted(RULES.glob("*.yaml")):
        assert load_rule_file(path).client_id == path.stem


# --- broken rule files: one RuleError naming file, field and reason


def _mutate(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(base_rules())
    change(document)
    return document


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    target: Any = document
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if leaf.isdigit():
        target[int(leaf)] = value
    else:
        target[leaf] = value


def change(path: str, value: Any) -> dict[str, Any]:
    return _mutate(lambda d: _set(d, path, value))


def plain_ftp(**extra: Any) -> dict[str, Any]:
    return change("destinations.1", {"name": "tls", "url": "ftp://acme@ftp.example/", "password": "${P}", **extra})


def duplicate_key_text() -> str:
    return (
        "client_id: acme\n"
        "destinations:\n"
        "  - name: tls\n"
        "    url: ftps://acme@h.example/\n"
        "    password: ${A}\n"
        "    password: ${B}\n"
    )


BROKEN: dict[str, tuple[dict[str, Any] | str, str | None, str]] = {
    "literal password": (
        change("destinations.1.password", LITERAL),
        "destinations[1].password",
        "must be a reference, never the secret itself: store the value with `ftpexport secrets set NAME`",
    ),
    "literal password of a user": (
        change("users.u-42.destinations.0.password", LITERAL),
        "users.u-42.destinations[0].password",
        "never the secret itself",
    ),
    "literal key passphrase": (
        change("destinations.0.key_passphrase", LITERAL),
        "destinations[0].key_passphrase",
        "never the secret itself",
    ),
    "unknown destination key": (
        change("destinations.1.colour", "red"),
        "destinations[1].colour",
        "unknown key",
    ),
    "unknown top-level key": (change("packages", {}), "packages", "unknown key"),
    "unknown package key": (change("package.archive", "x.zip"), "package.archive", "unknown key"),
    "http URL": (
        change("destinations.1.url", "http://acme@h.example/"),
        "destinations[1].url",
        "url must start with ftp://, ftps://, ftps+implicit:// or sftp://",
    ),
    "URL without scheme": (
        change("destinations.1.url", "acme@h.example/photos"),
        "destinations[1].url",
        "url must start with",
    ),
    "missing URL": (
        _mutate(lambda d: d["destinations"][1].pop("url")),
        "destinations[1].url",
        "Field required",
    ),
    "plain ftp without allow_plain_ftp": (
        plain_ftp(),
        "destinations[1]",
        "plain ftp:// sends the password and the photos unencrypted",
    ),
    "ca_file on plain ftp": (
        plain_ftp(allow_plain_ftp=True, ca_file="ca.pem"),
        "destinations[1]",
        "ca_file is for ftps:// URLs",
    ),
    "client key without its certificate": (
        change("destinations.1.client_key_file", "client.key"),
        "destinations[1]",
        "a client key needs its certificate: add client_cert",
    ),
    "client key as a file and from the store": (
        _mutate(lambda d: d["destinations"][1].update(client_cert="c", client_key_file="k", client_key="${secret:k}")),
        "destinations[1]",
        "give client_key_file or client_key, not both",
    ),
    "client certificate on plain ftp": (
        plain_ftp(allow_plain_ftp=True, client_cert="client.pem"),
        "destinations[1]",
        "client_cert is for ftps:// URLs",
    ),
    "literal client key": (
        _mutate(lambda d: d["destinations"][1].update(client_cert="c.pem", client_key=LITERAL)),
        "destinations[1].client_key",
        "never the secret itself",
    ),
    "FTP without password": (
        _mutate(lambda d: d["destinations"][1].pop("password")),
        "destinations[1]",
        "FTP destinations need a password reference",
    ),
    "SFTP without host_key or known_hosts": (
        _mutate(lambda d: d["destinations"][0].pop("host_key")),
        "destinations[0]",
        "SFTP server keys are always verified",
    ),
    "SFTP without password or key_file": (
        _mutate(lambda d: d["destinations"][0].pop("password")),
        "destinations[0]",
        "SFTP destinations need a password reference, a key_file or a private_key reference",
    ),
    "host_key not a key line": (
        change("destinations.0.host_key", "dms.example ssh-ed25519"),
        "destinations[0].host_key",
        "host_key must be an OpenSSH public key line",
    ),
    "host_key of an unknown type": (
        change("destinations.0.host_key", "ssh-foo AAAAC3NzaC1lZDI1NTE5"),
        "destinations[0].host_key",
        "host_key must be an OpenSSH public key line",
    ),
    "host_key with bad base64": (
        change("destinations.0.host_key", "ssh-ed25519 AAAAC"),
        "destinations[0].host_key",
        "host_key's key data is not valid base64",
    ),
    "password inside the URL": (
        change("destinations.1.url", f"ftps://acme:{LITERAL}@h.example/"),
        "destinations[1].url",
        "the URL holds a password: remove it",
    ),
    "URL without user": (
        change("destinations.1.url", "ftps://h.example/photos"),
        "destinations[1].url",
        "the URL has no user name: write it as scheme://user@host/path",
    ),
    "URL without host": (change("destinations.1.url", "ftps://acme@/photos"), "destinations[1].url", "no host name"),
    "URL with a bad port": (
        change("destinations.1.url", "ftps://acme@h.example:99999/"),
        "destinations[1].url",
        "the URL has an invalid port",
    ),
    "URL with a query": (
        change("destinations.1.url", "ftps://acme@h.example/?passive=1"),
        "destinations[1].url",
        "cannot have a query",
    ),
    "URL with an encoded line break": (
        change("destinations.1.url", "ftps://acme@h.example/photos%0d%0aDELE%20x"),
        "destinations[1].url",
        "control characters",
    ),
    "bad destination name": (change("destinations.1.name", "my dms"), "destinations[1].name", "String should match"),
    "zero connections": (
        change("destinations.1.max_connections", 0),
        "destinations[1].max_connections",
        "greater than or equal to 1",
    ),
    "image_name syntax error": (
        change("package.image_name", "{{ vin "),
        "package.image_name",
        "template syntax error",
    ),
    "archive_name syntax error": (
        change("package.archive_name", "{% if vin %}x.zip"),
        "package.archive_name",
        "template syntax error",
    ),
    "metadata name syntax error": (
        change("package.metadata", {"name": "{{ vin }.json"}),
        "package.metadata.name",
        "template syntax error",
    ),
    "remote_dir syntax error": (
        change("destinations.1.remote_dir", "{{ processed_at[:10 }}"),
        "destinations[1].remote_dir",
        "template syntax error",
    ),
    "empty template": (change("package.image_name", "  "), "package.image_name", "the template is empty"),
    "template using self": (
        change("package.image_name", "{{ self }}.jpg"),
        "package.image_name",
        "the template uses 'self'",
    ),
    "unknown package format": (change("package.format", "tar"), "package.format", "'zip' or 'files'"),
    "unknown if_exists": (change("upload", {"if_exists": "replace"}), "upload.if_exists", "'overwrite', 'skip'"),
    "metadata field not a path": (
        change("package.metadata", {"fields": ["vin", "user name"]}),
        "package.metadata.fields",
        "'user name' is not a field path",
    ),
    "metadata field with a trailing newline": (
        change("package.metadata", {"fields": ["vin\n"]}),
        "package.metadata.fields",
        "is not a field path",
    ),
    "metadata fields overlapping": (
        change("package.metadata", {"fields": ["user", "user.name"]}),
        "package.metadata.fields",
        "'user.name' is inside 'user'",
    ),
    "duplicate destination name": (
        change("destinations.1.name", "dms"),
        "destinations",
        "the name 'dms' is used twice, by [0] and [1]",
    ),
    "duplicate user destination name": (
        _mutate(
            lambda d: d["users"]["u-42"]["destinations"].append(
                {"name": "own-ftps", "url": "ftps://j@other.example/", "password": "${X}"}
            )
        ),
        "users.u-42.destinations",
        "the name 'own-ftps' is used twice",
    ),
    "user without destinations": (change("users.u-42.destinations", []), "users.u-42.destinations", "at least 1"),
    "no destinations at all": (
        _mutate(lambda d: (d.pop("destinations"), d.pop("users"))),
        None,
        "no destinations: give at least one client-level or user-level destination",
    ),
    "client_id not matching the file name": (
        change("client_id", "bravo"),
        "client_id",
        "'bravo' does not match the file name acme.yaml: rename the file to bravo.yaml, or set client_id: acme",
    ),
    "duplicate YAML key": (duplicate_key_text(), None, "not valid YAML: line 6, column 5: duplicate key 'password'"),
    "YAML syntax error": (
        "client_id: acme\ndestinations:\n  - {name: a, url: 'ftps://u@h/'\n  password: x\n",
        None,
        "not valid YAML: line 4, column 3:",
    ),
    "tab indentation": ("client_id: acme\n\tdestinations: []\n", None, "not valid YAML: line 2, column 1"),
    "python object tag": (
        "client_id: !!python/object/apply:os.system ['true']\n",
        None,
        "not valid YAML",
    ),
    "empty file": ("", None, "the file is empty"),
    "only a comment": ("# nothing yet\n", None, "the file is empty"),
    "a list, not a mapping": ("- client_id: acme\n", None, "the file must hold a mapping"),
}


@pytest.mark.parametrize("document, field, reason", list(BROKEN.values()), ids=list(BROKEN))
def test_a_broken_rule_file_names_the_file_the_field_and_the_reason(
    tmp_path: Path, document: dict[str, Any] | str, field: str | None, reason: str
) -> None:
    path = write_rules(tmp_path, document, "acme")

    errors = errors_of(path)

    located = [(e.file, e.field) for e in errors]
    assert (str(path), field) in located, [str(e) for e in errors]
    error = next(e for e in errors if e.field == field)
    assert reason in error.reason, error.reason
    assert str(error).startswith(f"{path}: {field}: " if field else f"{path}: ")
    assert LITERAL not in "\n".join(str(e) for e in errors)


def test_load_rule_file_raises_one_config_error_with_every_problem(tmp_path: Path) -> None:
    document = change("destinations.1.password", LITERAL)
    document["destinations"][0]["colour"] = "red"
    path = write_rules(tmp_path, document, "acme")

    with pytest.raises(RuleFileError) as caught:
        load_rule_file(path)

    assert isinstance(caught.value, ConfigError)
    assert caught.value.exit_code == 2
    assert sorted(e.field or "" for e in caught.value.errors) == ["destinations[0].colour", "destinations[1].password"]
    assert str(caught.value).count(str(path)) == 2
    assert LITERAL not in str(caught.value)


def test_a_literal_password_never_appears_in_any_error_output(tmp_path: Path) -> None:
    document = change("destinations.1.password", LITERAL)
    document["destinations"][1]["url"] = f"ftps://acme:{LITERAL}@h.example/"
    path = write_rules(tmp_path, document, "acme")

    ruleset = load_rules(tmp_path)

    everything = json.dumps([[str(e), e.reason, e.field] for e in ruleset.errors["acme"]])
    assert "the URL holds a password" in everything
    assert "never the secret itself" in everything
    assert LITERAL not in everything
    assert str(path) in everything


def test_a_valid_rule_file_keeps_secret_references_not_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_FTPS", LITERAL)
    rules = load_rule_file(write_rules(tmp_path, base_rules(), "acme"))

    dumped = json.dumps(rules.model_dump(mode="json"))
    assert "${ACME_FTPS}" in dumped
    assert LITERAL not in dumped
    assert LITERAL not in repr(rules)


# --- load_rules: a folder of rule files


def test_load_rules_collects_broken_files_and_keeps_the_good_ones(tmp_path: Path) -> None:
    write_rules(tmp_path, base_rules(), "acme")
    bravo = base_rules() | {"client_id": "bravo"}
    bravo["destinations"][1]["password"] = LITERAL
    write_rules(tmp_path, bravo, name="bravo")
    (tmp_path / "README.txt").write_text("not a rule file")

    ruleset = load_rules(tmp_path)

    assert sorted(ruleset.clients) == ["acme"]
    assert sorted(ruleset.errors) == ["bravo"]
    assert [e.field for e in ruleset.errors["bravo"]] == ["destinations[1].password"]


def test_two_files_for_one_client_are_refused(tmp_path: Path) -> None:
    write_rules(tmp_path, base_rules(), "acme")
    (tmp_path / "acme.yml").write_text(yaml.safe_dump(base_rules()))

    ruleset = load_rules(tmp_path)

    assert list(ruleset.clients) == ["acme"]
    (error,) = ruleset.errors["acme"]
    assert error.file == str(tmp_path / "acme.yml")
    assert error.field == "client_id"
    assert "already has a rule file" in error.reason


def test_a_missing_rules_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the rules folder does not exist"):
        load_rules(tmp_path / "missing")


# --- routing: user beats client


def test_a_user_with_own_destinations_gets_only_those() -> None:
    ruleset = load_rules(RULES)
    record = load_record(SAMPLES / "veh-000123")  # user u-42 of acme-motors

    routes = routes_for(ruleset, record)

    assert [route.key for route in routes] == ["acme-motors/users/u-42/own-ftps"]
    assert routes[0].user_id == "u-42"
    assert routes[0].destination.host == "ftp.dupont.example"
    assert routes[0].client.client_id == "acme-motors"


def test_another_user_of_the_same_client_gets_the_clients_destinations() -> None:
    ruleset = load_rules(RULES)
    record = load_record(SAMPLES / "veh-000124")  # user u-7 of acme-motors

    routes = routes_for(ruleset, record)

    assert [route.key for route in routes] == ["acme-motors/dms", "acme-motors/tls"]
    assert {route.user_id for route in routes} == {None}


def test_a_record_without_user_gets_the_clients_destinations(make_record: MakeRecord) -> None:
    fields = vehicle(client_id="bravo-cars")
    del fields["user"]
    record = load_record(make_record(fields=fields))

    assert [route.key for route in routes_for(load_rules(RULES), record)] == ["bravo-cars/dms"]


def test_a_client_without_rule_file_is_a_record_error_naming_client_and_folder(make_record: MakeRecord) -> None:
    folder = make_record(fields=vehicle(client_id="zulu-motors"))
    record = load_record(folder)

    with pytest.raises(RecordError) as caught:
        routes_for(load_rules(RULES), record)

    assert caught.value.path == str(folder)
    assert f"no rule file for client 'zulu-motors' in {RULES}" in caught.value.reason
    assert str(RULES / "zulu-motors.yaml") in str(caught.value)


def test_a_client_whose_rule_file_is_broken_gets_a_record_error_saying_so(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    rules_dir = tmp_path / "rules"
    write_rules(rules_dir, change("destinations.1.password", LITERAL), "acme")
    record = load_record(make_record(fields=vehicle(client_id="acme")))

    with pytest.raises(RecordError) as caught:
        routes_for(load_rules(rules_dir), record)

    assert "the rule file of client 'acme' has errors" in caught.value.reason
    assert f"ftpexport check {rules_dir}" in str(caught.value)


def test_a_user_without_destinations_of_a_client_without_any_is_a_record_error(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    rules_dir = tmp_path / "rules"
    write_rules(rules_dir, _mutate(lambda d: d.pop("destinations")), "acme")
    ruleset = load_rules(rules_dir)
    record = load_record(make_record(fields=vehicle(client_id="acme", user={"id": "u-7"})))

    with pytest.raises(RecordError) as caught:
        routes_for(ruleset, record)

    assert "client 'acme' has no client-level destination and user 'u-7' has none of their own" in str(caught.value)
    # the user with destinations is still served
    record_42 = load_record(make_record("r42", fields=vehicle(client_id="acme", user={"id": "u-42"})))
    assert [r.key for r in routes_for(ruleset, record_42)] == ["acme/users/u-42/own-ftps"]


# --- URLs


def destination(url: str, **extra: Any) -> FTPDestination | SFTPDestination:
    entry: dict[str, Any] = {"name": "d", "url": url, "password": "${P}", **extra}
    if url.lower().startswith("sftp"):
        entry.setdefault("host_key", HOST_KEY)
    if url.lower().startswith("ftp://"):
        entry.setdefault("allow_plain_ftp", True)
    return ClientRules.model_validate({"client_id": "c", "destinations": [entry]}).destinations[0]


@pytest.mark.parametrize(
    "url, base_path",
    [
        ("ftp://u@h/photos", "photos"),
        ("ftp://u@h/photos/2026/", "photos/2026"),
        ("ftp://u@h//abs", "/abs"),
        ("ftp://u@h//abs/dir/", "/abs/dir"),
        ("ftp://u@h", ""),
        ("ftp://u@h/", ""),
        ("ftps://u@h/with%20space", "with space"),
        ("sftp://u@h/incoming", "/incoming"),
        ("sftp://u@h/incoming/", "/incoming"),
        ("sftp://u@h/~/in", "in"),
        ("sftp://u@h/~/", ""),
        ("sftp://u@h/~", ""),
        ("sftp://u@h", ""),
    ],
)
def test_base_path(url: str, base_path: str) -> None:
    assert destination(url).base_path == base_path


@pytest.mark.parametrize(
    "url, scheme, port",
    [
        ("ftp://u@h/", "ftp", 21),
        ("ftps://u@h/", "ftps", 21),
        ("ftps+implicit://u@h/", "ftps+implicit", 990),
        ("sftp://u@h/", "sftp", 22),
        ("sftp://u@h:2222/", "sftp", 2222),
        ("ftps://u@h:2121/", "ftps", 2121),
        ("FTPS://u@h/", "ftps", 21),
    ],
)
def test_scheme_and_default_ports(url: str, scheme: str, port: int) -> None:
    d = destination(url)

    assert (d.scheme, d.port, d.host) == (scheme, port, "h")


def test_user_names_are_unquoted() -> None:
    assert destination("ftps://jeanne%40acme@h.example/").username == "jeanne@acme"


def test_rule_warnings_warn_about_plain_ftp() -> None:
    ruleset = load_rules(RULES)

    charlie = rule_warnings(ruleset.clients["charlie-auto"])

    assert charlie == ["destination legacy uses plain FTP: password and photos cross the network unencrypted"]
    assert rule_warnings(ruleset.clients["acme-motors"]) == []


def test_rule_warnings_name_the_user_of_a_plain_ftp_destination(tmp_path: Path) -> None:
    document = change(
        "users.u-42.destinations.0",
        {"name": "own", "url": "ftp://j@h/", "password": "${P}", "allow_plain_ftp": True},
    )
    rules = load_rule_file(write_rules(tmp_path, document, "acme"))

    assert rule_warnings(rules) == [
        "destination own (user u-42) uses plain FTP: password and photos cross the network unencrypted"
    ]


def test_relative_files_are_resolved_against_the_rule_files_folder(tmp_path: Path) -> None:
    folder = tmp_path / "conf" / "rules"
    document = base_rules()
    document["destinations"][0] |= {"key_file": "keys/id_ed25519", "known_hosts": "/etc/ssh/known_hosts"}
    document["destinations"][1]["ca_file"] = "certs/ca.pem"
    document["users"]["u-42"]["destinations"][0]["ca_file"] = "../user-ca.pem"

    rules = load_rule_file(write_rules(folder, document, "acme"))

    sftp, ftps = rules.destinations
    assert isinstance(sftp, SFTPDestination)
    assert isinstance(ftps, FTPDestination)
    assert sftp.key_file == folder / "keys" / "id_ed25519"
    assert sftp.known_hosts == Path("/etc/ssh/known_hosts")
    assert ftps.ca_file == folder / "certs" / "ca.pem"
    own = rules.users["u-42"].destinations[0]
    assert isinstance(own, FTPDestination)
    assert own.ca_file == folder / ".." / "user-ca.pem"
    # and the warning about a file that does not exist names the resolved path
    assert f"destination tls: file {folder / 'certs' / 'ca.pem'} does not exist (yet)" in rule_warnings(rules)


def test_one_host_key_or_a_list_of_them() -> None:
    rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ=="
    one = destination("sftp://u@h/", host_key=f"  {HOST_KEY}  ")
    many = destination("sftp://u@h/", host_key=[HOST_KEY, rsa])

    assert isinstance(one, SFTPDestination)
    assert isinstance(many, SFTPDestination)
    assert one.host_key == [HOST_KEY]
    assert many.host_key == [HOST_KEY, rsa]


# --- names: portable | posix, and every name template tried on the sample vehicle when rules load


def test_destinations_need_portable_names_unless_they_say_posix(tmp_path: Path) -> None:
    rules = load_rule_file(write_rules(tmp_path, change("destinations.1.names", "posix"), "acme"))

    assert [d.names for d in rules.destinations] == ["portable", "posix"]
    assert rules.users["u-42"].destinations[0].names == "portable"
    errors = errors_of(write_rules(tmp_path, change("destinations.1.names", "windows"), "acme"))
    assert [e.field for e in errors] == ["destinations[1].names"]
    assert "'portable' or 'posix'" in errors[0].reason


TEMPLATE_ERRORS: dict[str, tuple[str, Any, str, str]] = {
    "a huge padding": (
        "package.archive_name", "{{ vin.ljust(999999999) }}.zip", "package.archive_name",
        "cannot be rendered: str.ljust(999999999) would build a value over 4096 characters",
    ),
    "a huge format width": (
        "package.image_name", "{{ '%999999999s' % vin }}_{{ n }}.{{ ext }}", "package.image_name",
        "cannot be rendered: the format '%999999999s' would build a value over 4096 characters",
    ),
    "a method not available": (
        "package.done_marker", "{{ vin.encode() }}.done", "package.done_marker",
        "cannot be rendered: str.encode() is not available in name templates",
    ),
    "a path in a file name": (
        "package.archive_name", "{{ make }}/{{ vin }}.zip", "package.archive_name",
        "renders 'Volkswagen/WVWZZZ1JZXW000001.zip' for the sample vehicle (README: Templates), which contains a "
        "path separator",
    ),
    "a reserved name for portable destinations": (
        "package.archive_name", "CON.zip", "package.archive_name",
        "renders 'CON.zip' for the sample vehicle (README: Templates), which is the Windows device name CON "
        "(reserved with any extension); destinations dms, tls, own-ftps need portable names",
    ),
    "a colon in a remote folder": (
        "destinations.0.remote_dir", "{{ processed_at }}", "destinations[0].remote_dir",
        "renders '2026-11-20T14:03:00+01:00' for the sample vehicle (README: Templates), which contains ':' (a "
        "Windows server cannot store it in a name): use safe_name, or set names: posix on this destination",
    ),
    "a user's remote folder": (
        "users.u-42.destinations.0.remote_dir", "{{ make }}.", "users.u-42.destinations[0].remote_dir",
        "which ends with a dot",
    ),
    "one name for every image": (
        "package.image_name", "{{ vin }}.{{ ext }}", "package.image_name",
        "gives two images of the sample vehicle (README: Templates) the same name 'WVWZZZ1JZXW000001.jpg'",
    ),
    "an image variable outside image_name": (
        "package.archive_name", "{{ vin }}_{{ n }}.zip", "package.archive_name",
        "uses n, ext, filename or stem, which only package.image_name has",
    ),
}  # fmt: skip


@pytest.mark.parametrize("path, template, field, reason", list(TEMPLATE_ERRORS.values()), ids=list(TEMPLATE_ERRORS))
def test_a_template_that_cannot_work_for_any_record_is_an_error_of_the_rule_file(
    tmp_path: Path, path: str, template: str, field: str, reason: str
) -> None:
    errors = errors_of(write_rules(tmp_path, change(path, template), "acme"))

    assert [e.field for e in errors] == [field]
    assert reason in errors[0].reason, errors[0].reason
    assert repr(template) in errors[0].reason


def test_a_posix_destination_accepts_what_windows_cannot_store(tmp_path: Path) -> None:
    document = change("destinations.0.remote_dir", "{{ processed_at }}")
    document["destinations"][0]["names"] = "posix"

    assert isinstance(read_rule_file(write_rules(tmp_path, document, "acme")), ClientRules)
    # the package's names go to every destination: portable while one destination needs it
    document["package"]["archive_name"] = "{{ processed_at }}.zip"
    errors = errors_of(write_rules(tmp_path, document, "acme"))
    assert [e.field for e in errors] == ["package.archive_name"]
    assert "destinations tls, own-ftps need portable names" in errors[0].reason
    for destination in (*document["destinations"], *document["users"]["u-42"]["destinations"]):
        destination["names"] = "posix"
    assert isinstance(read_rule_file(write_rules(tmp_path, document, "acme")), ClientRules)


def test_a_template_that_fails_only_for_the_sample_is_a_warning(tmp_path: Path) -> None:
    document = change("package.archive_name", "{{ extra.branch }}_{{ vin }}.zip")
    document["package"]["image_name"] = "{{ vin }}_{{ '%02d' | format(stock_number) }}_{{ n }}.{{ ext }}"

    rules = read_rule_file(write_rules(tmp_path, document, "acme"))

    assert isinstance(rules, ClientRules)
    warnings = rule_warnings(rules)
    assert any(
        w.startswith(
            "package.archive_name: template '{{ extra.branch }}_{{ vin }}.zip' fails for the sample "
            "vehicle (README: Templates): 'dict object' has no attribute 'branch'"
        )
        for w in warnings
    )
    assert any(w.startswith("package.image_name: template") and "TypeError" in w for w in warnings), warnings


def test_the_example_rule_files_render_for_the_sample_without_warnings() -> None:
    for path in sorted(RULES.glob("*.yaml")):
        assert not [w for w in rule_warnings(load_rule_file(path)) if "template" in w], path
