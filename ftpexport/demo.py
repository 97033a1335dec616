"""``ftpexport demo``: a real FTP server on loopback, rule files for it, the samples exported."""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from .display import human_bytes, summary_text
from .errors import ConfigError
from .events import Summary
from .ledger import open_ledger
from .pipeline import Exporter, Options
from .record import RECORD_FILE, is_complete, iter_record_folders
from .rules import load_rules

PASSWORD_VARIABLE = "FTPEXPORT_DEMO_PASSWORD"  # noqa: S105 - the name of a variable, not a password
USER = "demo"

_RULES = {
    "acme-motors": """\
# Client level: every vehicle of acme-motors goes to its DMS as one zip per vehicle,
# in a folder per day; user u-42 has registered a server of their own (here: another folder).
client_id: acme-motors
destinations:
  - name: dms
    url: ftp://{user}@127.0.0.1:{port}/acme-motors/incoming
    password: ${{{variable}}}
    allow_plain_ftp: true          # loopback demo only: real servers use ftps:// or sftp://
    remote_dir: "{{{{ processed_at[:10] }}}}"
package:
  format: zip
  archive_name: "{{{{ vin }}}}.zip"
  image_name: "{{{{ vin | lower }}}}_{{{{ '%02d' | format(n) }}}}.{{{{ ext }}}}"
  metadata:
    name: "{{{{ vin }}}}.json"
    fields: [id, vin, stock_number, make, model, year, user.name, processed_at]
users:
  u-42:
    destinations:
      - name: jeanne-ftp
        url: ftp://{user}@127.0.0.1:{port}/users/u-42
        password: ${{{variable}}}
        allow_plain_ftp: true
""",
    "bravo-cars": """\
# Loose files: the renamed images and the JSON side by side, then a done marker.
client_id: bravo-cars
destinations:
  - name: dms
    url: ftp://{user}@127.0.0.1:{port}/bravo-cars
    password: ${{{variable}}}
    allow_plain_ftp: true
    remote_dir: "{{{{ stock_number | safe_name }}}}"
package:
  format: files
  image_name: "{{{{ vin }}}}-{{{{ n }}}}.{{{{ ext }}}}"
  metadata:
    name: "{{{{ vin }}}}.json"
    fields: [id, vin, stock_number, make, model, user.name, extra.branch]
  done_marker: "{{{{ vin }}}}.done"
""",
}


def default_samples() -> Path:
    """The sample inbox: ``samples/`` of a source checkout, else the copy shipped in the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "samples", here / "_samples"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("the sample records are not installed", hint="pass --samples DIR")


@contextmanager
def ftp_server(root: Path, password: str) -> Iterator[int]:
    """A pyftpdlib server on 127.0.0.1 with one user whose home is ``root``; yields its port."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    # pyftpdlib configures its own chatty stderr logging unless its logger already has a handler.
    server_log = logging.getLogger("pyftpdlib")
    if not server_log.handlers:
        server_log.addHandler(logging.NullHandler())
    server_log.setLevel(logging.WARNING)
    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, password, str(root), perm="elradfmwMT")
    handler = type("DemoHandler", (FTPHandler,), {"authorizer": authorizer, "banner": "ftpexport demo"})
    server = FTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2}, daemon=True)
    thread.start()
    try:
        yield server.socket.getsockname()[1]
    finally:
        server.close_all()
        thread.join(timeout=5)


def _shown(path: Path) -> Path:
    """``path`` as the user would type it: relative to the current folder when it is inside it."""
    absolute = path.absolute()
    return absolute.relative_to(Path.cwd()) if absolute.is_relative_to(Path.cwd()) else path


def remote_tree(root: Path) -> list[str]:
    """The files under ``root`` as tree lines, with each zip's listing."""
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        lines.append(f"{path.relative_to(root)}  ({human_bytes(path.stat().st_size)})")
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                lines += [f"    {i.filename}  {human_bytes(i.file_size)}" for i in archive.infolist()]
    return lines


def run_demo(out: TextIO, samples: Path | None = None) -> Summary:
    """Run the whole demo, printing to ``out``; returns the export summary."""
    samples = samples or default_samples()
    password = secrets.token_urlsafe(18)
    with tempfile.TemporaryDirectory(prefix="ftpexport-demo-") as tmp:
        base = Path(tmp)
        server_root = base / "server"
        rules_dir = base / "rules"
        server_root.mkdir()
        rules_dir.mkdir()
        previous = os.environ.get(PASSWORD_VARIABLE)
        os.environ[PASSWORD_VARIABLE] = password
        try:
            with ftp_server(server_root, password) as port:
                for client, text in _RULES.items():
                    rule = text.format(user=USER, port=port, variable=PASSWORD_VARIABLE)
                    (rules_dir / f"{client}.yaml").write_text(rule, encoding="utf-8")
                out.write(f"FTP server on 127.0.0.1:{port}, serving {server_root}\n")
                records = [f for f in iter_record_folders(samples) if is_complete(f)]
                out.write(f"exporting {len(records)} sample records from {_shown(samples)}\n")
                for folder in records:
                    data = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
                    user = (data.get("user") or {}).get("id", "-")
                    out.write(f"  {folder.name}: client {data.get('client_id')}, user {user}\n")
                with (
                    open_ledger(base / "ledger.sqlite3") as ledger,
                    Exporter(load_rules(rules_dir), ledger, Options(jobs=4, retries=0)) as exporter,
                ):
                    started = time.monotonic()
                    summary = exporter.export(records)
                    out.write("\n" + summary_text(summary, time.monotonic() - started) + "\n")
                    again = exporter.export(records)
                    out.write(
                        f"\nsecond run, same records: {again.count('delivered')} uploaded, "
                        f"{again.count('unchanged')} already delivered (the ledger remembers)\n"
                    )
                out.write(f"\nremote tree (ftp://127.0.0.1:{port}/):\n")
                for line in remote_tree(server_root):
                    out.write(f"  {line}\n")
        finally:
            if previous is None:
                os.environ.pop(PASSWORD_VARIABLE, None)
            else:
                os.environ[PASSWORD_VARIABLE] = previous
    return summary
