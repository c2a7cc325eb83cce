"""Checks on what callers hand the public scoring core (``Analyzer.score_features``, ``fuse``,
``encode``): features, masks and encoder jobs.

The fusion head is an ONNX graph: a wrong width, rank, batch or mask length reaches it as an ONNX
Runtime error about a node the caller never heard of, and NaN or an empty feature comes out as a
NaN or meaningless score. So every feature is checked here first and refused with an
:class:`~msa_runtime.errors.InputError` that names the modality, what was given and what the
pack expects. The checks return the arrays converted to what the head takes (float32, batch 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from msa_runtime import checks
from msa_runtime.errors import InputError

__all__ = ["check_feature", "check_features", "check_jobs", "check_fields", "check_timings"]

Feature = tuple[np.ndarray, np.ndarray]
_SHAPE_HINT = "(hidden [1, T, D], mask [1, T]), as msa_runtime.scoring.core.feature builds"


def _kind(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    return type(value).__name__


def _known(modalities: Sequence[str]) -> str:
    return ", ".join(modalities) if modalities else "none"


def _modality(key: object, modalities: Sequence[str], what: str) -> str:
    if not isinstance(key, str):
        raise InputError(f"{what} must be keyed by modality name ({_known(modalities)}), got {key!r}")
    if key not in modalities:
        raise InputError(f"unknown modality {key!r} in {what}: this pack scores {_known(modalities)}")
    return key


def _array(mod: str, part: str, value: object) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        # a ragged nested list, or an object numpy cannot hold as one array
        raise InputError(f"{mod} {part} must be a numpy array, got {_kind(value)} ({exc})") from exc


def _hidden(mod: str, label: str, value: object, width: int) -> np.ndarray:
    x = _array(label, "hidden states", value)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{label} hidden states must be a float array ([1, T, {width}]), got {_kind(x)}")
    if x.ndim != 3 or x.shape[0] != 1 or x.shape[2] != width:
        extra = " (add the batch axis: feature(hidden))" if x.ndim == 2 and x.shape[-1] == width else ""
        raise InputError(f"{label} hidden states must have shape [1, T, {width}], got {x.shape}{extra}")
    if x.shape[1] == 0:
        raise InputError(
            f"{label} hidden states have no time steps (shape {x.shape}): leave {mod} out of the "
            "features to score without it"
        )
    if not np.isfinite(x).all():
        raise InputError(f"{label} hidden states hold NaN or infinite values: check the encoder's output")
    return x.astype(np.float32, copy=False)


def _mask(mod: str, label: str, value: object, steps: int) -> np.ndarray:
    m = _array(label, "mask", value)
    if not (m.dtype == np.bool_ or np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise InputError(f"{label} mask must be a numeric array of 0 and 1 ([1, {steps}]), got {_kind(m)}")
    if m.shape != (1, steps):
        raise InputError(
            f"{label} mask must have shape [1, {steps}] to match its hidden states [1, {steps}, D], "
            f"got {m.shape}"
        )
    m = m.astype(np.float32)
    if not np.isin(m, (0.0, 1.0)).all():
        raise InputError(f"{label} mask must hold only 0 and 1 (1 = a step to use), got other values")
    if not m.any():
        raise InputError(
            f"{label} mask is all 0: no step is used; leave {mod} out of the features to score without it"
        )
    return m


def check_feature(mod: str, value: object, width: int, label: str | None = None) -> Feature:
    """One modality's ``(hidden [1, T, width], mask [1, T])``, checked and as float32;
    ``label`` names it in messages (default ``mod``)."""
    label = mod if label is None else label
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InputError(f"{label} features must be a pair {_SHAPE_HINT}, got {_kind(value)}")
    hidden = _hidden(mod, label, value[0], width)
    return hidden, _mask(mod, label, value[1], hidden.shape[1])


def check_features(feats: object, modalities: Sequence[str], dims: Mapping[str, int]) -> dict[str, Feature]:
    """``feats`` (``{modality: (hidden, mask)}``) checked against the head's ``modalities`` and
    the pack's feature widths ``dims``; at least one modality is required."""
    if not isinstance(feats, Mapping):
        raise InputError(
            f"features must be a dict {{modality: pair}} of pairs {_SHAPE_HINT}, got {_kind(feats)}"
        )
    if not feats:
        raise InputError(
            f"nothing to score: the features are empty (give at least one of {_known(modalities)})"
        )
    out: dict[str, Feature] = {}
    for key, value in feats.items():
        mod = _modality(key, modalities, "the features")
        out[mod] = check_feature(mod, value, dims[mod])
    return out


def check_jobs(jobs: object, modalities: Sequence[str]) -> dict[str, Callable[[], Any]]:
    """Encoder jobs (``{modality: callable}``) checked: known modalities, callables, at least one."""
    if not isinstance(jobs, Mapping):
        raise InputError(f"jobs must be a dict {{modality: callable returning a feature}}, got {_kind(jobs)}")
    if not jobs:
        raise InputError(f"nothing to encode: the jobs are empty (give at least one of {_known(modalities)})")
    out: dict[str, Callable[[], Any]] = {}
    for key, job in jobs.items():
        mod = _modality(key, modalities, "the jobs")
        if not callable(job):
            raise InputError(
                f"the {mod} job must be a callable returning a pair {_SHAPE_HINT}, got {_kind(job)}"
            )
        out[mod] = job
    return out


def check_timings(timings: object) -> dict[str, float]:
    """The dict the caller collects timings in (a new one for None)."""
    if timings is None:
        return {}
    if not isinstance(timings, dict):
        raise InputError(f"timings must be a dict (or None), got {_kind(timings)}")
    return timings


def check_fields(
    notes: object, start: object, end: object, latency_ms: object, text: object, source: object
) -> tuple[tuple[str, ...], float | None, float | None, float | None]:
    """The other fields of a prediction: ``notes`` a tuple of str, ``start``/``end``/``latency_ms``
    None or finite numbers, ``text``/``transcript_source`` None or str."""
    if not isinstance(notes, (tuple, list)) or not all(isinstance(n, str) for n in notes):
        raise InputError(f"notes must be a tuple of str, got {_kind(notes)}")
    for name, value in (("text", text), ("transcript_source", source)):
        if value is not None and not isinstance(value, str):
            raise InputError(f"{name} must be a str or None, got {_kind(value)}")
    s, e, lat = (
        None if v is None else checks.number(n, v)
        for n, v in (("start", start), ("end", end), ("latency_ms", latency_ms))
    )
    return tuple(notes), s, e, lat
