"""Text-head recipe study on cached features: each variant over several seeds, test MAE / Corr.

Uses msa-train's own pieces (feature cache, ``train_head``, ``evaluate``); every variant is
trained with seeds 0..N-1 and reported as mean ± std, so recipe choices are measured::

    python benchmarks/text_head_recipe.py --dataset ../shared/data/mosi/label.csv \
        --cache CACHE --out benchmarks/results/text-head-recipe-vm.md --log recipe.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults, block 5 (sweep's pick)": {"layer": 5},
    "defaults, block 3": {"layer": 3},
    "defaults, weighted layers": {"layer": None},
    "weighted, lr 3e-4, 30 epochs": {"layer": None, "lr": 3e-4, "epochs": 30},
    "weighted, no feature masking": {"layer": None, "mask_time": 0.0, "mask_feature": 0.0},
    "block 3, lr 1e-3, 30 epochs": {"layer": 3, "lr": 1e-3, "epochs": 30},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--preset", default="minilm-text")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--only", default=None, help="comma-separated variant indices")
    ap.add_argument("--log", required=True, help="JSONL of per-seed results (appended)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from msa_export.data.datasets import load_dataset
    from msa_export.presets.registry import get_preset
    from msa_export.training import features as fc
    from msa_export.training.metrics import summarize
    from msa_export.training.run import _config, _Data
    from msa_export.training.trainer import TrainOptions, evaluate, ridge_baseline, train_head

    preset = get_preset(args.preset)
    ds = load_dataset(args.dataset)
    rep = fc.extract_features(ds.samples, preset, args.cache, modalities=["text"])
    data = _Data(ds, rep.folders, set(rep.failed))
    names = list(VARIANTS)
    pick = [names[int(i)] for i in args.only.split(",")] if args.only else names
    log = Path(args.log)
    done: dict[str, list[dict[str, float]]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            done.setdefault(r["variant"], []).append(r["test"])
    prepared = {}
    for name in pick:
        v = dict(VARIANTS[name])
        layer = v.pop("layer")
        opts = TrainOptions(**{"epochs": 50, "lr": 1e-4, **v})
        weighted = {"text": data.states["text"]} if layer is None else None
        prepared[name] = (opts, data.splits({"text": layer}), weighted)
    cfg = _config(preset, "gated", {"text": data.dims["text"]})
    for seed in range(args.seeds):  # seed-major: an interrupted study has every variant
        for name in pick:
            if len(done.get(name, [])) > seed:
                continue
            opts, (train, dev, test), weighted = prepared[name]
            t0 = time.perf_counter()
            result = train_head(cfg, train, dev, seed=seed, opts=opts, weighted_states=weighted)
            m = evaluate(result, test, cfg)[0]
            row = {
                "variant": name,
                "seed": seed,
                "test": m,
                "dev_mae": result.dev_loss,
                "seconds": time.perf_counter() - t0,
            }
            with log.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            done.setdefault(name, []).append(m)
            print(json.dumps(row), flush=True)
    lines = [
        "| recipe | seeds | test MAE | test Corr | Acc-2 non-0 | Acc-7 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        runs = done.get(name, [])
        if not runs:
            continue
        s = summarize(runs)
        lines.append(
            f"| {name} | {len(runs)} | {s['mae']['mean']:.3f} ± {s['mae']['std']:.3f} | "
            f"{s['corr']['mean']:.3f} ± {s['corr']['std']:.3f} | "
            f"{100 * s['acc2_non0']['mean']:.1f} | {100 * s['acc7']['mean']:.1f} |"
        )
    for layer in (3, 5):
        tr, dv, te = data.splits({"text": layer})
        _, rt = ridge_baseline(tr, dv, te, "text")
        lines.append(
            f"| ridge on mean-pooled block {layer} | - | {rt['mae']:.3f} | {rt['corr']:.3f} "
            f"| {100 * rt['acc2_non0']:.1f} | {100 * rt['acc7']:.1f} |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
