"""What the export side's command-line tools share: one-line errors and timed progress on stderr."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

import click

from msa_runtime.errors import MsaError

F = TypeVar("F", bound=Callable[..., Any])


class Terminated(BaseException):
    """SIGTERM arrived. A ``BaseException``, as ``KeyboardInterrupt`` is, so it unwinds through
    ``except Exception`` and the ``finally``/``except BaseException`` blocks that remove a
    half-built pack's temporary folder and a cache file's temporary sibling."""


class _Hold:
    """How many :func:`uninterrupted` blocks are open, and whether SIGTERM arrived in one."""

    depth = 0
    pending = False


def _terminate(signum: int, frame: FrameType | None) -> None:
    if _Hold.depth:
        _Hold.pending = True
        return
    # cleanup runs as the exception unwinds: a second SIGTERM must not cut it short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


@contextmanager
def uninterrupted() -> Iterator[None]:
    """SIGTERM waits until the block ends: a folder swap either happens whole or not at all."""
    _Hold.depth += 1
    try:
        yield
    finally:
        _Hold.depth -= 1
    if not _Hold.depth and _Hold.pending:
        _Hold.pending = False
        _terminate(signal.SIGTERM, None)


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread while inside (signal handlers can only
    be set there: elsewhere this does nothing); the previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def fail_cleanly(func: F) -> F:
    """Print an :class:`MsaError` as one line and exit 2, without a traceback; Ctrl-C and SIGTERM
    are one line too (exit 130 and 143, as a shell reports a process those signals ended)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with sigterm_unwinds():
                return func(*args, **kwargs)
        except MsaError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Terminated:
            click.echo("terminated (SIGTERM)", err=True)
            sys.exit(143)

    wrapper.__name__, wrapper.__doc__ = func.__name__, func.__doc__
    return wrapper  # type: ignore[return-value]


def stderr_progress() -> Callable[[str], None]:
    """A progress callback that prints each message on stderr after the seconds since it was made."""
    started = time.perf_counter()

    def progress(msg: str) -> None:
        click.echo(f"[{time.perf_counter() - started:7.1f}s] {msg}", err=True)

    return progress
