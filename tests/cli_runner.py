"""The commands run in-process: ``invoke(*args)`` is ``ftpexport ARGS`` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from ftpexport.cli import cli


def invoke(
    *args: str | Path,
    input: str | None = None,
    env: dict[str, str] | None = None,
    terminal: bool = False,
) -> Result:
    """``ftpexport ARGS`` in this process, with ``input`` on its stdin and ``env`` added to the environment.

    An exception the command lets out is raised in the test (a user would have seen a traceback);
    the exit code, stdout and stderr are on the result. ``terminal``: print as on a terminal, where
    click leaves escape sequences in what it prints (it strips them from other outputs).
    """
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, env=env, color=terminal,
                              catch_exceptions=False)  # fmt: skip
