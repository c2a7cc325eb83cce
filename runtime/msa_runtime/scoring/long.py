"""Long inputs scored in windows, so memory stays bounded however long the file.

WavLM's attention runs over the whole audio it is given: its memory grows with the square of
the length (even the tiny test pack: 0.77 GB for 1 minute, 5.5 GB for 3). So :meth:`Analyzer.predict`
scores in one piece only what spans at most ``long_window`` seconds (default 30,
``MSA_EDGE_LONG_WINDOW``, ``msa-run --long-window``). A longer input is cut into ``k =
ceil(span / long_window)`` consecutive windows of equal length (``span / k`` seconds, the last
one ending where the media ends; less than half a second left after the last full window, from
container rounding, is not scored); each window is scored as a stream window is (its audio, the
frames sampled inside it, and its own text: the transcript cues overlapping it through
:func:`msa_runtime.scoring.core.text_for_span`, or the given text whole), and the prediction is the
**duration-weighted mean** of the window scores (and of the gates). Files are decoded in one
streaming pass (:mod:`msa_runtime.scoring.stream`'s buffers), never held whole; arrays given to
``predict_arrays`` are cut the same way (frames by their time ``i / fps``). The span is known
from the container's duration: URLs and files that state none are scored whole, like a short clip.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from msa_runtime import media
from msa_runtime.scoring.context import ScoringContext
from msa_runtime.scoring.core import Prediction

TAIL = 0.5
"""Media left past the last full window (container rounding) is scored as a window of its own
only when at least this long (seconds)."""


def window_length(span: float, long_window: float) -> float:
    """The equal window length for a span longer than ``long_window``: ``span / k`` with
    ``k = ceil(span / long_window)``."""
    return span / max(1, math.ceil(span / long_window - 1e-9))


def combine(windows: Sequence[Prediction], notes: tuple[str, ...] = ()) -> Prediction:
    """One prediction from window predictions: duration-weighted mean score and gates, the
    modalities any window used (in the first window's order, then others), summed timings, and
    a note saying how many windows were scored."""
    weights = np.asarray([max(1e-9, (w.end or 0.0) - (w.start or 0.0)) for w in windows], np.float64)
    total = float(weights.sum())
    score = float(np.dot(weights, [w.score for w in windows]) / total)
    gates: dict[str, float] | None = None
    if any(w.gates for w in windows):
        sums: dict[str, float] = {}
        mass: dict[str, float] = {}
        for wt, w in zip(weights, windows):
            for mod, g in (w.gates or {}).items():
                sums[mod] = sums.get(mod, 0.0) + float(wt) * g
                mass[mod] = mass.get(mod, 0.0) + float(wt)
        gates = {m: sums[m] / mass[m] for m in sums}
    modalities: list[str] = []
    for w in windows:
        modalities += [m for m in w.modalities if m not in modalities]
    timings: dict[str, float] = {}
    for w in windows:
        for k, v in w.timings_ms.items():
            timings[k] = round(timings.get(k, 0.0) + v, 2)
    length = total / len(windows)
    extra = [n for w in windows for n in w.notes if n not in notes]
    note = (
        f"long input: scored in {len(windows)} windows of {length:.1f} s "
        "(duration-weighted mean of window scores)"
    )
    first = windows[0]
    texts = [w.text for w in windows if w.text]
    return Prediction(
        score=score,
        modalities=tuple(modalities),
        gates=gates,
        timings_ms=timings,
        notes=(*notes, *dict.fromkeys(extra), note),
        text=first.text if len(set(texts)) <= 1 else None,
        transcript_source=first.transcript_source,
    )


def predict_file(
    an: ScoringContext,
    source: str,
    *,
    text: str | None,
    transcript: str | None,
    start: float,
    end: float | None,
    span: float,
    asr: bool = False,
) -> Prediction:
    """Score ``source`` from ``start`` over ``span`` seconds in equal windows (see the module)."""
    from msa_runtime.scoring.stream import prepare, run_windows

    length = window_length(span, an.long_window)
    state, items, kinds = prepare(
        an,
        source,
        text=text,
        transcript=transcript,
        window=length,
        hop=length,
        asr=asr,
        start=start,
        end=end,
    )
    windows = list(run_windows(state, items, kinds, origin=start, tail=TAIL))
    return _result(windows, str(source))


def predict_arrays(
    an: ScoringContext,
    *,
    frames: np.ndarray | list[np.ndarray] | None,
    audio: np.ndarray | None,
    sample_rate: int | None,
    text: str | None,
    span: float,
) -> Prediction:
    """``predict_arrays`` over a span longer than ``long_window``: each window's audio samples
    and frames (frame ``i`` at ``i / fps``) scored with the whole text, then combined."""
    length = window_length(span, an.long_window)
    fps = an.fps or 0.0
    windows: list[Prediction] = []
    for lo, hi in _bounds(span, length):
        a = None
        if audio is not None and sample_rate:
            a = audio[round(lo * sample_rate) : round(hi * sample_rate)]
        f = None
        if frames is not None and fps:
            f = frames[math.ceil(lo * fps - 1e-9) : math.ceil(hi * fps - 1e-9)]
        has_a, has_f = a is not None and len(a) > 0, f is not None and len(f) > 0
        if not has_a and not has_f:
            continue
        p = an.predict_arrays(
            frames=f if has_f else None, audio=a if has_a else None, sample_rate=sample_rate, text=text
        )
        windows.append(Prediction(**{**p.__dict__, "start": lo, "end": hi}))
    return _result(windows, "the arrays")


def _bounds(span: float, length: float) -> Iterable[tuple[float, float]]:
    k = max(1, round(span / length))
    return [(i * length, span if i == k - 1 else (i + 1) * length) for i in range(k)]


def _result(windows: list[Prediction], name: str) -> Prediction:
    from msa_runtime.errors import MediaError

    if not windows:
        raise MediaError(f"{name}: nothing this pack can score in any window")
    return combine(windows)


def array_span(
    an: ScoringContext,
    frames: np.ndarray | list[np.ndarray] | None,
    audio: np.ndarray | None,
    rate: int | None,
) -> float:
    """Seconds the arrays of a ``predict_arrays`` call span (0 when unknown)."""
    span = 0.0
    fps = an.fps
    if audio is not None and len(audio) and rate and an.sample_rate is not None:
        span = len(audio) / rate
    if frames is not None and len(frames) and fps is not None:
        span = max(span, len(frames) / fps)
    return span


def file_span(info: media.MediaInfo | None, start: float, end: float | None) -> float:
    """Seconds of a file that ``predict`` would score, from what probing it gave (0 when unknown:
    no ``info``, as for a URL, or no duration)."""
    if info is None or info.duration is None:
        return 0.0
    return max(0.0, (info.duration if end is None else min(end, info.duration)) - start)
