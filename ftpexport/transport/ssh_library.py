"""paramiko, imported without ``invoke``: a tenth of a second off every SFTP process's start.

paramiko's ``config`` module imports ``invoke`` (a task runner, with a vendored YAML and
``unittest`` behind it) for one feature of OpenSSH config files, ``Match exec``, which only
``paramiko.SSHConfig`` uses. ftpexport never reads an OpenSSH config file, yet that import was half
of paramiko's: measured here, ``python -c "import paramiko"`` 0.36 s, 0.25 s without invoke.

``load`` imports paramiko with ``invoke`` made unimportable for that moment (paramiko catches the
ImportError and keeps its ``Match exec`` error for when someone asks for it), then makes it
importable again. Should a paramiko ever need invoke at import, it is imported the ordinary way.
"""

from __future__ import annotations

import sys
import threading

#: the first SFTP connections of a run are opened by several threads at once
_lock = threading.Lock()


def load() -> None:
    """Import paramiko if it is not yet, without invoke when that works."""
    with _lock:
        if "paramiko" in sys.modules or "invoke" in sys.modules:
            return
        sys.modules["invoke"] = None  # type: ignore[assignment]  # "import invoke" raises ImportError
        try:
            import paramiko
        except ImportError:
            pass  # a paramiko that cannot do without invoke: below, the ordinary way
        finally:
            del sys.modules["invoke"]
        import paramiko  # noqa: F401
