"""``ftpexport secrets``: the encrypted store behind ``${secret:NAME}`` (init, set, list, remove, rotate-key)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import ConfigError
from ..vault import (
    KEY_ENV,
    KEY_FILE_ENV,
    SecretsStore,
    check_name,
    generate_key,
    key_file_path,
    open_store,
    store_path,
    write_private,
)
from .base import EnvvarGroup
from .options import App, json_option


@click.group(cls=EnvvarGroup)
def secrets() -> None:
    """The encrypted secrets store behind ${secret:NAME} references in rule files.

    \b
    The store (--secrets, default .ftpexport/secrets.enc) is encrypted with Fernet; its key is
    read from --secrets-key-file / FTPEXPORT_SECRETS_KEY_FILE (a file only its owner can read)
    or FTPEXPORT_SECRETS_KEY. Values are read from a prompt or stdin, never from the command line,
    and are never printed.
    """


@secrets.command("init")
@click.option(
    "--key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Where to write the new key (mode 0600); point FTPEXPORT_SECRETS_KEY_FILE at it.",
)
@click.pass_obj
def secrets_init(app: App, key_file: Path) -> None:
    """Create a new key file and an empty store."""
    app.start_logging()
    if key_file.exists():
        raise ConfigError(f"{key_file} exists already", hint="secrets rotate-key replaces a key")
    path = store_path(app.secrets_file)
    if path.exists():
        raise ConfigError(
            f"{path} exists already and was encrypted with another key", hint="use --secrets for a new store"
        )
    key = generate_key()
    write_private(key_file, key.get_secret_value().encode() + b"\n")
    store = SecretsStore(path, key)
    store.create()
    click.echo(f"key written to {key_file} (mode 0600); store created at {store.path}")
    click.echo(f"export {KEY_FILE_ENV}={key_file.resolve()}")


@secrets.command("set")
@click.argument("name")
@click.pass_obj
def secrets_set(app: App, name: str) -> None:
    """Store the value of secret NAME, read from a prompt (terminal) or from stdin (e.g. a private key)."""
    app.start_logging()
    check_name(name)
    store = open_store(app.secrets_file, app.secrets_key_file)
    if sys.stdin.isatty():
        value = click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True, err=True)
    else:
        value = sys.stdin.read()
        value = value if "PRIVATE KEY" in value else value.rstrip("\r\n")  # a key file keeps its last newline
    from pydantic import SecretStr

    replaced = store.set(name, SecretStr(value))
    click.echo(f"secret {name} {'replaced' if replaced else 'stored'} in {store.path}; use it as ${{secret:{name}}}")


@secrets.command("list")
@json_option
@click.pass_obj
def secrets_list(app: App, as_json: bool) -> None:
    """Names and dates of the stored secrets; never their values."""
    app.start_logging()
    entries = open_store(app.secrets_file, app.secrets_key_file).entries()
    if as_json:
        click.echo(json.dumps([e.__dict__ for e in entries], indent=2))
        return
    if not entries:
        click.echo("the store holds no secret")
    for e in entries:
        click.echo(f"{e.name}  created {e.created}  updated {e.updated}")


@secrets.command("remove")
@click.argument("name")
@click.pass_obj
def secrets_remove(app: App, name: str) -> None:
    """Delete secret NAME from the store."""
    app.start_logging()
    if not open_store(app.secrets_file, app.secrets_key_file).remove(name):
        raise ConfigError(f"no secret named {name!r} in the store")
    click.echo(f"secret {name} removed")


@secrets.command("rotate-key")
@click.option(
    "--new-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the new key when the current one comes from FTPEXPORT_SECRETS_KEY "
    "(with a key file, the new key replaces it in place).",
)
@click.pass_obj
def secrets_rotate_key(app: App, new_key_file: Path | None) -> None:
    """Re-encrypt every secret under a new key; the old key stops working."""
    app.start_logging()
    key_file = key_file_path(app.secrets_key_file)
    target = new_key_file or key_file
    if target is None:
        raise ConfigError(
            f"the key comes from {KEY_ENV}: say where to write the new one",
            hint="--new-key-file PATH, then put its content in the environment of every ftpexport",
        )
    store = open_store(app.secrets_file, app.secrets_key_file)
    count = len(store.entries())
    store.rotate(generate_key(), target)
    click.echo(f"{count} secrets re-encrypted in {store.path}; the new key is in {target} (mode 0600)")
    if new_key_file is not None and key_file is None:
        click.echo(f"put the new key in {KEY_ENV}, or point {KEY_FILE_ENV} at {new_key_file}, wherever ftpexport runs")
