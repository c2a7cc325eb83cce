"""Argument checks shared by the API and ``msa-run``: one place that turns a caller's value into
a valid one or an :class:`InputError` / :class:`TextError` naming the option as the caller knows
it (``--window`` on the command line, ``window=`` in Python).

Every function takes ``name``, the user-facing name of the option, and returns the checked value
(converted: a ``numpy.float32`` window becomes a ``float``). Type and finiteness checks live here;
range bounds that depend on the machine or the pack (how long, how many threads) are added by
their owners beside these, so there is one check per argument.
"""

from __future__ import annotations

import math
import numbers
import os
import unicodedata
from typing import Any

import numpy as np

from msa_runtime.errors import InputError, TextError
from msa_runtime.limits import MAX_LONG_WINDOW, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

#: Unicode categories that carry nothing a tokenizer keeps: controls, format characters
#: (zero-width space/joiners, BOM, bidi marks, soft hyphen), surrogates, private use,
#: unassigned; plus separators (spaces).
HIDDEN = ("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")


def number(name: str, value: Any) -> float:
    """A real, finite number (``bool`` and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number, got {_show(value)}")
    x = float(value)
    if not math.isfinite(x):
        raise InputError(f"{name} must be a finite number, got {x}")
    return x


def seconds(name: str, value: Any, *, positive: bool = False) -> float:
    """A finite duration or time in seconds: ``> 0`` when ``positive``, else ``>= 0``."""
    x = number(name, value)
    if positive and not x > 0:
        raise InputError(f"{name} must be > 0 seconds, got {x:g}")
    if not positive and x < 0:
        raise InputError(f"{name} must be >= 0 seconds, got {x:g}")
    return x


#: The latest time a span may name (seconds, about 31 years): later ones overflow the sample and
#: frame indices computed from them (``end=1e308`` times 16 kHz is infinite).
MAX_TIME = 1e9
#: The shortest span scored (seconds): a shorter one holds no whole audio sample or video frame.
MIN_SPAN = 0.001


def span(start_name: str, start: Any, end_name: str, end: Any) -> tuple[float, float | None]:
    """``start`` >= 0 and finite; ``end`` None or finite and at least :data:`MIN_SPAN` after
    ``start``; both at most :data:`MAX_TIME`."""
    s = seconds(start_name, start)
    if s > MAX_TIME:
        raise InputError(f"{start_name} must be at most {MAX_TIME:g} seconds, got {s:g}")
    if end is None:
        return s, None
    e = seconds(end_name, end)
    if e > MAX_TIME:
        raise InputError(
            f"{end_name} must be at most {MAX_TIME:g} seconds, got {e:g}: leave it out to score to the end"
        )
    if not e > s:
        raise InputError(f"{end_name} ({e:g} s) must be after {start_name} ({s:g} s)")
    if e - s < MIN_SPAN:
        raise InputError(
            f"span too short: {start_name} {s:.9g} s to {end_name} {e:.9g} s is {e - s:.3g} s; "
            f"a span must be at least {MIN_SPAN:g} s"
        )
    return s, e


#: The shortest stream hop (seconds): shorter ones would emit windows without end (a hop below
#: the float resolution of the time never moves it on).
MIN_HOP = 0.01


def window_hop(
    window: Any, hop: Any, *, fps: float | None = None, names: tuple[str, str] = ("window", "hop")
) -> tuple[float, float]:
    """Stream window and hop: finite, > 0, the window at most
    :data:`~msa_runtime.limits.MAX_LONG_WINDOW`, the hop at least :data:`MIN_HOP` and the window at
    least one video frame long."""
    w = seconds(names[0], window, positive=True)
    h = seconds(names[1], hop, positive=True)
    if w > MAX_LONG_WINDOW:  # a window's audio and frames are held and encoded in one piece
        raise InputError(f"{names[0]} must be at most {MAX_LONG_WINDOW:g} seconds, got {w:g}: use e.g. 6")
    if h < MIN_HOP:
        raise InputError(f"{names[1]} ({h:g} s) must be at least {MIN_HOP:g} s: use e.g. 2")
    if fps and w < 1.0 / fps:
        raise InputError(
            f"{names[0]} ({w:g} s) is shorter than one video frame of this pack "
            f"({1.0 / fps:.3f} s at {fps:g} fps): use a longer window, e.g. 6"
        )
    return w, h


def sample_rate(name: str, value: Any) -> int:
    """A whole, finite, positive number of samples per second (``44100.0`` is accepted)."""
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a whole number of samples per second, got {_show(value)}")
    x = float(value)
    if not math.isfinite(x) or x != int(x) or x <= 0:
        raise InputError(f"{name} must be a positive whole number of Hz (e.g. 16000), got {x:g}")
    if not MIN_SAMPLE_RATE <= x <= MAX_SAMPLE_RATE:  # resampling 1 Hz audio to 16 kHz grows it 16,000x
        raise InputError(
            f"{name} must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, got {int(x)}: "
            "give the rate the audio was recorded at"
        )
    return int(x)


def text(name: str, value: Any) -> str | None:
    """Text to score: None, or a ``str`` of valid Unicode. Empty or whitespace-only text is
    returned as is (it means "no text"); text that holds only invisible characters (controls,
    zero-width characters, ...) is a :class:`TextError`."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        raise InputError(f"{name} must be str, got bytes: decode it first (e.g. {name}.decode('utf-8'))")
    if not isinstance(value, str):
        raise InputError(f"{name} must be str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TextError(
            f"{name} is not valid Unicode (a lone surrogate at character {exc.start}): if it came "
            "from bytes, decode them with errors='replace'"
        ) from exc
    if value.strip() and not visible(value):
        raise TextError(
            f"{name} holds no visible characters (only control, format or zero-width ones): "
            "give the words spoken"
        )
    return value


def visible(value: str) -> str:
    """``value`` without invisible characters (see :data:`HIDDEN`), whitespace collapsed."""
    kept = (" " if c.isspace() else c for c in value if c.isspace() or unicodedata.category(c) not in HIDDEN)
    return " ".join("".join(kept).split())


def source(name: str, value: Any) -> str:
    """A media path, URL, device or ``"-"``: ``str`` or ``os.PathLike`` (not a list, not bytes)."""
    if isinstance(value, (str, os.PathLike)):
        out = os.fspath(value)
        if isinstance(out, str):
            if not out:
                raise InputError(f"{name} is an empty string: give a file, URL or '-'")
            return out
    kind = "a list: score the items one by one" if isinstance(value, (list, tuple)) else _show(value)
    raise InputError(f"{name} must be a path (str or os.PathLike), got {kind}")


def audio(name: str, value: Any) -> np.ndarray | None:
    """Mono real samples as float32: a 1-D array (``[1, n]`` / ``[n, 1]`` accepted), finite."""
    if value is None:
        return None
    if not isinstance(value, (np.ndarray, list, tuple)):
        raise InputError(f"{name} must be a numpy array of samples, got {_show(value)}")
    try:
        x = np.asarray(value)
    except ValueError as exc:
        raise InputError(f"{name} must be a 1-D array of samples ({exc})") from exc
    if np.iscomplexobj(x):
        raise InputError(f"{name} is complex ({x.dtype}): give real samples (e.g. np.real(x) or abs)")
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1 or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise InputError(
            f"{name} must be mono 1-D float samples, got shape {x.shape} {x.dtype}: "
            "downmix first (e.g. audio.mean(axis=0) for [channels, n])"
        )
    x = x.astype(np.float32, copy=False)
    if x.size and not np.isfinite(x).all():
        raise InputError(f"{name} holds NaN or infinite samples: clean the signal first")
    return x


def frames(name: str, value: Any) -> np.ndarray | list[np.ndarray] | None:
    """Video frames: an ``[N, H, W, 3]`` uint8 array or a list of ``H x W x 3`` uint8 arrays."""
    if value is None:
        return None
    if not isinstance(value, (np.ndarray, list, tuple)):
        raise InputError(
            f"{name} must be a numpy array [N, H, W, 3] or a list of frames, got {_show(value)}"
            + (": make a list of it first" if hasattr(value, "__next__") else "")
        )
    out = [np.asarray(f) for f in value] if not isinstance(value, np.ndarray) else value
    for f in out:
        f = np.asarray(f)
        if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise InputError(
                f"{name} must be H x W x 3 uint8 RGB images, got shape {f.shape} "
                f"{f.dtype}: convert them (e.g. frame.to_ndarray(format='rgb24'))"
            )
    return out


def ffmpeg(format: Any, options: Any) -> None:
    """``format``: an FFmpeg format name or None; ``options``: a dict of str to str or None."""
    if format is not None and not isinstance(format, str):
        raise InputError(f"format must be an FFmpeg format name (str), got {type(format).__name__}")
    if options is not None and not (
        isinstance(options, dict) and all(isinstance(v, str) for v in [*options, *options.values()])
    ):
        raise InputError("options must be a dict of str to str (FFmpeg options)")


def flag(name: str, value: Any) -> bool | None:
    """An optional ``bool`` (``numpy.bool_`` accepted)."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    raise InputError(f"{name} must be True, False or None, got {_show(value)}")


#: Hex digits of a pack digest (a sha256: :func:`msa_runtime.pack.pack_digest`).
DIGEST_HEX = 64
#: What ``providers`` may name, for messages.
PROVIDER_CHOICES = (
    "auto, cpu, cuda, openvino[:DEVICE], openvino-native, openvino-ep or ONNX Runtime provider names"
)


def digest(name: str, value: Any) -> str | None:
    """A pinned pack digest: None, or 64 hex digits (case and surrounding spaces ignored),
    returned lower-case."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(
            f"{name} must be the pack's sha256 as a str of {DIGEST_HEX} hex digits, got {_show(value)}"
        )
    x = value.strip().lower()
    if len(x) != DIGEST_HEX or any(c not in "0123456789abcdef" for c in x):
        shown = x if len(x) <= 80 else x[:77] + "..."
        raise InputError(
            f"{name} must be {DIGEST_HEX} hex digits (the pack's manifest.sha256), got {shown!r} "
            f"({len(x)} characters): copy it from msa_runtime.pack.pack_digest(PACK)"
        )
    return x


def pinned_digest(value: Any) -> str | None:
    """``digest=`` checked, else ``MSA_EDGE_PACK_DIGEST`` checked (empty means unset)."""
    if value is not None:
        return digest("digest", value)
    env = os.environ.get("MSA_EDGE_PACK_DIGEST", "").strip()
    return digest("MSA_EDGE_PACK_DIGEST", env) if env else None


def providers(name: str, value: Any) -> str | list[str] | None:
    """Execution providers: None, a non-empty str (comma-separated names) or a non-empty list
    of non-empty str."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.replace(",", "").strip():
            raise InputError(f"{name} is empty ({value!r}): give {PROVIDER_CHOICES}, e.g. cpu")
        return value
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{name} must be a str or a list of str ({PROVIDER_CHOICES}), got {_show(value)}")
    if not value:
        raise InputError(f"{name} is an empty list: give {PROVIDER_CHOICES}, e.g. ['cpu']")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise InputError(
                f"{name} must list provider names as non-empty str ({PROVIDER_CHOICES}), got {_show(item)}"
            )
    return list(value)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"
