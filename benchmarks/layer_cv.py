"""The cross-validated layer sweep of ``msa-train --layers sweep``, split over processes.

Runs exactly what the sweep runs (``msa_export.training.sweep``: folds by video over train + dev,
a gated head per fold trained on the other folds but the next, which picks the epoch; msa-train's
default recipe), one JSON line per (layer, fold) so several processes can share the layers and an
interrupted run resumes; ``--report`` then assembles the rows, applies the sweep's choice and
writes the table and ``sweep.png``::

    python benchmarks/layer_cv.py --dataset ../shared/data/mosi/label.csv --cache CACHE \\
        --log cv.jsonl --layers 0,5 &                     # one process per pair of layers
    python benchmarks/layer_cv.py --dataset ... --cache CACHE --log cv.jsonl --report out/
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--preset", default="minilm-text")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--layers", default=None, help="comma-separated layers this process runs (default all)")
    ap.add_argument("--run-folds", default=None, help="comma-separated folds this process runs (default all)")
    ap.add_argument("--log", required=True, help="JSONL, one line per (layer, fold); appended")
    ap.add_argument(
        "--report", default=None, help="folder: assemble the log into report.md + sweep.png (no training)"
    )
    return ap.parse_args()


def read_log(log: Path) -> dict[tuple[int, int], dict[str, Any]]:
    """The (layer, fold) rows already written, so an interrupted run resumes."""
    done: dict[tuple[int, int], dict[str, Any]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            done[(r["layer"], r["fold"])] = r
    return done


def run_folds(
    args: argparse.Namespace,
    preset: Any,
    data: Any,
    layers: list[int],
    folds: list[int],
    done: dict[tuple[int, int], dict[str, Any]],
    log: Path,
) -> None:
    """Train and score one head per (layer, fold) not yet in ``log``, appending a row each."""
    from msa_export.training import sweep as sw
    from msa_export.training.trainer import TrainOptions, evaluate, train_head

    opts = TrainOptions(epochs=args.epochs, lr=args.lr)
    prepared = {}
    for layer in layers:
        train, dev, test = data.splits({"text": layer})
        pool = sw._concat(train, dev)
        prepared[layer] = (pool, test, sw.assign_folds(pool.ids, args.folds))
    cfg = sw.head_config(preset, "gated", {"text": data.dims["text"]})
    # fold-major: every finished fold has all layers, for the paired choice
    for k in folds:
        for layer in layers:
            if (layer, k) in done:
                continue
            pool, test, fold = prepared[layer]
            stop = (k + 1) % args.folds
            fit = sw._subset(pool, np.flatnonzero((fold != k) & (fold != stop)))
            early = sw._subset(pool, np.flatnonzero(fold == stop))
            held = sw._subset(pool, np.flatnonzero(fold == k))
            t0 = time.perf_counter()
            result = train_head(cfg, fit, early, seed=0, opts=opts)
            row = {
                "layer": layer,
                "fold": k,
                "held": evaluate(result, held, cfg)[0],
                "test": evaluate(result, test, cfg)[0],
                "sizes": [len(fit), len(early), len(held)],
                "seconds": time.perf_counter() - t0,
                "epochs": args.epochs,
                "lr": args.lr,
            }
            with log.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def write_report(
    args: argparse.Namespace, preset: Any, data: Any, done: dict[tuple[int, int], dict[str, Any]]
) -> None:
    """Assemble the logged rows into the sweep's table, its choice and ``sweep.png``."""
    from msa_export.training import sweep as sw
    from msa_export.training.trainer import ridge_baseline

    out = Path(args.report)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    all_layers = sorted({lk[0] for lk in done})
    complete = [k for k in range(args.folds) if all((la, k) in done for la in all_layers)]
    print(f"folds complete for every layer: {complete} of {args.folds}")
    for layer in all_layers:
        folds = [done[(layer, k)] for k in complete]
        train, dev, test = data.splits({"text": layer})
        ridge_dev, ridge_test = ridge_baseline(train, dev, test, "text")
        sel_m, sel_s = sw._mean_std([f["held"] for f in folds])
        test_m, test_s = sw._mean_std([f["test"] for f in folds])
        rows.append(
            {
                "layer": layer,
                "criterion": "cv",
                "folds": args.folds,
                "seeds": 1,
                "select": sel_m,
                "select_std": sel_s,
                "select_runs": [f["held"]["mae"] for f in folds],
                "test": test_m,
                "test_std": test_s,
                "ridge_dev": ridge_dev,
                "ridge_test": ridge_test,
            }
        )
    prefer = {"text": preset.encoders["text"].layer}
    chosen = {"text": sw.choose_layer(rows, prefer["text"])}
    sw.plot({"text": rows}, chosen, prefer, out / "sweep.png")
    text = "\n".join(sw.report_lines({"text": rows}, chosen, prefer))
    text += f"\nFolds done for every layer: {len(complete)} of {args.folds}; "
    text += f"{args.epochs} epochs, lr {args.lr}.\n"
    (out / "report.md").write_text(text + "\n")
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    print(text)


def main() -> None:
    args = parse_args()

    from msa_export.data.datasets import load_dataset
    from msa_export.presets.registry import get_preset
    from msa_export.training import features as fc
    from msa_export.training.run import _Data

    preset = get_preset(args.preset)
    ds = load_dataset(args.dataset)
    rep = fc.extract_features(ds.samples, preset, args.cache, modalities=["text"])
    data = _Data(ds, rep.folders, set(rep.failed))
    log = Path(args.log)
    done = read_log(log)
    layers = [int(x) for x in args.layers.split(",")] if args.layers else list(range(data.states["text"] - 1))
    folds = [int(x) for x in args.run_folds.split(",")] if args.run_folds else list(range(args.folds))
    if args.report:
        # the report reads what the log holds; it trains nothing
        write_report(args, preset, data, done)
    else:
        run_folds(args, preset, data, layers, folds, done, log)


if __name__ == "__main__":
    main()
