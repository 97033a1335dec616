"""Benchmarks of ftpexport against the tools an operator would otherwise script (not part of CI).

``python -m benchmarks.export`` compares ``ftpexport run`` with ``sftp -b``, ``rclone copy`` and
``lftp mirror -R`` on real servers on loopback; ``benchmarks.common`` holds the shared helpers
(synthetic inbox, tmpfs work folder, tools). The servers are the tests' (``tests/servers.py``,
``tests/servers_ftpd.py``): importing this package puts ``tests/`` on ``sys.path``.
"""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))
