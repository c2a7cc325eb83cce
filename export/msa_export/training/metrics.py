"""Regression metrics of CMU-MOSI / CMU-MOSEI sentiment scores (numpy only).

The definitions follow the evaluation code shared by the MMSA toolkit and the code of Ando et al.
(SLT 2022), so numbers computed here are comparable to the ones those papers report:

- ``mae``: mean absolute error.
- ``corr``: Pearson correlation. When the predictions or the labels are constant the coefficient
  is undefined (numpy gives NaN and a warning); it is reported as ``0.0`` instead, so that a
  collapsed model (one that predicts the same score for every clip) scores "no correlation"
  rather than poisoning averages over seeds with NaN.
- ``acc2_has0`` / ``f1_has0``: two classes, negative (``< 0``) against non-negative (``>= 0``),
  over all clips (zero labels count as non-negative).
- ``acc2_non0`` / ``f1_non0``: clips whose label is exactly ``0`` are dropped; negative against
  positive, where a prediction counts as positive when ``> 0`` (a predicted ``0`` is negative),
  as in the reference code. When every label is ``0`` there is nothing left to score and both are
  NaN.
- ``acc7``: predictions and labels clipped to ``[-3, 3]`` and rounded to the nearest integer with
  :func:`numpy.round`, which rounds halves to the even integer (``2.5 -> 2``, ``-0.5 -> -0``,
  ``1.5 -> 2``), exactly as the reference code does; then the fraction of equal classes.
- ``acc5``: the same with clipping to ``[-2, 2]``.

F1 is the support-weighted F1 over the two classes, equal to scikit-learn's
``f1_score(true, pred, average="weighted")``: the per-class F1 ``2 tp / (2 tp + fp + fn)``
weighted by the number of true members of each class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

METRIC_NAMES: tuple[str, ...] = (
    "mae",
    "corr",
    "acc2_has0",
    "f1_has0",
    "acc2_non0",
    "f1_non0",
    "acc7",
    "acc5",
)
"""Keys of :func:`regression_metrics`, in the order tables print them."""

# Metrics where lower is better (all the others: higher is better).
LOWER_IS_BETTER: frozenset[str] = frozenset({"mae"})

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]


def _as_vector(values: ArrayLike, what: str) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers: {exc}") from exc
    arr = arr.reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{what} is empty: metrics need at least one prediction and label")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{what} has {bad} NaN or infinite values: check the model output")
    return arr


def pearson(pred: ArrayLike, true: ArrayLike) -> float:
    """Pearson correlation of two vectors; ``0.0`` when either is constant (see module doc)."""
    p = _as_vector(pred, "pred")
    t = _as_vector(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred has {p.size} values but true has {t.size}: they must match")
    pc = p - p.mean()
    tc = t - t.mean()
    denom = math.sqrt(float(np.dot(pc, pc)) * float(np.dot(tc, tc)))
    if denom == 0.0:
        return 0.0
    r = float(np.dot(pc, tc)) / denom
    return max(-1.0, min(1.0, r))


def weighted_f1(true: npt.ArrayLike, pred: npt.ArrayLike) -> float:
    """Support-weighted F1 over the classes present in ``true`` or ``pred``.

    Same value as scikit-learn's ``f1_score(true, pred, average="weighted")``. A class that only
    occurs in ``pred`` has zero support and so zero weight (it still lowers the F1 of the others
    through their precision).
    """
    t = np.asarray(true).reshape(-1)
    p = np.asarray(pred).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"pred has {p.size} values but true has {t.size}: they must match")
    if t.size == 0:
        raise ValueError("true is empty: F1 needs at least one label")
    total = 0.0
    support_sum = 0
    for cls in np.union1d(t, p):
        is_t = t == cls
        is_p = p == cls
        tp = int(np.count_nonzero(is_t & is_p))
        fp = int(np.count_nonzero(~is_t & is_p))
        fn = int(np.count_nonzero(is_t & ~is_p))
        support = tp + fn
        denom = 2 * tp + fp + fn
        f1 = (2.0 * tp / denom) if denom else 0.0
        total += f1 * support
        support_sum += support
    return total / support_sum


def _multiclass_acc(pred: FloatArray, true: FloatArray) -> float:
    return float(np.mean(np.round(pred) == np.round(true)))


def regression_metrics(pred: ArrayLike, true: ArrayLike) -> dict[str, float]:
    """All MOSI/MOSEI metrics of sentiment predictions against labels.

    ``pred`` and ``true`` are sequences (or arrays of any shape, flattened) of the same length.
    Returns a dict with the keys of :data:`METRIC_NAMES`; accuracies and F1 are fractions in
    ``[0, 1]``. Raises :class:`ValueError` for empty input, mismatched lengths or non-finite
    values.
    """
    p = _as_vector(pred, "pred")
    t = _as_vector(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred has {p.size} values but true has {t.size}: they must match")

    out: dict[str, float] = {}
    out["mae"] = float(np.mean(np.abs(p - t)))
    out["corr"] = pearson(p, t)

    t_has0 = t >= 0
    p_has0 = p >= 0
    out["acc2_has0"] = float(np.mean(t_has0 == p_has0))
    out["f1_has0"] = weighted_f1(t_has0, p_has0)

    keep = t != 0
    if np.any(keep):
        t_non0 = t[keep] > 0
        p_non0 = p[keep] > 0
        out["acc2_non0"] = float(np.mean(t_non0 == p_non0))
        out["f1_non0"] = weighted_f1(t_non0, p_non0)
    else:
        out["acc2_non0"] = math.nan
        out["f1_non0"] = math.nan

    out["acc7"] = _multiclass_acc(np.clip(p, -3.0, 3.0), np.clip(t, -3.0, 3.0))
    out["acc5"] = _multiclass_acc(np.clip(p, -2.0, 2.0), np.clip(t, -2.0, 2.0))
    return {name: out[name] for name in METRIC_NAMES}


def summarize(runs: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric over several runs (e.g. 5 seeds).

    Returns ``{metric: {"mean": m, "std": s}}`` for every metric of the runs, in the order of the
    first run. ``std`` is the *sample* standard deviation (``ddof=1``), the usual convention when
    reporting "mean ± std over seeds"; with a single run it is ``0.0``. NaN values (e.g.
    ``acc2_non0`` of a test set with only zero labels) propagate into mean and std. Raises
    :class:`ValueError` when ``runs`` is empty or the runs do not have the same metrics.
    """
    if len(runs) == 0:
        raise ValueError("no runs to summarize: pass at least one metrics dict")
    names = list(runs[0].keys())
    for i, run in enumerate(runs[1:], start=1):
        if set(run.keys()) != set(names):
            missing = sorted(set(names) - set(run.keys()))
            extra = sorted(set(run.keys()) - set(names))
            raise ValueError(
                f"run {i} has different metrics than run 0 (missing {missing}, extra {extra}): "
                "summarize runs of the same evaluation only"
            )
    summary: dict[str, dict[str, float]] = {}
    for name in names:
        values = np.array([float(run[name]) for run in runs], dtype=np.float64)
        mean = float(np.mean(values))
        std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
        summary[name] = {"mean": mean, "std": std}
    return summary


def _format_value(name: str, value: float, std: float | None, digits: int) -> str:
    if math.isnan(value):
        return "n/a"
    percent = name.startswith(("acc", "f1"))
    scale = 100.0 if percent else 1.0
    places = max(digits - 2, 0) if percent else digits
    text = f"{value * scale:.{places}f}"
    if std is not None:
        text += f" ± {std * scale:.{places}f}"
    return text


def format_table(
    results: Mapping[str, Mapping[str, float] | Mapping[str, Mapping[str, float]]],
    *,
    metrics: Sequence[str] = METRIC_NAMES,
    digits: int = 3,
) -> str:
    """A markdown table, one row per entry of ``results`` (e.g. per model or modality set).

    Each value is either a metrics dict from :func:`regression_metrics` or a summary from
    :func:`summarize` (then cells read ``mean ± std``). MAE and Corr get ``digits`` decimals;
    accuracies and F1 are shown as percentages with ``digits - 2`` decimals, as papers print them.
    Metrics a row lacks are shown as ``-``.
    """
    header = "| | " + " | ".join(metrics) + " |"
    rule = "|---|" + "|".join("---:" for _ in metrics) + "|"
    lines = [header, rule]
    for row_name, row in results.items():
        cells: list[str] = []
        for name in metrics:
            if name not in row:
                cells.append("-")
                continue
            entry = row[name]
            if isinstance(entry, Mapping):
                cells.append(_format_value(name, float(entry["mean"]), float(entry["std"]), digits))
            else:
                cells.append(_format_value(name, float(entry), None, digits))
        lines.append(f"| {row_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
