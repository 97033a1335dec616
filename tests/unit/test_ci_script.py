"""``.ci/run`` installs what a fresh machine lacks: PostgreSQL's server programs when ``initdb`` is
neither on the PATH nor where Debian keeps it, with the package lists updated first and no service
started by the installation."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from paths import ROOT

SCRIPT = ROOT / ".ci" / "run"
BASH = shutil.which("bash") or "/bin/bash"


def _needed(tmp_path: Path, *, on_path: bool = False, in_debian_place: bool = False) -> list[str]:
    """The packages .ci/run's checks ask for, on a machine whose PATH and /usr/lib/postgresql are
    folders of the test."""
    lines = SCRIPT.read_text().splitlines()
    start = lines.index("need_apt=()")
    end = next(i for i, line in enumerate(lines) if line.startswith('if [ "${#need_apt[@]}" -gt 0 ]'))
    pg_root, bin_dir = tmp_path / "usr-lib-postgresql", tmp_path / "bin"
    bin_dir.mkdir()
    for folder, wanted in ((bin_dir, on_path), (pg_root / "15" / "bin", in_debian_place)):
        if wanted:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "initdb").write_text("#!/bin/sh\n")
            (folder / "initdb").chmod(0o755)
    checks = "\n".join(lines[start:end]).replace("/usr/lib/postgresql", str(pg_root))
    result = subprocess.run([BASH, "-c", checks + '\necho "${need_apt[@]}"'], capture_output=True, text=True,
                            check=True, env={"PATH": str(bin_dir)})  # fmt: skip
    return result.stdout.split()


@pytest.mark.parametrize(
    ("where", "installed"), [({}, True), ({"on_path": True}, False), ({"in_debian_place": True}, False)]
)
def test_postgresql_is_installed_when_initdb_is_missing(
    tmp_path: Path, where: dict[str, bool], installed: bool
) -> None:
    assert ("postgresql" in _needed(tmp_path, **where)) is installed


def test_apt_updates_its_lists_and_forbids_services_before_it_installs() -> None:
    text = SCRIPT.read_text()
    update = text.index("apt-get update")
    guard = text.index("printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d")
    install = text.index('apt-get install -y -qq "${need_apt[@]}"')
    assert update < install and guard < install
    assert text.index("rm -f /usr/sbin/policy-rc.d", install) > install  # and removed after
