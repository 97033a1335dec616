"""The click plumbing every command shares: options that show and name their environment variables,
a seconds type, and a quiet end when the reader of the output has gone (``ftpexport demo | head -1``)."""

from __future__ import annotations

import math
import os
import select
import sys
from typing import Any

import click
from click.utils import PacifyFlushWrapper

#: the exit status of a command whose output's reader went away: what the shell reports for any
#: program ended by SIGPIPE (``yes | head -1``); 1 and 2 already mean "not delivered" and "usage error"
EXIT_READER_GONE = 128 + 13


class EnvvarOptions:
    """Command mixin: ``--help`` shows each option's environment variable, and a refused value says
    whether it came from the command line or from that variable."""

    params: list[click.Parameter]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, click.Option) and param.envvar:
                param.show_envvar = True

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc, no-any-return]
        except click.BadParameter as exc:
            _locate(exc, given)
            raise


def _on_command_line(param: click.Option, args: list[str]) -> bool:
    """Whether ``args`` give ``param`` (``--jobs 4``, ``--jobs=4``, ``-vv``)."""
    for arg in args:
        if arg == "--":
            return False
        for opt in param.opts + param.secondary_opts:
            if arg == opt or arg.startswith(opt + "=" if opt.startswith("--") else opt):
                return True
    return False


def _locate(exc: click.BadParameter, args: list[str]) -> None:
    """Say where a refused option value came from: ``'--jobs' from the environment variable FTPEXPORT_JOBS``."""
    param = exc.param
    if isinstance(exc, click.MissingParameter) or not isinstance(param, click.Option):
        return  # click's "Missing option '--rules' (env var: 'FTPEXPORT_RULES')" names both ways already
    names = " / ".join(f"'{opt}'" for opt in param.opts)
    envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
    variable = next((v for v in envvars if os.environ.get(v)), None)
    if variable is not None and not _on_command_line(param, args):
        exc.param_hint = f"{names} from the environment variable {variable}"
    else:
        exc.param_hint = names  # typed on the command line: the variable is beside the point


class EnvvarCommand(EnvvarOptions, click.Command):
    """A command whose options show and name their environment variables."""


class EnvvarGroup(EnvvarOptions, click.Group):
    """A group whose commands and sub-groups are EnvvarCommand and EnvvarGroup (or its own class)."""

    command_class = EnvvarCommand
    group_class = type  # sub-groups are of the group's class


class Seconds(click.FloatRange):
    """A number of seconds in a range; NaN (which compares as inside any range) and infinity are refused."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        return seconds


def _gone_readers() -> list[int]:
    """stdout and stderr, where each is a pipe whose reader has closed it (poll reports an error on it)."""
    poller = select.poll()
    for fd in (1, 2):
        poller.register(fd, 0)  # errors and hang-ups are always reported
    return [fd for fd, events in poller.poll(0) if events & select.POLLERR]


def end_quietly_if_reader_gone() -> None:
    """After a command: flush stdout; if its reader has gone, exit ``EXIT_READER_GONE`` without a word.

    Click turns a broken pipe met inside a command into exit 1 and swaps in streams that swallow
    the rest; a write that was still buffered would fail at interpreter exit ("Exception ignored
    ... BrokenPipeError", exit 120). Both end here instead.
    """
    try:
        sys.stdout.flush()
        gone = isinstance(sys.stdout, PacifyFlushWrapper) and bool(_gone_readers())
    except BrokenPipeError:
        gone = True
    if not gone:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in _gone_readers() or [1]:
        os.dup2(devnull, fd)  # what is still buffered goes nowhere, quietly, at interpreter exit
    os.close(devnull)
    raise SystemExit(EXIT_READER_GONE)
