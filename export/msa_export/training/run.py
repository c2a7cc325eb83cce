"""``msa-train`` as a library call: cache features, sweep layers, train heads, write the report."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from msa_export.data.datasets import Dataset, DatasetError, load_dataset
from msa_export.gate.inputs import CHECKPOINT_UTTERANCES, spread_texts
from msa_export.models.heads import HeadConfig, save_checkpoint
from msa_export.presets.kinds import head_kind
from msa_export.presets.registry import Preset
from msa_export.training import features as fc
from msa_export.training import finetune as ft
from msa_export.training import sweep as sw
from msa_export.training.metrics import format_table, summarize
from msa_export.training.sweep import head_config as _config
from msa_export.training.trainer import Split, TrainOptions, TrainResult, evaluate, train_head
from msa_runtime.atomic import atomic_write_text

Progress = Callable[[str], None]
SPLITS = ("train", "dev", "test")


def default_cache() -> Path:
    """``MSA_EDGE_CACHE``, else ``~/.cache/msa-edge/features``."""
    env = os.environ.get("MSA_EDGE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "msa-edge" / "features"


def parse_layers(value: str, modalities: Sequence[str]) -> str | dict[str, int]:
    """``best`` | ``sweep`` | ``weighted`` | ``text=N,audio=N,vision=N``."""
    if value in ("best", "sweep", "weighted"):
        return value
    out: dict[str, int] = {}
    for item in value.split(","):
        key, _, num = item.partition("=")
        if key not in modalities or not num.strip().lstrip("-").isdigit():
            raise DatasetError(
                f"--layers {value!r}: use best, sweep, weighted or "
                f"MODALITY=N pairs for {', '.join(modalities)}"
            )
        out[key] = int(num)
    return out


class _Data:
    """The cached features of one dataset, loaded per layer on demand."""

    def __init__(self, ds: Dataset, folders: dict[str, Path], failed: set[str]) -> None:
        self.folders = folders
        self.samples = {s: [x for x in ds.split(s) if x.id not in failed] for s in SPLITS}
        for name, items in self.samples.items():
            if not items:
                raise DatasetError(f"the {name} split is empty after skipping failed clips")
        for m, folder in folders.items():
            # a modality no training clip has features for would reach the trainer as 0-step inputs
            if not any(fc.has_features(folder, s, m) for s in self.samples["train"]):
                why = "every text is empty" if m == "text" else "no clip's media gave any"
                raise DatasetError(
                    f"no training clip has {m} features ({why}): give {m}, or leave it out with "
                    f"--modalities {','.join(x for x in folders if x != m) or '...'}"
                )
        self.states = {m: fc.num_states(f) for m, f in folders.items()}
        self.dims: dict[str, int] = {}

    def split(self, name: str, layers: dict[str, int | None]) -> Split:
        feats = {}
        for m, layer in layers.items():
            feats[m], dim = fc.load_layer(self.folders[m], self.samples[name], layer, m)
            self.dims[m] = dim or self.dims.get(m, 0)
        labels = np.asarray([s.label for s in self.samples[name]], np.float64)
        return Split(feats=feats, labels=labels, ids=[s.id for s in self.samples[name]])

    def splits(self, layers: dict[str, int | None]) -> tuple[Split, Split, Split]:
        return self.split("train", layers), self.split("dev", layers), self.split("test", layers)


def _modalities(ds: Dataset, preset: Preset, modalities: Sequence[str] | None, head: str) -> list[str]:
    """The modalities to train on (default: every one the preset and the dataset have), checked."""
    available = [m for m in preset.modalities if m == "text" or ds.has_media]
    mods = list(modalities) if modalities else available
    for m in mods:
        if m not in preset.encoders:
            raise DatasetError(
                f"preset {preset.name} has no {m} encoder; it has {', '.join(preset.modalities)}"
            )
        if m not in available:
            raise DatasetError(
                f"{m} needs media files, and dataset {ds.name} has none: train with --modalities text"
            )
    if head_kind(head).text_first and mods[0] != "text":
        raise DatasetError(f"the {head} head needs text (it shifts text tokens)")
    if "text" in mods and not any(s.text.strip() for s in ds.samples):
        rest = ",".join(m for m in mods if m != "text")
        fix = (
            f", or train without text: --modalities {rest}"
            if rest
            else " (there is nothing else to train on)"
        )
        raise DatasetError(f"every text in dataset {ds.name} is empty: fill its text column{fix}")
    return mods


def _sweep_seeds(seeds: int, epochs: int, sweep_seeds: int | None, sweep_folds: int) -> int:
    """``sweep_seeds`` (default 1 with folds, 3 on the dev split), after checking the counts."""
    if sweep_seeds is None:
        sweep_seeds = 1 if sweep_folds >= 3 else 3
    if seeds < 1 or epochs < 1 or sweep_seeds < 1:
        raise DatasetError("--seeds, --sweep-seeds and --epochs must be >= 1")
    if sweep_folds < 0 or sweep_folds in (1, 2):
        raise DatasetError(
            "--sweep-folds must be 0 (the dev split) or >= 3 "
            "(one fold scores, one picks the epoch, the rest train)"
        )
    return sweep_seeds


@dataclass
class _Run:
    """One training run's settings and data, shared by its steps."""

    preset: Preset
    mods: list[str]
    head: str
    data: _Data
    opts: TrainOptions
    out: Path
    progress: Progress
    prefer: dict[str, int | None] = field(default_factory=dict)  # the preset's layers
    chosen: dict[str, int | None] = field(default_factory=dict)  # None: a learned mix of all
    sweep: dict[str, list[dict[str, Any]]] | None = None


def _choose_layers(run: _Run, mode: str | dict[str, int], sweep_folds: int, sweep_seeds: int) -> None:
    """Set ``run.chosen`` (and ``run.sweep`` when sweeping: its plot is written beside the head)."""
    mods, data, preset = run.mods, run.data, run.preset
    run.prefer = {m: preset.encoders[m].layer for m in mods}
    if mode == "sweep":
        run.sweep = sw.sweep(
            data.splits,
            {m: data.states[m] for m in mods},
            data.dims,
            preset,
            mods,
            run.opts,
            run.progress,
            folds=sweep_folds,
            seeds=sweep_seeds,
        )
        picked = {m: sw.choose_layer(rows, run.prefer[m]) for m, rows in run.sweep.items()}
        run.chosen = dict(picked)
        sw.plot(run.sweep, picked, run.prefer, run.out / "sweep.png")
    elif mode == "weighted":
        run.chosen = {m: None for m in mods}
    elif isinstance(mode, dict):
        run.chosen = {m: mode.get(m, preset.encoders[m].layer) for m in mods}
    else:
        run.chosen = {m: preset.encoders[m].layer for m in mods}
    for m, layer in run.chosen.items():
        if layer is not None and not 0 <= layer < data.states[m] - 1:
            raise DatasetError(f"{m} layer {layer} is out of range (valid 0..{data.states[m] - 2})")


def _unimodal(run: _Run, weighted: bool) -> dict[str, dict[str, float]]:
    """Test metrics of a gated head on each modality alone (only when there are several)."""
    unimodal: dict[str, dict[str, float]] = {}
    if len(run.mods) < 2:
        return unimodal
    data = run.data
    for m in run.mods:
        run.progress(f"unimodal baseline: {m}")
        tr, dv, te = data.splits({m: run.chosen[m]})
        ucfg = _config(run.preset, "gated", {m: data.dims[m]})
        r = train_head(
            ucfg, tr, dv, seed=0, opts=run.opts, weighted_states={m: data.states[m]} if weighted else None
        )
        unimodal[m] = evaluate(r, te, ucfg)[0]
    return unimodal


def _save(
    run: _Run,
    result: TrainResult | ft.TunedResult,
    cfg: HeadConfig,
    metrics: dict[str, Any],
) -> None:
    """Write ``head.pt`` (with the fine-tuned blocks, if any), ``metrics.json`` and ``report.md``
    into ``run.out``."""
    data, preset, mods = run.data, run.preset, run.mods
    encoders = {
        m: {"kind": preset.encoders[m].kind, "source": preset.encoders[m].source, "hidden_size": data.dims[m]}
        for m in mods
    }
    dev_texts: list[str] = []
    if "text" in mods:
        dev = [s.text for s in data.samples["dev"] if s.text.strip()]
        dev_texts = spread_texts(dev, CHECKPOINT_UTTERANCES)
    save_checkpoint(
        run.out / "head.pt",
        result.head,
        cfg,
        layers={m: (v if v is not None else data.states[m] - 2) for m, v in run.chosen.items()},
        encoders=encoders,
        preset=preset.name,
        metrics=metrics["summary"],
        utterances=dev_texts,
        tuned=ft.tuned_state(result.tails) if isinstance(result, ft.TunedResult) else None,
    )
    atomic_write_text(run.out / "metrics.json", json.dumps(metrics, indent=1, default=float))
    atomic_write_text(run.out / "report.md", render_report(metrics))
    run.progress(f"wrote {run.out / 'head.pt'}, metrics.json, report.md")


def _extract(
    ds: Dataset,
    preset: Preset,
    mods: list[str],
    cache_dir: str | Path | None,
    offline: bool | None,
    progress: Progress,
) -> fc.CacheReport:
    """Cache every clip's features (warning about missing media and clips that failed to decode)."""
    if ds.missing_media:
        progress(
            f"warning: {len(ds.missing_media)} clips have no media file on disk; they count "
            "as missing audio/vision"
        )
    report = fc.extract_features(
        ds.samples, preset, cache_dir or default_cache(), modalities=mods, offline=offline, progress=progress
    )
    if report.failed:
        first = next(iter(report.failed.items()))
        progress(
            f"warning: {len(report.failed)} clips failed to decode and were skipped "
            f"(first: {first[0]}: {first[1]})"
        )
    return report


def _train_seeds(
    run: _Run,
    cfg: HeadConfig,
    splits: tuple[Split, Split, Split],
    weighted: dict[str, int] | None,
    seeds: int,
) -> list[tuple[TrainResult, dict[str, float]]]:
    """One head per seed, each with its test metrics."""
    train_s, dev_s, test_s = splits
    runs: list[tuple[TrainResult, dict[str, float]]] = []
    for seed in range(seeds):
        run.progress(f"seed {seed}")
        result = train_head(
            cfg, train_s, dev_s, seed=seed, opts=run.opts, weighted_states=weighted, progress=run.progress
        )
        runs.append((result, evaluate(result, test_s, cfg)[0]))
    return runs


def _fit_frozen(
    run: _Run,
    cfg: HeadConfig,
    splits: tuple[Split, Split, Split],
    weighted: dict[str, int] | None,
    seeds: int,
) -> ft.Fit:
    """Frozen training: one head per seed; the best on dev, its config, per-seed test metrics,
    its seed and its test predictions."""
    runs = _train_seeds(run, cfg, splits, weighted, seeds)
    best_seed = min(range(len(runs)), key=lambda i: runs[i][0].dev_loss)
    best = runs[best_seed][0]
    if best.mix is not None:
        cfg = HeadConfig(**{**cfg.__dict__, "extra": {"layer_weights": best.mix.weights()}})
    return best, cfg, [r[1] for r in runs], best_seed, evaluate(best, splits[2], cfg)[1]


def _fit_tuned(
    run: _Run,
    tuned: dict[str, int],
    cfg: HeadConfig,
    splits: tuple[Split, Split, Split],
    cache: str | Path,
    offline: bool | None,
    seeds: int,
    opts: ft.FineTuneOptions | None,
) -> ft.Fit:
    """Fine-tuning: the last K kept blocks of each ``tuned`` encoder (cut at its chosen layer)
    with the head, per seed (:func:`msa_export.training.finetune.fit`)."""
    cards = {m: run.preset.with_layers({m: run.chosen[m] or 0}).encoders[m] for m in tuned}
    return ft.fit(cards, tuned, cfg, run.data.samples, splits, cache, offline, seeds, opts, run.progress)


def train(
    dataset: str | Path,
    preset: Preset,
    out: str | Path,
    *,
    modalities: Sequence[str] | None = None,
    head: str = "gated",
    layers: str = "best",
    seeds: int = 5,
    epochs: int = 50,
    lr: float = 1e-4,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
    sweep_seeds: int | None = None,
    sweep_folds: int = sw.DEFAULT_FOLDS,
    finetune: dict[str, int] | None = None,
    finetune_opts: ft.FineTuneOptions | None = None,
    progress: Progress = lambda m: None,
) -> dict[str, Any]:
    """Train a fusion head on ``dataset`` with ``preset``'s encoders; write into ``out``:
    ``head.pt``, ``metrics.json``, ``report.md`` and (for a sweep) ``sweep.png``.

    A sweep scores every layer by ``sweep_folds``-fold cross-validation over train + dev
    (``sweep_seeds`` seeds per fold, default 1), or with ``sweep_folds=0`` on the dev split
    (``sweep_seeds`` seeds, default 3), and picks with :func:`msa_export.training.sweep.choose_layer`:
    the preset's layer unless another is clearly better.

    ``finetune`` (``{"text": 2}``) trains the last K kept blocks of those encoders with the head
    (:mod:`msa_export.training.finetune`, recipe ``finetune_opts``); ``head.pt`` then holds them."""
    ds = load_dataset(dataset)
    mods = _modalities(ds, preset, modalities, head)
    mode = parse_layers(layers, mods)
    tuned = ft.check_finetune(finetune or {}, mods, preset, mode)
    ft.check_options(finetune_opts or ft.FineTuneOptions())
    sweep_seeds = _sweep_seeds(seeds, epochs, sweep_seeds, sweep_folds)
    if mode == "sweep" and sweep_folds >= 3:  # too few videos for the folds: say so before any work
        sw.assign_folds([s.id for s in ds.samples if s.split in ("train", "dev")], sweep_folds)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = _extract(ds, preset, mods, cache_dir, offline, progress)
    data = _Data(ds, report.folders, set(report.failed))
    run = _Run(preset, mods, head, data, TrainOptions(epochs=epochs, lr=lr), out, progress)
    _choose_layers(run, mode, sweep_folds, sweep_seeds)
    chosen = run.chosen
    progress(f"training the {head} head on layers {chosen} over {seeds} seed(s)")
    splits = data.splits(chosen)
    weighted = {m: data.states[m] for m in mods} if mode == "weighted" else None
    cfg = _config(preset, head, {m: data.dims[m] for m in mods})
    if tuned:
        fit = _fit_tuned(run, tuned, cfg, splits, cache_dir or default_cache(), offline, seeds, finetune_opts)
    else:
        fit = _fit_frozen(run, cfg, splits, weighted, seeds)
    best_result, cfg, runs, best_seed, test_preds = fit
    unimodal = _unimodal(run, bool(weighted))
    test_s = splits[2]
    metrics: dict[str, Any] = {
        "dataset": str(dataset),
        "preset": preset.name,
        "head": head,
        "modalities": mods,
        "layers": {m: ("weighted" if v is None else v) for m, v in chosen.items()},
        "counts": {s: len(data.samples[s]) for s in SPLITS},
        "epochs": epochs,
        "lr": lr,
        "failed_clips": report.failed,
        "runs": runs,
        "summary": summarize(runs),
        "unimodal": unimodal,
        "sweep": run.sweep,
        "preset_layers": run.prefer,
        "finetune": {m: {"blocks": k, **ft.options_dict(finetune_opts)} for m, k in tuned.items()},
        "best_seed": best_seed,
        "test_predictions": dict(zip(test_s.ids, map(float, test_preds))),
    }
    _save(run, best_result, cfg, metrics)
    return metrics


def render_report(metrics: dict[str, Any]) -> str:
    """The markdown report of a training run."""
    lines = [
        f"# msa-train: {metrics['preset']} on {metrics['dataset']}",
        "",
        f"Head `{metrics['head']}`, modalities {', '.join(metrics['modalities'])}, layers "
        f"{metrics['layers']}, {metrics['epochs']} epochs, {len(metrics['runs'])} seed(s). "
        f"Clips: {metrics['counts']}.",
        "",
    ]
    if metrics["failed_clips"]:
        lines += [f"{len(metrics['failed_clips'])} clips failed to decode and were skipped.", ""]
    rows: dict[str, Any] = {f"{'+'.join(metrics['modalities'])} (mean ± std over seeds)": metrics["summary"]}
    rows.update({f"{m} only": v for m, v in metrics["unimodal"].items()})
    lines += ["## Test", "", format_table(rows), ""]
    if metrics["sweep"]:
        chosen = {m: int(v) for m, v in metrics["layers"].items() if v != "weighted"}
        lines += sw.report_lines(metrics["sweep"], chosen, metrics.get("preset_layers", {}))
    return "\n".join(lines)
