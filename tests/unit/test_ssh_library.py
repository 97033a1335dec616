"""paramiko is imported without invoke (``transport/ssh_library.py``): checked in a fresh process,
since this one may have imported both already."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
from ftpexport.transport import transport_class
transport_class("sftp")
imported = "invoke" in sys.modules
import paramiko.config
import invoke  # importable again afterwards
print(json.dumps({"invoke_at_load": imported, "paramiko": "paramiko" in sys.modules,
                  "match_exec_error": type(paramiko.config.invoke_import_error).__name__}))
"""


def test_the_sftp_transport_imports_paramiko_without_invoke() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60)
    found = json.loads(done.stdout)
    assert found == {"invoke_at_load": False, "paramiko": True, "match_exec_error": "ModuleNotFoundError"}
