"""Bounds on caller-supplied numbers that size memory or work, checked before anything is allocated.

One place for the runtime's resource limits, so every path (``Analyzer``, ``msa-run``, streams,
the Ray batch helper) refuses the same numbers with the same message:

- :func:`bound_threads`: ONNX Runtime threads per session, capped at the CPU count (a warning says
  so): unbounded, ``--threads 5000`` hangs ONNX Runtime and ``100000`` takes 6.8 GB.
- :data:`MIN_SAMPLE_RATE`/:data:`MAX_SAMPLE_RATE`: the rate of caller-given audio
  (``predict_arrays``, checked by :func:`msa_runtime.checks.sample_rate`): resampling 1 Hz audio
  to 16 kHz multiplies its size by 16,000.
- :func:`check_long_window`: the longest span scored in one piece (``long_window``); longer inputs
  are scored in windows (:mod:`msa_runtime.scoring.long`).
- a stream window holds its audio and frames in memory and is encoded in one piece: at most
  :data:`MAX_LONG_WINDOW` seconds (:func:`msa_runtime.checks.window_hop`).
- :data:`MAX_CHARS_PER_TOKEN`: how many characters of text are tokenized at most per token the
  pack keeps (:class:`msa_runtime.preprocess.TextEncoder`), so a 10 MB transcript is never
  tokenized whole.

Manifest numbers (``fps``, ``min_seconds``, ...) are the pack's: its schema check owns them.
"""

from __future__ import annotations

import math
import os
import warnings
from numbers import Integral, Real

from msa_runtime.errors import InputError

MIN_SAMPLE_RATE = 1000
"""Lowest audio rate accepted from a caller (Hz); below it the audio is not speech audio."""
MAX_SAMPLE_RATE = 768_000
"""Highest audio rate accepted from a caller (Hz): the highest rate audio interfaces record at."""
DEFAULT_LONG_WINDOW = 30.0
"""Seconds an input may span and still be scored in one piece (``MSA_EDGE_LONG_WINDOW``)."""
MIN_LONG_WINDOW = 2.0
MAX_LONG_WINDOW = 600.0
"""``long_window`` range: WavLM's attention over one window needs memory growing with the square
of its length: measured with the tiny pack (2 attention heads; real packs have 12-16), a file
scored whole peaks at 0.77 GB for 1 minute and 5.5 GB for 3 (``benchmarks/bench_long.py``)."""
LONG_SLACK = 0.5
"""Seconds an input may exceed ``long_window`` and still be scored whole (container rounding:
a "60 s" AAC file lasts 60.02 s)."""
MAX_CHARS_PER_TOKEN = 8
"""Characters tokenized first per token kept; doubled until enough tokens are found (see
:class:`msa_runtime.preprocess.TextEncoder`)."""

_warned: set[tuple[int, int]] = set()


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def bound_threads(threads: object, option: str = "threads") -> int:
    """A thread count checked (an integer >= 1) and capped at the CPU count, with a warning
    (once per value) when capped: more threads than CPUs only adds contention."""
    if isinstance(threads, bool) or not isinstance(threads, Integral):
        raise InputError(f"{option} must be a whole number >= 1, got {threads!r}")
    n = int(threads)
    if n < 1:
        raise InputError(f"{option} must be at least 1, got {n}")
    cpus = cpu_count()
    if n > cpus:
        if (n, cpus) not in _warned:
            _warned.add((n, cpus))
            warnings.warn(
                f"{option}={n} is more than this machine's {cpus} CPUs: using {cpus}",
                UserWarning,
                stacklevel=3,
            )
        return cpus
    return n


def check_long_window(seconds: object, option: str = "long_window") -> float:
    """The longest span scored in one piece, in [:data:`MIN_LONG_WINDOW`, :data:`MAX_LONG_WINDOW`];
    None reads ``MSA_EDGE_LONG_WINDOW``, else :data:`DEFAULT_LONG_WINDOW`."""
    if seconds is None:
        env = os.environ.get("MSA_EDGE_LONG_WINDOW")
        if not env:
            return DEFAULT_LONG_WINDOW
        try:
            seconds = float(env)
        except ValueError:
            raise InputError(f"MSA_EDGE_LONG_WINDOW must be seconds such as 30, got {env!r}") from None
        option = "MSA_EDGE_LONG_WINDOW"
    bad = isinstance(seconds, bool) or not isinstance(seconds, Real) or not math.isfinite(float(seconds))
    if bad or not MIN_LONG_WINDOW <= float(seconds) <= MAX_LONG_WINDOW:  # type: ignore[arg-type]
        raise InputError(
            f"{option} must be seconds between {MIN_LONG_WINDOW:g} and {MAX_LONG_WINDOW:g}, got {seconds!r}"
        )
    return float(seconds)  # type: ignore[arg-type]


def check_concurrent(concurrent: object) -> bool:
    """Whether encoders run concurrently: ``concurrent``, else ``MSA_EDGE_CONCURRENT`` (1/0,
    true/false, yes/no), else False."""
    if concurrent is None:
        env = os.environ.get("MSA_EDGE_CONCURRENT", "").strip().lower()
        if not env:
            return False
        if env not in _FLAGS:
            raise InputError(f"MSA_EDGE_CONCURRENT must be 1 or 0 (true/false, yes/no), got {env!r}")
        return _FLAGS[env]
    if not isinstance(concurrent, bool):
        raise InputError(f"concurrent must be True or False, got {concurrent!r}")
    return concurrent


_FLAGS = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
}
