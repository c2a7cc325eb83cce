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
- :data:`MAX_CHARS_PER_TOKEN`, :data:`MAX_SCAN_CHARS_PER_TOKEN`: how many characters of text are
  tokenized first and at most per token the pack keeps (:class:`msa_runtime.preprocess.TextEncoder`),
  so a 10 MB transcript is never tokenized whole, spaces or not.
- :func:`read_bounded` / :func:`check_regular`: every file the runtime reads is a regular file of
  at most a known size (:data:`MAX_TRANSCRIPT_BYTES`, :data:`MAX_TOKENIZER_BYTES`, ...), checked
  with ``stat`` before it is opened, so a FIFO never blocks and a device is never read.
- :data:`MAX_FRAME_PIXELS`, :data:`MAX_MEDIA_SECONDS`, :data:`MIN_MEDIA_SAMPLE_RATE`: what a media
  file may make the decoder produce, read from its stream parameters before decoding
  (:mod:`msa_runtime.media.probe`).

``docs/limits.md`` lists every bound and what happens past it.

Manifest numbers (``fps``, ``min_seconds``, ...) are the pack's: its schema check owns them.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from numbers import Integral, Real

from msa_runtime.errors import InputError, MsaError

MIN_SAMPLE_RATE = 1000
"""Lowest audio rate accepted from a caller (Hz); below it the audio is not speech audio."""
MAX_SAMPLE_RATE = 768_000
"""Highest audio rate accepted from a caller (Hz): the highest rate audio interfaces record at."""
DEFAULT_LONG_WINDOW = 30.0
"""Seconds an input may span and still be scored in one piece (``MSA_EDGE_LONG_WINDOW``)."""
MIN_LONG_WINDOW = 2.0
MAX_LONG_WINDOW = 60.0
"""``long_window`` (and stream ``window``) range. WavLM's attention over one window needs memory
growing with the square of its length, about ``32 * heads * (50 * seconds) ** 2`` bytes. Measured
(peak RSS of the tiny pack's audio encoder alone, 2 heads, one thread): 15 s 0.12 GB, 30 s 0.24 GB,
60 s 0.65 GB, 120 s 2.7 GB. Estimated from the presets' encoders with that formula (not run here):
WavLM Base+ (edge, 12 heads) 0.9 GB at 30 s, 3.5 GB at 60 s, 14 GB at 120 s; WavLM Large
(ando2022-*, 16 heads) 1.2, 4.6 and 18 GB; at the former maximum of 600 s, 460 GB. 60 s is the
longest window a real pack scores in a few GB; longer inputs are scored in windows anyway."""
LONG_SLACK = 0.5
"""Seconds an input may exceed ``long_window`` and still be scored whole (container rounding:
a "60 s" AAC file lasts 60.02 s)."""
MAX_CHARS_PER_TOKEN = 8
"""Characters tokenized first per token kept; doubled until enough tokens are found (see
:class:`msa_runtime.preprocess.TextEncoder`)."""
MAX_SCAN_CHARS_PER_TOKEN = 64
"""Characters tokenized at most per token kept, whatever the text: without spaces (minified text,
base64, one long token) a WordPiece tokenizer makes one [UNK] of a whole 5 MB word after
normalising all of it (5 s, 0.4 GB; 20 MB: 24 s, 1.4 GB). English runs 4-6 characters per token,
CJK about 1, so only text that is mostly spaces or over-long words reaches this budget; the rest
of it is left out with a warning."""

MAX_MANIFEST_BYTES = 64 << 20
"""A pack's ``manifest.json`` (a real one is tens of KB)."""
MAX_TOKENIZER_BYTES = 64 << 20
"""A ``tokenizer.json`` (multilingual ones reach 17-35 MB)."""
MAX_CONFIG_BYTES = 4 << 20
"""Small JSON files: an ASR model's ``config.json``, tuning records (a few KB each)."""
MAX_PACK_FILE_BYTES = 16 << 30
"""Any other pack file (ONNX encoders, an ASR ``model.bin``: Whisper large-v3 in fp32 is 6 GB).
Checked with ``stat`` before the file is hashed, so a sparse or endless file is not read."""
MAX_TRANSCRIPT_BYTES = 16 << 20
"""A ``.txt``/``.srt``/``.vtt`` transcript (an hour of subtitles is about 60 KB)."""

MAX_FRAME_PIXELS = 4096 * 2160
"""Pixels of a decoded video frame (DCI 4K). A frame is converted to RGB at native size: an 8192 x
8192 frame is 192 MB as RGB and took FFmpeg's decoder over 1 GB, so eight such frames in a 27 KB
H.264 file took a server to 9.9 GB."""
MAX_MEDIA_SECONDS = 24 * 3600.0
"""Seconds of media a file may declare or decode to (a day)."""
MIN_MEDIA_SAMPLE_RATE = MIN_SAMPLE_RATE
"""Lowest audio rate of a media file's stream (Hz): a 1.2 KB WAV at 1 Hz declares 600 s of audio,
which resampling to 16 kHz makes 9.6 M samples."""

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


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def size_text(size: int) -> str:
    """Bytes for a message: ``1.5 GB``, ``64 MB``, ``512 bytes``."""
    for unit, shift in (("GB", 30), ("MB", 20), ("KB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def _check_mode(mode: int, size: int, limit: int, label: str, error: type[MsaError], fix: str) -> None:
    kind = next((name for test, name in _KINDS if test(mode)), None)
    if kind is None and not stat.S_ISREG(mode):
        kind = "not a regular file"
    if kind is not None:
        raise error(f"{label} is {kind}, not a regular file; {fix}")
    if size > limit:
        raise error(f"{label} is {size:,} bytes, over the limit of {size_text(limit)}; {fix}")


def check_regular(
    path: str | os.PathLike[str], limit: int, *, label: str, error: type[MsaError], fix: str
) -> int:
    """The size of ``path`` after checking, with ``stat`` only (nothing is opened), that it is a
    regular file of at most ``limit`` bytes; otherwise ``error`` saying ``label`` is a FIFO, a
    device, a folder or too large, then ``fix``. ``FileNotFoundError`` propagates, so each caller
    says what a missing file means."""
    st = os.stat(path)
    _check_mode(st.st_mode, st.st_size, limit, label, error, fix)
    return st.st_size


def read_bounded(
    path: str | os.PathLike[str], limit: int, *, label: str, error: type[MsaError], fix: str
) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes (see :func:`check_regular`).

    The kind is checked before the file is opened and again on the open descriptor (a file swapped
    for a FIFO in between is refused, not waited on: it is opened non-blocking), and at most
    ``limit + 1`` bytes are read, so a file that grows meanwhile is refused too.
    """
    check_regular(path, limit, label=label, error=error, fix=fix)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        _check_mode(st.st_mode, st.st_size, limit, label, error, fix)
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise error(f"{label} grew past the limit of {size_text(limit)} while it was read; {fix}")
    return data


def read_bounded_text(
    path: str | os.PathLike[str], limit: int, *, label: str, error: type[MsaError], fix: str
) -> str:
    """:func:`read_bounded` decoded as UTF-8; undecodable bytes are ``error`` too."""
    data = read_bounded(path, limit, label=label, error=error, fix=fix)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{label} is not UTF-8 text ({exc.reason} at byte {exc.start}); {fix}") from None
