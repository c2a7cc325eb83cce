"""What a plot draws, read from ``msa-run``'s records: one :class:`Timeline` per input scored in
windows (a stream, or ``--stream`` over a long file), one :class:`Bar` per input scored whole.

An input with two or more records carrying ``start``/``end`` is a timeline: its windows in time
order, each drawn at its middle, with the per-modality gates and the words of the transcript
that each window adds to the one before (:func:`new_words`). Every other scored input is a bar
(a batch of clips). Failed records (``error``) are counted, not drawn.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from msa_runtime.errors import InputError
from msa_runtime.scoring.core import Prediction

MAX_TIMELINES = 8
"""Inputs with windows that one plot draws (one panel group each)."""
MAX_BARS = 200
"""Inputs scored whole that one plot draws (one bar each)."""
MAX_WINDOWS = 20_000
"""Windows one plot holds in all (11 hours of a stream at a 2 s hop)."""
MAX_WORDS = 400
"""Words of one window's text compared with the window before (longer texts are cut)."""

POSITIVE = "#2e9e4f"
NEGATIVE = "#d1495b"
SCORE = "#222222"
GATE_COLOURS = {"text": "#1f77b4", "audio": "#ff7f0e", "vision": "#9467bd"}
OTHER_GATE = "#7f7f7f"
SCALE = 3.0
"""Scores are in [-SCALE, SCALE] (CMU-MOSI/MOSEI)."""


@dataclass(frozen=True)
class Window:
    """One window's record: seconds into the input, its score, gates and text."""

    start: float
    end: float
    score: float
    polarity: str
    gates: Mapping[str, float]
    text: str | None

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2


@dataclass(frozen=True)
class Words:
    """Transcript words first seen in a window, placed over [start, end] seconds."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Timeline:
    """One input's windows in time order, the modalities that have gates, and its words."""

    input: str
    windows: tuple[Window, ...]
    gate_names: tuple[str, ...]
    words: tuple[Words, ...]


@dataclass(frozen=True)
class Bar:
    """One input scored whole (``span``: its ``start``/``end`` when a span was scored)."""

    input: str
    score: float
    polarity: str
    gates: Mapping[str, float]
    span: tuple[float, float] | None = None


@dataclass(frozen=True)
class PlotData:
    """Everything one plot shows, and how many records failed (not drawn)."""

    timelines: tuple[Timeline, ...]
    bars: tuple[Bar, ...]
    failed: int


def describe(t: Timeline) -> str:
    """``NAME: N windows of W s, hop H s`` (the median window length and hop)."""
    ws = t.windows
    length = statistics.median(w.end - w.start for w in ws)
    hops = [b.start - a.start for a, b in zip(ws, ws[1:])]
    hop = f", hop {round(statistics.median(hops), 2):g} s" if hops else ""
    return f"{t.input}: {len(ws)} windows of {round(length, 2):g} s{hop}"


def gate_colour(name: str) -> str:
    return GATE_COLOURS.get(name, OTHER_GATE)


def _number(rec: Mapping[str, Any], key: str, index: int) -> float:
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"record {index}: {key} must be a finite number, got {value!r}")
    return float(value)


def _gates(rec: Mapping[str, Any], index: int) -> dict[str, float]:
    gates = rec.get("gates") or {}
    if not isinstance(gates, Mapping):
        raise InputError(f"record {index}: gates must map modality names to numbers, got {gates!r}")
    return {str(k): _number(gates, k, index) for k in gates}


def as_record(item: Mapping[str, Any] | Prediction) -> Mapping[str, Any]:
    """A record from a :class:`~msa_runtime.scoring.core.Record`, a dict read from ``msa-run``'s
    json/jsonl output, or a :class:`~msa_runtime.scoring.core.Prediction`."""
    if isinstance(item, Prediction):
        return dict(item.record())
    if not isinstance(item, Mapping):
        raise InputError(f"a plot needs records (dicts as msa-run writes them), got {type(item).__name__}")
    return item


def new_words(before: Sequence[str], now: Sequence[str]) -> list[str]:
    """The words of ``now`` after the longest run that ends ``before`` and starts ``now``: what a
    window's text adds to the previous window's when windows overlap."""
    longest = 0
    for n in range(min(len(before), len(now)), 0, -1):
        if list(before[-n:]) == list(now[:n]):
            longest = n
            break
    return list(now[longest:])


def _words(windows: Sequence[Window]) -> tuple[Words, ...]:
    out: list[Words] = []
    before: list[str] = []
    previous_end = -math.inf
    for w in windows:
        now = (w.text or "").split()[:MAX_WORDS]
        added = new_words(before, now)
        if added:  # new in this window: said after the previous window ended (or in this one)
            out.append(Words(max(w.start, min(previous_end, w.end)), w.end, " ".join(added)))
        before, previous_end = now, w.end
    return tuple(out)


def _timeline(name: str, windows: list[Window]) -> Timeline:
    windows.sort(key=lambda w: (w.start, w.end))
    names: list[str] = []
    for w in windows:
        names += [g for g in w.gates if g not in names]
    return Timeline(name, tuple(windows), tuple(names), _words(windows))


def _window(rec: Mapping[str, Any], index: int) -> Window:
    start, end = _number(rec, "start", index), _number(rec, "end", index)
    if end < start:
        raise InputError(f"record {index}: end ({end}) is before start ({start})")
    score = _number(rec, "score", index)
    text = rec.get("text")
    return Window(
        start,
        end,
        score,
        str(rec.get("polarity", "")),
        _gates(rec, index),
        text if isinstance(text, str) else None,
    )


def plot_data(records: Iterable[Mapping[str, Any] | Prediction]) -> PlotData:
    """Group records by input into timelines (two or more windows) and bars (the rest); an
    :class:`~msa_runtime.errors.InputError` when there is nothing to draw or too much."""
    by_input: dict[str, list[Window]] = {}
    whole: dict[str, Bar] = {}
    failed = count = 0
    for index, item in enumerate(records):
        rec = as_record(item)
        if "score" not in rec:
            failed += 1
            continue
        count += 1
        if count > MAX_WINDOWS:
            raise InputError(f"a plot holds at most {MAX_WINDOWS} records: plot fewer or shorter inputs")
        name = str(rec.get("input", "(input)"))
        if rec.get("start") is not None and rec.get("end") is not None:
            by_input.setdefault(name, []).append(_window(rec, index))
        else:
            whole[name] = Bar(
                name, _number(rec, "score", index), str(rec.get("polarity", "")), _gates(rec, index)
            )
    timelines = [_timeline(n, ws) for n, ws in by_input.items() if len(ws) > 1]
    bars = list(whole.values())
    bars += [_span_bar(n, ws[0]) for n, ws in by_input.items() if len(ws) == 1]
    if not timelines and not bars:
        raise InputError(
            f"nothing to plot: no record has a score ({failed} failed)"
            if failed
            else "nothing to plot: no records"
        )
    if len(timelines) > MAX_TIMELINES:
        raise InputError(
            f"{len(timelines)} inputs have windows; a plot shows at most {MAX_TIMELINES}: plot fewer per run"
        )
    if len(bars) > MAX_BARS:
        raise InputError(
            f"{len(bars)} inputs scored whole; a plot shows at most {MAX_BARS} bars: plot fewer per run"
        )
    return PlotData(tuple(timelines), tuple(bars), failed)


def _span_bar(name: str, w: Window) -> Bar:
    return Bar(name, w.score, w.polarity, w.gates, (w.start, w.end))


def zero_crossings(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """``points`` (time, score) with a point at score 0 inserted wherever the line crosses 0,
    so the positive and negative areas meet exactly on the axis."""
    out: list[tuple[float, float]] = []
    for i, (t, s) in enumerate(points):
        if i:
            t0, s0 = points[i - 1]
            if s0 * s < 0:
                out.append((t0 + (t - t0) * s0 / (s0 - s), 0.0))
        out.append((t, s))
    return out
