#!/usr/bin/env python3
"""Unpack the FTP servers of the conformance suite side by side: vsftpd, ProFTPD (with mod_tls), Pure-FTPd.

The three Debian packages each provide ``ftp-server`` and conflict with each other: installing one
can remove another. So none is installed: each is fetched with ``apt-get download`` and unpacked
with ``dpkg-deb -x`` into a folder of its own under ``SERVERS_DIR`` (no maintainer script runs, no
service is started or enabled); only their shared libraries are installed with apt, read from the
packages' ``Depends``. The tests start the servers from there, in the foreground on 127.0.0.1.

vsftpd checks passwords with PAM and so needs a PAM service file: ``/etc/pam.d/ftpexport-test-vsftpd``
(the system's usual auth/account stack). ProFTPD and Pure-FTPd use user files of their own.

Run as root (``.ci/run`` does): ``python3 tests/servers_install.py``. Idempotent: when everything is
in place it asks no registry and takes a fraction of a second. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: where the servers are unpacked; the tests read the same variable
SERVERS_DIR = Path(os.environ.get("FTPEXPORT_TEST_SERVERS", "/opt/ftpexport-test-servers"))

#: folder name -> (Debian packages unpacked into it, programs that must run from it)
SERVERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "vsftpd": (("vsftpd",), ("usr/sbin/vsftpd",)),
    # mod_tls is in proftpd-mod-crypto since Debian 12; proftpd-basic is only a metapackage
    "proftpd": (("proftpd-core", "proftpd-mod-crypto"), ("usr/sbin/proftpd", "usr/lib/proftpd/mod_tls.so")),
    "pure-ftpd": (("pure-ftpd",), ("usr/sbin/pure-ftpd", "usr/bin/pure-pw")),
}

PAM_SERVICE = "ftpexport-test-vsftpd"
PAM_FILE = Path("/etc/pam.d") / PAM_SERVICE
PAM_TEXT = """\
# Written by ftpexport's tests/servers_install.py for the test vsftpd (local users, no ftpusers list).
@include common-auth
@include common-account
@include common-session-noninteractive
"""

MARKER = ".ftpexport-unpacked.json"


def program(server: str, relative: str) -> Path:
    """The path of a file of an unpacked server, e.g. ``program("vsftpd", "usr/sbin/vsftpd")``."""
    return SERVERS_DIR / server / relative


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def _marker(server: str) -> dict[str, object] | None:
    """What was unpacked for ``server``, or None when it is missing or incomplete."""
    folder = SERVERS_DIR / server
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not all((folder / relative).exists() for relative in SERVERS[server][1]):
        return None
    return marker


def _library_dependencies(deb: Path) -> list[str]:
    """The shared library packages a .deb depends on (``libssl3``, ``zlib1g``; not ``libpam-runtime``)."""
    depends = _run(["dpkg-deb", "-f", str(deb), "Depends"]).stdout
    libraries = []
    for clause in depends.split(","):
        name = clause.split("|")[0].split("(")[0].strip().split(":")[0]
        # Debian names a shared library package after its soname: lib<name><version>, zlib1g.
        if re.fullmatch(r"(lib|zlib)[a-z0-9.+-]*\d[a-z0-9.+-]*", name):
            libraries.append(name)
    return libraries


def _not_installed(packages: list[str]) -> list[str]:
    missing = []
    for package in packages:
        result = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", package], capture_output=True, text=True)
        if result.stdout.strip() != "installed":
            missing.append(package)
    return missing


class _Apt:
    """apt-get with ``update`` run once, before the first download or install."""

    def __init__(self) -> None:
        self.updated = False
        self.env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")

    def _update(self) -> None:
        if not self.updated:
            print("servers_install: apt-get update", flush=True)
            _run(["apt-get", "update", "-qq"], env=self.env)
            self.updated = True

    def download(self, packages: tuple[str, ...], folder: Path) -> list[Path]:
        self._update()
        # APT::Sandbox::User=root: the _apt user cannot write into a root-owned temporary folder.
        _run(["apt-get", "download", "-qq", "-o", "APT::Sandbox::User=root", *packages], cwd=folder, env=self.env)
        return [next(folder.glob(f"{package}_*.deb")) for package in packages]

    def install(self, packages: list[str]) -> None:
        self._update()
        print(f"servers_install: apt-get install {' '.join(packages)}", flush=True)
        policy = Path("/usr/sbin/policy-rc.d")
        # No service may start on 0.0.0.0 while apt installs: policy-rc.d answering 101 forbids it.
        ours = not policy.exists()
        if ours:
            policy.write_text("#!/bin/sh\n# ftpexport tests/servers_install.py: no service starts\nexit 101\n")
            policy.chmod(0o755)
        try:
            _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=self.env)
        finally:
            if ours:
                policy.unlink()


def _unpack(server: str, apt: _Apt) -> dict[str, object]:
    packages = SERVERS[server][0]
    SERVERS_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{server}-", dir=SERVERS_DIR) as tmp:
        debs = apt.download(packages, Path(tmp))
        tree = Path(tmp) / "tree"
        versions = {}
        libraries: list[str] = []
        for package, deb in zip(packages, debs, strict=True):
            _run(["dpkg-deb", "-x", str(deb), str(tree)])
            versions[package] = _run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
            libraries += [name for name in _library_dependencies(deb) if name not in libraries]
        marker = {"packages": versions, "libraries": libraries}
        (tree / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        final = SERVERS_DIR / server
        if final.exists():
            shutil.rmtree(final)
        tree.rename(final)
    print(f"servers_install: unpacked {server} {versions} into {final}", flush=True)
    return marker


def main() -> int:
    if os.geteuid() != 0:
        print("servers_install: run as root (it installs libraries and a PAM service file)", file=sys.stderr)
        return 1
    apt = _Apt()
    libraries: list[str] = []
    for server in SERVERS:
        marker = _marker(server) or _unpack(server, apt)
        libraries += [name for name in marker["libraries"] if name not in libraries]  # type: ignore[attr-defined]
    missing = _not_installed(libraries)
    if missing:
        apt.install(missing)
    if not PAM_FILE.exists() or PAM_FILE.read_text() != PAM_TEXT:
        PAM_FILE.write_text(PAM_TEXT)
    # A library the Depends did not name would show here, instead of in a test.
    for server, (_, programs) in SERVERS.items():
        for relative in programs:
            linked = _run(["ldd", str(program(server, relative))]).stdout
            if "not found" in linked:
                print(f"servers_install: {server}/{relative} lacks libraries:\n{linked}", file=sys.stderr)
                return 1
    print(f"servers_install: vsftpd, proftpd, pure-ftpd ready in {SERVERS_DIR}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
