"""``msa-run``'s option checks and console plumbing: each option is checked by type and meaning
when click parses it (a :class:`click.UsageError` naming the option, exit 2), with the same
checks the API uses (:mod:`msa_runtime.checks`), so no value a user can type reaches the
"unexpected ... (please report it)" fallback of :mod:`msa_runtime.boundary`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from msa_runtime import checks
from msa_runtime.cli.writers import stdout_formats
from msa_runtime.errors import MsaError


def warn_line(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    """Show a warning as one line, without the source line Python adds."""
    click.echo(f"warning: {' '.join(str(message).split())}", err=True)


class LogLine(logging.Handler):
    """Log records of ``msa_runtime`` (e.g. a file that seems truncated) as warning lines."""

    def emit(self, record: logging.LogRecord) -> None:
        warn_line(record.getMessage(), None)


class Formats(click.Choice[str]):
    """``--format``'s choices: the writer registry's standard-output formats, read each time
    they are used, so a format registered after this module was imported is offered too."""

    def __init__(self) -> None:
        super().__init__(stdout_formats())

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(stdout_formats())

    @choices.setter
    def choices(self, value: tuple[str, ...]) -> None:
        """click.Choice sets its list once; the registry stays the source, so this keeps none."""


def _usage(ctx: click.Context, exc: MsaError) -> click.UsageError:
    return click.UsageError(str(exc), ctx)


def seconds(ctx: click.Context, param: click.Parameter, value: Any) -> float:
    """--window/--hop: a finite number of seconds > 0, named as the user typed it."""
    try:
        return checks.seconds(f"--{param.name}", value, positive=True)
    except MsaError as exc:
        raise _usage(ctx, exc) from None


def time_point(ctx: click.Context, param: click.Parameter, value: Any) -> float | None:
    """--start/--end: None, or finite seconds >= 0 (the span itself is checked with both)."""
    if value is None:
        return None
    try:
        return checks.seconds(f"--{param.name}", value)
    except MsaError as exc:
        raise _usage(ctx, exc) from None


def providers(ctx: click.Context, param: click.Parameter, value: Any) -> str | None:
    """--providers: a non-empty list of names (an empty one would silently mean nothing)."""
    if value is None:
        return None
    try:
        checks.providers("--providers", value)
    except MsaError as exc:
        raise _usage(ctx, exc) from None
    return str(value)


def actors(ctx: click.Context, param: click.Parameter, value: Any) -> int | None:
    """--actors: None or a whole number >= 1 (0 would silently fall back to the CPU count)."""
    if value is not None and value < 1:
        raise click.UsageError(f"--actors must be at least 1 (actors of one CPU each), got {value}", ctx)
    return None if value is None else int(value)


def ray_timeout(ctx: click.Context, param: click.Parameter, value: Any) -> float | None:
    """--ray-timeout: None (``MSA_EDGE_RAY_TIMEOUT``, else 30) or seconds in (0, 3600]."""
    if value is None:
        return None
    from msa_runtime.cli.ray_connect import ray_timeout as check

    try:
        return check(value, "--ray-timeout")
    except MsaError as exc:
        raise _usage(ctx, exc) from None


def plot_file(ctx: click.Context, param: click.Parameter, value: Any) -> Path | None:
    """--plot: None, or a .png/.html file in an existing folder (matplotlib installed for .png:
    else the error names msa-edge[plot])."""
    if value is None:
        return None
    from msa_runtime.plot.output import check_target

    try:
        return check_target(value, "--plot")
    except MsaError as exc:
        raise _usage(ctx, exc) from None


def span(start: float | None, end: float | None) -> tuple[float, float | None]:
    """--start/--end together: ``end`` at least 1 ms after ``start`` (a :class:`UsageError`)."""
    try:
        return checks.span("--start", 0.0 if start is None else start, "--end", end)
    except MsaError as exc:
        raise click.UsageError(str(exc)) from None
