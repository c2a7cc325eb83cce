"""The layer sweep of ``msa-train --layers sweep``: which block's features to train the head on.

A dev split of a couple of hundred utterances (MOSI: 229) cannot tell neighbouring layers apart:
the per-layer dev MAEs differ by less than their noise, and the single-split choice followed the
noise (MOSI: block 5 on dev, blocks 2-4 better on test). So by default the sweep scores every
layer by **k-fold cross-validation over train + dev** (the test split is never touched):

- the pooled train + dev utterances are cut into ``folds`` folds *by video* (the id before its
  last ``_``: MOSI's ``<video>_<clip>``), so clips of one speaker never sit on both sides;
- for fold ``k`` a unimodal gated head trains on the other folds except fold ``k + 1``, which
  picks its best epoch, and is scored on fold ``k`` (``seeds`` seeds per fold);
- every layer sees the same folds, so layers are compared **paired**, fold by fold: the
  difference of two layers' held-out MAE has a standard error far smaller than either MAE's.

The choice (:func:`choose_layer`): the preset's layer (Ando et al.: an intermediate layer beats
the last) unless the layer with the best mean held-out MAE beats it by more than
:data:`CLEAR_SE` standard errors of their paired difference. ``folds=0`` scores layers on the
dev split instead (so does any ``folds`` below 3; replicates = seeds, paired by seed), with the same rule.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from msa_export.errors import DatasetError
from msa_export.models.heads import HeadConfig
from msa_export.presets.registry import Preset
from msa_export.training.trainer import Split, TrainOptions, evaluate, ridge_baseline, train_head
from msa_runtime.atomic import atomic_write

Progress = Callable[[str], None]
CLEAR_SE = 2.0
"""How many standard errors of the paired difference another layer must beat the preset's by."""
DEFAULT_FOLDS = 5


def head_config(preset: Preset, kind: str, dims: dict[str, int]) -> HeadConfig:
    """The preset's head sizes for a head of ``kind`` over features of ``dims``."""
    h = preset.head
    return HeadConfig(kind=kind, dims=dims, hidden=h.hidden, embed=h.embed, heads=h.heads, dropout=h.dropout)


def group_of(sample_id: str) -> str:
    """The video an utterance id belongs to (``<video>_<clip>`` -> ``<video>``)."""
    return sample_id.rsplit("_", 1)[0] if "_" in sample_id else sample_id


def assign_folds(ids: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """A fold index per id; whole videos per fold, balanced by size (largest video first into
    the smallest fold; ties in a seeded shuffled order, so the split is deterministic)."""
    groups: dict[str, list[int]] = {}
    for i, sid in enumerate(ids):
        groups.setdefault(group_of(sid), []).append(i)
    if len(groups) < folds:
        raise DatasetError(
            f"--sweep-folds {folds}: train + dev hold only {len(groups)} videos; use fewer folds "
            "or --sweep-folds 0 (score layers on the dev split)"
        )
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    names.sort(key=lambda g: -len(groups[g]))  # stable: the shuffle breaks size ties
    sizes = [0] * folds
    out = np.zeros(len(ids), np.int64)
    for g in names:
        k = min(range(folds), key=lambda f: (sizes[f], f))
        out[groups[g]] = k
        sizes[k] += len(groups[g])
    return out


def _subset(split: Split, idx: np.ndarray) -> Split:
    pick = [int(i) for i in idx]
    return Split(
        feats={m: [v[i] for i in pick] for m, v in split.feats.items()},
        labels=split.labels[pick],
        ids=[split.ids[i] for i in pick],
    )


def _concat(a: Split, b: Split) -> Split:
    return Split(
        feats={m: list(a.feats[m]) + list(b.feats[m]) for m in a.feats},
        labels=np.concatenate([a.labels, b.labels]),
        ids=list(a.ids) + list(b.ids),
    )


def _mean_std(runs: Sequence[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    keys = runs[0].keys()
    mean = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    std = {k: float(np.std([r[k] for r in runs], ddof=1)) if len(runs) > 1 else 0.0 for k in keys}
    return mean, std


def _score_layer(
    cfg: HeadConfig,
    splits: tuple[Split, Split, Split],
    opts: TrainOptions,
    folds: int,
    seeds: int,
    progress: Progress,
    label: str,
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Held-out metrics per replicate (fold, or seed on dev) and the replicates' test metrics."""
    train, dev, test = splits
    held, tests = [], []
    if folds >= 3:
        pool = _concat(train, dev)
        fold = assign_folds(pool.ids, folds)
        for k in range(folds):
            stop = (k + 1) % folds
            fit = _subset(pool, np.flatnonzero((fold != k) & (fold != stop)))
            early, out = _subset(pool, np.flatnonzero(fold == stop)), _subset(pool, np.flatnonzero(fold == k))
            fold_held = []
            for seed in range(seeds):
                progress(f"sweep: {label}, fold {k + 1}/{folds}, seed {seed}")
                result = train_head(cfg, fit, early, seed=seed, opts=opts, progress=progress)
                fold_held.append(evaluate(result, out, cfg)[0])
                tests.append(evaluate(result, test, cfg)[0])
            held.append(_mean_std(fold_held)[0])
    else:
        for seed in range(seeds):
            progress(f"sweep: {label}, seed {seed}")
            result = train_head(cfg, train, dev, seed=seed, opts=opts, progress=progress)
            held.append(evaluate(result, dev, cfg)[0])
            tests.append(evaluate(result, test, cfg)[0])
    return held, tests


def sweep(
    splits_of: Callable[[dict[str, int | None]], tuple[Split, Split, Split]],
    states: dict[str, int],
    dims: dict[str, int],
    preset: Preset,
    modalities: Sequence[str],
    opts: TrainOptions,
    progress: Progress,
    *,
    folds: int = DEFAULT_FOLDS,
    seeds: int = 1,
) -> dict[str, list[dict[str, Any]]]:
    """Score every layer of every modality (see the module doc); rows per modality with the
    held-out MAE per replicate (``select_runs``, what :func:`choose_layer` pairs), their mean and
    std, the replicates' test metrics and the ridge baseline of the official splits."""
    table: dict[str, list[dict[str, Any]]] = {}
    for m in modalities:
        table[m] = []
        for layer in range(states[m] - 1):
            splits = splits_of({m: layer})  # fills ``dims`` on first use
            cfg = head_config(preset, "gated", {m: dims[m]})
            held, tests = _score_layer(cfg, splits, opts, folds, seeds, progress, f"{m} layer {layer}")
            sel_m, sel_s = _mean_std(held)
            test_m, test_s = _mean_std(tests)
            ridge_dev, ridge_test = ridge_baseline(*splits, m)
            table[m].append(
                {
                    "layer": layer,
                    "criterion": "cv" if folds >= 3 else "dev",
                    "folds": folds if folds >= 3 else 0,
                    "seeds": seeds,
                    "select": sel_m,
                    "select_std": sel_s,
                    "select_runs": [h["mae"] for h in held],
                    "test": test_m,
                    "test_std": test_s,
                    "ridge_dev": ridge_dev,
                    "ridge_test": ridge_test,
                }
            )
    return table


def paired_difference(rows: Sequence[dict[str, Any]], a: int, b: int) -> tuple[float, float]:
    """Mean and standard error over replicates of layer ``a``'s held-out MAE minus layer ``b``'s
    (positive: ``b`` is better). The standard error is NaN with a single replicate."""
    ra = next(r for r in rows if r["layer"] == a)["select_runs"]
    rb = next(r for r in rows if r["layer"] == b)["select_runs"]
    d = np.asarray(ra, float) - np.asarray(rb, float)
    se = float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
    return float(d.mean()), se


def choose_layer(rows: Sequence[dict[str, Any]], prefer: int | None) -> int:
    """The preset's layer ``prefer`` unless the layer with the lowest mean held-out MAE beats it
    by more than :data:`CLEAR_SE` standard errors of the paired difference; with no preferred
    layer among the rows, or a single replicate (no error estimate), the lowest mean wins."""
    best = min(rows, key=lambda r: r["select"]["mae"])
    layers = [int(r["layer"]) for r in rows]
    if prefer is None or prefer not in layers or best["layer"] == prefer:
        return int(best["layer"])
    diff, se = paired_difference(rows, prefer, int(best["layer"]))
    if math.isnan(se) or diff > CLEAR_SE * se:
        return int(best["layer"])
    return prefer


def describe(rows: Sequence[dict[str, Any]]) -> str:
    """How the rows were scored, for reports and plots."""
    r = rows[0]
    if r.get("criterion") == "cv":
        return f"{r['folds']}-fold CV over train+dev by video, {r['seeds']} seed(s) per fold"
    return f"dev split, {r['seeds']} seed(s)"


def plot(
    table: dict[str, list[dict[str, Any]]], chosen: dict[str, int], prefer: dict[str, int | None], path: Any
) -> None:
    """``sweep.png``: per layer the held-out MAE (mean ± standard error over replicates), the
    replicates' test MAE (mean ± std) and the ridge baseline; chosen and preset layers marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(5.5 * len(table), 3.8), squeeze=False)
    for ax, (m, rows) in zip(axes[0], table.items()):
        layers = np.asarray([r["layer"] for r in rows], float)
        n = len(rows[0]["select_runs"])
        sel_err = [r["select_std"]["mae"] / math.sqrt(n) for r in rows]
        name = "CV held-out" if rows[0].get("criterion") == "cv" else "dev"
        ax.errorbar(
            layers - 0.06,
            [r["select"]["mae"] for r in rows],
            yerr=sel_err,
            fmt="o-",
            capsize=3,
            label=f"{name} (mean ± SE, n={n})",
        )
        ax.errorbar(
            layers + 0.06,
            [r["test"]["mae"] for r in rows],
            yerr=[r["test_std"]["mae"] for r in rows],
            fmt="s-",
            capsize=3,
            label="test (mean ± std of the same heads)",
        )
        ax.plot(layers, [r["ridge_test"]["mae"] for r in rows], "x--", label="ridge test")
        ax.axvline(chosen[m], color="grey", lw=0.8, ls=":", label=f"chosen: {chosen[m]}")
        ref = prefer.get(m)
        if ref is not None and ref != chosen[m]:
            ax.axvline(ref, color="tab:red", lw=0.8, ls="--", label=f"preset: {ref}")
        ax.set_title(f"{m}: MAE per layer ({describe(rows)})", fontsize=8)
        ax.set_xlabel("block (0-based)")
        ax.set_ylabel("MAE")
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)


def report_lines(
    table: dict[str, list[dict[str, Any]]], chosen: dict[str, int], prefer: dict[str, int | None]
) -> list[str]:
    """The sweep section of ``report.md``."""
    first = next(iter(table.values()))
    lines = [
        f"## Layer sweep (unimodal gated head; {describe(first)}; ridge on mean-pooled features "
        "of the official splits)",
        "",
        f"Chosen: the preset's layer unless the layer with the best held-out MAE beats it by more "
        f"than {CLEAR_SE:g} standard errors of their paired (per-replicate) difference. Held-out "
        "MAE: mean ± standard error over replicates; test: mean ± std of the same heads.",
        "",
        "![sweep](sweep.png)",
        "",
    ]
    for m, rows in table.items():
        ref = prefer.get(m)
        ref = ref if ref is not None and ref in [r["layer"] for r in rows] else chosen[m]
        lines += [
            f"### {m}",
            "",
            f"| layer | held-out MAE | vs layer {ref} (paired) | test MAE | test Corr | test Acc-2 "
            "| ridge test MAE | ridge test Corr |",
            "|---:" * 8 + "|",
        ]
        n = len(rows[0]["select_runs"])
        for r in rows:
            mark = " **(chosen)**" if r["layer"] == chosen[m] else ""
            mark += " (preset)" if r["layer"] == prefer.get(m) else ""
            if r["layer"] == ref:
                vs = "-"
            else:
                d, se = paired_difference(rows, int(r["layer"]), ref)
                vs = f"{d:+.3f}" + ("" if math.isnan(se) else f" ± {se:.3f}")
            lines.append(
                f"| {r['layer']}{mark} | {r['select']['mae']:.3f} ± "
                f"{r['select_std']['mae'] / math.sqrt(n):.3f} | {vs} "
                f"| {r['test']['mae']:.3f} ± {r['test_std']['mae']:.3f} "
                f"| {r['test']['corr']:.3f} ± {r['test_std']['corr']:.3f} "
                f"| {100 * r['test']['acc2_non0']:.1f} | {r['ridge_test']['mae']:.3f} "
                f"| {r['ridge_test']['corr']:.3f} |"
            )
        lines.append("")
    return lines


__all__ = [
    "CLEAR_SE",
    "DEFAULT_FOLDS",
    "assign_folds",
    "choose_layer",
    "head_config",
    "paired_difference",
    "plot",
    "report_lines",
    "sweep",
]
