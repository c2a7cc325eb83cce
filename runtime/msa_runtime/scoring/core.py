"""The scoring core: what every path that scores with a pack shares.

:class:`msa_runtime.Analyzer` (files, arrays, text), streams (:mod:`msa_runtime.scoring.stream`), export
validation (``msa_export.pack.build``) and the benchmarks all go through these, so a change to how a
prediction is made lands in one place:

- :class:`Prediction` and its one serialisation, :meth:`Prediction.to_dict` (``msa-run``'s records);
- :class:`Record`: the fields of an output record, declared once with their types; every writer
  (json, jsonl, csv, table, Parquet: :mod:`msa_runtime.cli.writers`) derives its columns from it;
- :func:`feature` and :func:`head_feeds`: the fusion head's inputs from encoder outputs;
- :func:`run_jobs`: encoder jobs, timed, optionally on a thread pool;
- :func:`text_for_span`: which transcript text belongs to a time span (re-exported from
  :mod:`msa_runtime.asr.transcript`, where it lives as ``text_between``).

The :class:`~msa_runtime.Analyzer` methods built on them are ``encode(jobs, timings)`` (run
encoder jobs), ``fuse(feats)`` (the head alone), ``score_features(feats, timings, ...)`` (head +
:class:`Prediction`) and ``encode_frames(frames, track)`` (per-frame vision features and per-frame
face flags).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Annotated, Any, NamedTuple, TypedDict

import numpy as np

from msa_runtime.asr.transcript import text_between as text_for_span
from msa_runtime.errors import InputError

Feature = tuple[np.ndarray, np.ndarray]
"""One modality's head input: hidden states ``[1, T, D]`` and their mask ``[1, T]`` (float32)."""
Features = dict[str, Feature]
"""Head inputs by modality; a modality left out counts as absent."""
Job = Callable[[], Feature]
"""A deferred encoder call that returns one modality's :data:`Feature`."""

__all__ = [
    "EncodedFrames",
    "Feature",
    "Features",
    "Flat",
    "Job",
    "Prediction",
    "Record",
    "feature",
    "head_feeds",
    "run_jobs",
    "text_for_span",
]


def _plus_joined(items: list[str]) -> str:
    return "+".join(items)


def _total_ms(timings: dict[str, float]) -> float:
    return round(sum(timings.values()), 1)


def _as_is(value: object) -> object:
    return value


@dataclass(frozen=True)
class Flat:
    """Marks a :class:`Record` field that flat outputs (csv, the table) keep: as column ``column``
    (default: the field's name), its cell made by ``cell``. A field without it has no column, and
    the writer names it on stderr when a record carried it."""

    column: str | None = None
    cell: Callable[[Any], object] = _as_is


class Record(TypedDict, total=False):
    """One output record of ``msa-run`` and ``--ray``, its fields in column order. A
    scored input has ``score``, ``polarity``, ``modalities`` and ``timings_ms`` (from
    :meth:`Prediction.record`); a failed one only ``input`` and ``error`` (with ``start``/``end``
    for a span). ``Annotated[..., Flat(...)]`` is the field's csv/table column."""

    input: Annotated[str, Flat()]
    start: Annotated[float | None, Flat()]
    """Seconds into the input: a stream window's or a span's start."""
    end: Annotated[float | None, Flat()]
    score: Annotated[float, Flat()]
    polarity: Annotated[str, Flat()]
    modalities: Annotated[list[str], Flat(cell=_plus_joined)]
    gates: dict[str, float]
    """The gated head's weight per modality."""
    timings_ms: Annotated[dict[str, float], Flat("total_ms", _total_ms)]
    latency_ms: float
    """Streams: from the window's end being available to its score being ready."""
    notes: list[str]
    text: str | None
    transcript_source: str
    error: Annotated[str, Flat()]
    """A failed input: one line saying why."""


@dataclass(frozen=True)
class Prediction:
    """One score. ``score`` is in [-3, 3] (CMU-MOSI/MOSEI scale); ``modalities`` lists what was
    used; ``gates`` are the head's per-modality weights (gated head only); ``start``/``end``
    are set for stream windows, with ``latency_ms`` from the window's end being available to
    the prediction being ready."""

    score: float
    modalities: tuple[str, ...]
    gates: dict[str, float] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None
    latency_ms: float | None = None
    notes: tuple[str, ...] = ()
    text: str | None = None
    """The text scored (``None``: no text); with ``transcript_source`` ``"given"`` (text or a
    transcript file), ``"sidecar"`` (found beside the input by ``msa-run``) or ``"asr"``."""
    transcript_source: str | None = None

    @property
    def polarity(self) -> str:
        return "positive" if self.score > 0 else "negative" if self.score < 0 else "neutral"

    def record(self, digits: int | None = None) -> Record:
        """This prediction's fields of a :class:`Record`: ``start``, ``end`` (stream windows),
        ``score``, ``polarity``, ``modalities``, ``gates`` (when the head has them),
        ``timings_ms``, ``latency_ms`` (streams), ``notes`` (when any), and ``text`` with
        ``transcript_source`` (when text was scored or transcribed). ``digits`` rounds the score
        and gates."""

        def rnd(x: float) -> float:
            return x if digits is None else round(x, digits)

        out: Record = {}
        if self.start is not None:
            out["start"], out["end"] = self.start, self.end
        out["score"], out["polarity"] = rnd(self.score), self.polarity
        out["modalities"] = list(self.modalities)
        if self.gates:
            out["gates"] = {k: rnd(v) for k, v in self.gates.items()}
        out["timings_ms"] = dict(self.timings_ms)
        if self.latency_ms is not None:
            out["latency_ms"] = self.latency_ms
        if self.notes:  # e.g. "face not found in 3 of 15 frames: centre crop used"
            out["notes"] = list(self.notes)
        if self.transcript_source is not None:
            out["text"], out["transcript_source"] = self.text, self.transcript_source
        return out

    def to_dict(self, digits: int | None = None) -> dict[str, Any]:
        """:meth:`record` as a plain JSON-ready dict (``msa-serve``'s replies, ``msa-run``'s
        json and jsonl lines)."""
        return dict(self.record(digits))


class EncodedFrames(NamedTuple):
    """What :meth:`msa_runtime.Analyzer.encode_frames` returns: ``features`` ``[N, D]`` and, for
    a face-crop pack, ``face_found`` (bool per frame; ``None`` for a centre-crop pack)."""

    features: np.ndarray
    face_found: np.ndarray | None


def feature(hidden: np.ndarray, mask: np.ndarray | None = None) -> Feature:
    """One modality's head input from an encoder output.

    ``hidden`` is ``[1, T, D]``, or ``[T, D]`` (per-frame vision features, given the batch axis
    here); ``mask`` defaults to all ones (audio, vision; text passes its attention mask).
    """
    x = np.asarray(hidden, np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise InputError(f"features must be [1, T, D] or [T, D], got shape {x.shape}")
    m = np.ones(x.shape[:2], np.float32) if mask is None else np.asarray(mask, np.float32)
    return x, m


def head_feeds(
    feats: Mapping[str, Feature],
    modalities: Sequence[str],
    dims: Mapping[str, int] | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """The fusion head's feeds: ``{mod}``, ``{mod}_mask`` per head modality and ``present``.

    ``modalities`` are the head's, in its order; one missing from ``feats`` is fed as a single
    zero step with a zero mask and ``present = 0`` (its width from ``dims``). ``names`` keeps only
    the inputs the head graph declares (all of them when ``None``).
    """
    feeds: dict[str, np.ndarray] = {}
    present = []
    for mod in modalities:
        if mod in feats:
            x, mask = feats[mod]
            present.append(1.0)
        else:
            if dims is None or mod not in dims:
                raise InputError(f"the head needs {mod} features (or its width to mark it absent)")
            x, mask = np.zeros((1, 1, dims[mod]), np.float32), np.zeros((1, 1), np.float32)
            present.append(0.0)
        feeds[mod], feeds[f"{mod}_mask"] = x.astype(np.float32), mask.astype(np.float32)
    feeds["present"] = np.asarray([present], np.float32)
    return feeds if names is None else {k: feeds[k] for k in names}


def run_jobs(jobs: Mapping[str, Job], timings: dict[str, float], pool: Executor | None = None) -> Features:
    """Run encoder jobs (on ``pool`` when given and there are several), recording each one's
    wall time in ``timings[modality]`` (ms)."""

    def timed(mod: str) -> Feature:
        t0 = time.perf_counter()
        out = jobs[mod]()
        timings[mod] = (time.perf_counter() - t0) * 1e3
        return out

    if pool is not None and len(jobs) > 1:
        futures = {m: pool.submit(timed, m) for m in jobs}
        return {m: f.result() for m, f in futures.items()}
    return {m: timed(m) for m in jobs}
