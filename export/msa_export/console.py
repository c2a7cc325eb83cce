"""What the export side's command-line tools share: one-line errors and timed progress on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from msa_runtime.errors import MsaError

F = TypeVar("F", bound=Callable[..., Any])


def fail_cleanly(func: F) -> F:
    """Print an :class:`MsaError` as one line and exit 2, without a traceback."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MsaError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    wrapper.__name__, wrapper.__doc__ = func.__name__, func.__doc__
    return wrapper  # type: ignore[return-value]


def stderr_progress() -> Callable[[str], None]:
    """A progress callback that prints each message on stderr after the seconds since it was made."""
    started = time.perf_counter()

    def progress(msg: str) -> None:
        click.echo(f"[{time.perf_counter() - started:7.1f}s] {msg}", err=True)

    return progress
