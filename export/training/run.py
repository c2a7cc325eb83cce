"""``msa-train`` as a library call: cache features, sweep layers, train heads, write the report."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from msa_export.calibration import CHECKPOINT_UTTERANCES, _spread
from msa_export.heads import HeadConfig, save_checkpoint
from msa_export.kinds import head_kind
from msa_export.presets import Preset
from msa_export.training import features as fc
from msa_export.training.datasets import Dataset, DatasetError, load_dataset
from msa_export.training.metrics import format_table, summarize
from msa_export.training.trainer import (
    Split,
    TrainOptions,
    TrainResult,
    evaluate,
    ridge_baseline,
    train_head,
)

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


def _config(preset: Preset, kind: str, dims: dict[str, int]) -> HeadConfig:
    h = preset.head
    return HeadConfig(kind=kind, dims=dims, hidden=h.hidden, embed=h.embed, heads=h.heads, dropout=h.dropout)


def _mean_std(runs: Sequence[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    keys = runs[0].keys()
    mean = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    std = {k: float(np.std([r[k] for r in runs], ddof=1)) if len(runs) > 1 else 0.0 for k in keys}
    return mean, std


def _sweep(
    data: _Data,
    preset: Preset,
    modalities: Sequence[str],
    opts: TrainOptions,
    progress: Progress,
    seeds: int = 1,
) -> dict[str, list[dict[str, Any]]]:
    """A unimodal gated head per layer and modality, trained with ``seeds`` seeds: per layer the
    mean and sample std over seeds of the dev and test metrics, and the ridge baseline."""
    table: dict[str, list[dict[str, Any]]] = {}
    for m in modalities:
        table[m] = []
        for layer in range(data.states[m] - 1):
            train, dev, test = data.splits({m: layer})
            cfg = _config(preset, "gated", {m: data.dims[m]})
            devs, tests = [], []
            for seed in range(seeds):
                progress(f"sweep: {m} layer {layer}, seed {seed}")
                result = train_head(cfg, train, dev, seed=seed, opts=opts, progress=progress)
                devs.append(evaluate(result, dev, cfg)[0])
                tests.append(evaluate(result, test, cfg)[0])
            dev_m, dev_s = _mean_std(devs)
            test_m, test_s = _mean_std(tests)
            ridge_dev, ridge_test = ridge_baseline(train, dev, test, m)
            table[m].append(
                {
                    "layer": layer,
                    "seeds": seeds,
                    "dev": dev_m,
                    "dev_std": dev_s,
                    "test": test_m,
                    "test_std": test_s,
                    "ridge_dev": ridge_dev,
                    "ridge_test": ridge_test,
                }
            )
    return table


def choose_layer(rows: Sequence[dict[str, Any]]) -> tuple[int, list[int]]:
    """The layer a sweep picks, and the layers tied with the best.

    Tied: mean dev MAE within one standard error (std over seeds / sqrt(seeds)) of the best
    layer's. Among tied layers the one nearest the middle of the stack wins (Ando et al.:
    intermediate layers beat the last), then the lower dev MAE. With one seed only the best
    dev MAE is tied, as before."""
    best = min(rows, key=lambda r: r["dev"]["mae"])
    n = max(1, int(best.get("seeds", 1)))
    se = float(best.get("dev_std", {}).get("mae", 0.0)) / np.sqrt(n)
    tied = [r for r in rows if r["dev"]["mae"] <= best["dev"]["mae"] + se]
    middle = (len(rows) - 1) / 2
    pick = min(tied, key=lambda r: (abs(r["layer"] - middle), r["dev"]["mae"]))
    return int(pick["layer"]), sorted(int(r["layer"]) for r in tied)


def _plot(table: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(5 * len(table), 3.6), squeeze=False)
    for ax, (m, rows) in zip(axes[0], table.items()):
        layers = np.asarray([r["layer"] for r in rows], float)
        for key, style, dx in (("dev", "o-", -0.06), ("test", "s-", 0.06)):
            err = [r.get(f"{key}_std", {}).get("mae", 0.0) for r in rows]
            ax.errorbar(
                layers + dx,
                [r[key]["mae"] for r in rows],
                yerr=err,
                fmt=style,
                capsize=3,
                label=f"{key} (mean ± std, {rows[0].get('seeds', 1)} seeds)",
            )
        ax.plot(layers, [r["ridge_test"]["mae"] for r in rows], "x--", label="ridge test")
        chosen, _ = choose_layer(rows)
        ax.axvline(chosen, color="grey", lw=0.8, ls=":", label=f"chosen: {chosen}")
        ax.set_title(f"{m}: MAE per layer")
        ax.set_xlabel("block (0-based)")
        ax.set_ylabel("MAE")
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


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
    sweep_seeds: int = 3,
    progress: Progress = lambda m: None,
) -> dict[str, Any]:
    """Train a fusion head on ``dataset`` with ``preset``'s encoders; write into ``out``:
    ``head.pt``, ``metrics.json``, ``report.md`` and (for a sweep) ``sweep.png``.

    A sweep trains ``sweep_seeds`` seeds per layer and picks with :func:`choose_layer`."""
    ds = load_dataset(dataset)
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
    mode = parse_layers(layers, mods)
    if seeds < 1 or epochs < 1 or sweep_seeds < 1:
        raise DatasetError("--seeds, --sweep-seeds and --epochs must be >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
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
    data = _Data(ds, report.folders, set(report.failed))
    opts = TrainOptions(epochs=epochs, lr=lr)
    sweep = _sweep(data, preset, mods, opts, progress, seeds=sweep_seeds) if mode == "sweep" else None
    if sweep is not None:
        chosen: dict[str, int | None] = {m: choose_layer(rows)[0] for m, rows in sweep.items()}
        _plot(sweep, out / "sweep.png")
    elif mode == "weighted":
        chosen = {m: None for m in mods}
    elif isinstance(mode, dict):
        chosen = {m: mode.get(m, preset.encoders[m].layer) for m in mods}
    else:
        chosen = {m: preset.encoders[m].layer for m in mods}
    for m, layer in chosen.items():
        if layer is not None and not 0 <= layer < data.states[m] - 1:
            raise DatasetError(f"{m} layer {layer} is out of range (valid 0..{data.states[m] - 2})")
    progress(f"training the {head} head on layers {chosen} over {seeds} seed(s)")
    train_s, dev_s, test_s = data.splits(chosen)
    weighted = {m: data.states[m] for m in mods} if mode == "weighted" else None
    cfg = _config(preset, head, {m: data.dims[m] for m in mods})
    runs: list[tuple[TrainResult, dict[str, float]]] = []
    for seed in range(seeds):
        progress(f"seed {seed}")
        result = train_head(
            cfg, train_s, dev_s, seed=seed, opts=opts, weighted_states=weighted, progress=progress
        )
        runs.append((result, evaluate(result, test_s, cfg)[0]))
    best_result, _ = min(runs, key=lambda r: r[0].dev_loss)
    unimodal: dict[str, dict[str, float]] = {}
    if len(mods) > 1:
        for m in mods:
            progress(f"unimodal baseline: {m}")
            single = {m: chosen[m]}
            tr, dv, te = data.splits(single)
            ucfg = _config(preset, "gated", {m: data.dims[m]})
            r = train_head(
                ucfg, tr, dv, seed=0, opts=opts, weighted_states={m: data.states[m]} if weighted else None
            )
            unimodal[m] = evaluate(r, te, ucfg)[0]
    layer_out = {m: (v if v is not None else data.states[m] - 2) for m, v in chosen.items()}
    if best_result.mix is not None:
        cfg = HeadConfig(**{**cfg.__dict__, "extra": {"layer_weights": best_result.mix.weights()}})
    test_preds = evaluate(best_result, test_s, cfg)[1]
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
        "runs": [r[1] for r in runs],
        "summary": summarize([r[1] for r in runs]),
        "unimodal": unimodal,
        "sweep": sweep,
        "best_seed": runs.index(min(runs, key=lambda r: r[0].dev_loss)),
        "test_predictions": dict(zip(test_s.ids, map(float, test_preds))),
    }
    encoders = {
        m: {"kind": preset.encoders[m].kind, "source": preset.encoders[m].source, "hidden_size": data.dims[m]}
        for m in mods
    }
    save_checkpoint(
        out / "head.pt",
        best_result.head,
        cfg,
        layers=layer_out,
        encoders=encoders,
        preset=preset.name,
        metrics=metrics["summary"],
        utterances=_spread([s.text for s in data.samples["dev"] if s.text.strip()], CHECKPOINT_UTTERANCES)
        if "text" in mods
        else (),
    )
    _write(out / "metrics.json", json.dumps(metrics, indent=1, default=float))
    _write(out / "report.md", render_report(metrics))
    progress(f"wrote {out / 'head.pt'}, metrics.json, report.md")
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
        n = next(iter(metrics["sweep"].values()))[0].get("seeds", 1)
        lines += [
            f"## Layer sweep (unimodal gated head, mean ± std over {n} seed(s); ridge on "
            "mean-pooled features)",
            "",
            "Chosen: the layer nearest the middle of the stack among those whose mean dev MAE "
            "is within one standard error of the best (tied).",
            "",
            "![sweep](sweep.png)",
            "",
        ]
        for m, table in metrics["sweep"].items():
            header = (
                "| layer | dev MAE | test MAE | test Corr | test Acc-2 | ridge dev MAE "
                "| ridge test MAE | ridge test Corr |"
            )
            lines += [f"### {m}", "", header, "|---:" * 8 + "|"]
            chosen, tied = choose_layer(table)

            def pm(r: dict[str, Any], key: str, metric: str) -> str:
                std = r.get(f"{key}_std", {}).get(metric)
                return f"{r[key][metric]:.3f}" + (f" ± {std:.3f}" if std else "")

            for r in table:
                mark = " **(chosen)**" if r["layer"] == chosen else " (tied)" if r["layer"] in tied else ""
                lines.append(
                    f"| {r['layer']}{mark} | {pm(r, 'dev', 'mae')} | {pm(r, 'test', 'mae')} "
                    f"| {pm(r, 'test', 'corr')} | {100 * r['test']['acc2_non0']:.1f} "
                    f"| {r['ridge_dev']['mae']:.3f} | {r['ridge_test']['mae']:.3f} "
                    f"| {r['ridge_test']['corr']:.3f} |"
                )
            lines.append("")
    return "\n".join(lines)
