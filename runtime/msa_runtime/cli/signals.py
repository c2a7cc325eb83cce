"""``msa-run`` ends promptly on SIGTERM (exit 143) and Ctrl-C (exit 130), wherever it is.

:func:`handled` makes SIGTERM raise :class:`Stopped` in the main thread, so the run unwinds like
a Ctrl-C: writers close (JSONL lines are flushed whole, Parquet parts renamed into place), a local
Ray node stops, one line says what happened. Python runs signal handlers only between bytecodes,
so a main thread blocked inside a library (Ray joining a cluster, ONNX Runtime in a long run)
would not see the signal: a watchdog thread, woken through :func:`signal.set_wakeup_fd`, ends
the process with the same line and exit code when the main thread has not finished
:data:`GRACE` seconds after the signal. Files are written atomically or in whole lines, so
what is on disk stays readable either way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

#: Seconds the main thread gets to unwind after a signal before the watchdog ends the process.
GRACE = 5.0
#: Signals that stop a run, with the one line each prints.
STOPPING = {signal.SIGTERM: "terminated (SIGTERM)", signal.SIGINT: "interrupted"}


class Stopped(BaseException):
    """SIGTERM arrived (a BaseException, so a batch's ``except Exception`` does not swallow it)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(STOPPING.get(signal.Signals(signum), signal.Signals(signum).name))
        self.signum = signum

    @property
    def code(self) -> int:
        """The shell's exit code for a process ended by this signal: 128 + its number."""
        return 128 + self.signum


class _State:
    """What the active :func:`handled` block shares with its watchdog."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.finished = threading.Event()  # the block ended: the watchdog stands down
        self.announced = threading.Event()  # the main thread printed the line already


_active: _State | None = None


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def reinstall() -> None:
    """Put the SIGTERM handler back after a library replaced it (``ray.init`` installs its own)."""
    if _active is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)


def announce(exc: BaseException) -> int:
    """Print the one line for a stop (``Stopped`` or ``KeyboardInterrupt``); return its exit code."""
    code = exc.code if isinstance(exc, Stopped) else 128 + signal.SIGINT
    line = str(exc) if isinstance(exc, Stopped) else STOPPING[signal.SIGINT]
    if _active is not None:
        _active.announced.set()
        _active.say(line)
    else:
        print(line, file=sys.stderr)
    return code


def _watch(state: _State, fd: int) -> None:
    """Wait for a signal byte on ``fd``; end the process if the main thread has not finished
    :data:`GRACE` seconds later."""
    while True:
        try:
            data = os.read(fd, 16)
        except OSError:
            return
        stops = [b for b in data if b in STOPPING]
        if not data or state.finished.is_set():
            return
        if stops:
            break
    if state.finished.wait(GRACE):
        return
    if not state.announced.is_set():
        state.say(STOPPING[signal.Signals(stops[0])])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass  # a closed or broken stream: the exit code still tells
    os._exit(128 + stops[0])


@contextmanager
def handled(say: Callable[[str], None]) -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Stopped` and a watchdog bounds how long a stop
    may take (see the module). Outside the main thread (where Python cannot set handlers) the
    block runs as it is."""
    global _active
    if threading.current_thread() is not threading.main_thread() or _active is not None:
        yield
        return
    state = _State(say)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = signal.signal(signal.SIGTERM, _raise)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watchdog = threading.Thread(target=_watch, args=(state, read_fd), name="msa-run-stop", daemon=True)
    watchdog.start()
    _active = state
    stopping = False
    try:
        yield
    except BaseException as exc:
        # a stop, or the exit it turned into: the watchdog stays armed until the process is gone
        stopping = isinstance(exc, (Stopped, KeyboardInterrupt)) or (
            isinstance(exc, SystemExit) and exc.code in (130, 143)
        )
        raise
    finally:
        _active = None
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGTERM, previous)
        if not stopping:
            state.finished.set()
            os.close(write_fd)  # wakes the watchdog, which then returns
            watchdog.join(1.0)
            os.close(read_fd)
