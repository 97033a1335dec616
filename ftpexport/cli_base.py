"""The click plumbing every command shares: options that show and name their environment variables,
and a seconds type."""

from __future__ import annotations

import math
import os
from typing import Any

import click


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


class Seconds(click.FloatRange):
    """A number of seconds in a range; NaN (which compares as inside any range) and infinity are refused."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        return seconds
