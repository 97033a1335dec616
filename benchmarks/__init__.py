"""Benchmarks of ftpexport against the tools an operator would otherwise script (not part of CI).

``python -m benchmarks.export`` compares ``ftpexport run`` with ``sftp -b``, ``rclone copy`` and
``lftp mirror -R`` on real servers on loopback; ``benchmarks.common`` holds the shared helpers
(synthetic inbox, servers, tmpfs work folder).
"""
