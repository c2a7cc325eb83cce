"""The documented path at every block of a preset: msa-train -> msa-export -> msa-run.

For each block: train a text head on that block (``msa_export.training.run.train``), export the
pack with that head (int8 + fp32, accuracy-aware int8), score the test utterances with the int8
pack through the runtime (``msa_runtime.Analyzer``) and compare with the trained model's scores.
Writes a markdown table (``--out``)::

    python benchmarks/int8_blocks.py --dataset ../shared/data/mosi/label.csv --cache CACHE \
        --out benchmarks/results/int8-blocks-vm.md
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--preset", default="minilm-text")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--work", default="/tmp/msa-int8-blocks")
    ap.add_argument("--blocks", default=None, help="comma-separated (default: all)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", required=True)
    return ap.parse_args()


def run_block(args: argparse.Namespace, preset: Any, block: int, work: Path) -> dict[str, Any]:
    """Train a head on ``block``, export its pack, score the test utterances with the int8 pack."""
    from msa_export.pack.build import build_pack
    from msa_export.training.run import train
    from msa_runtime import Analyzer

    run = work / f"run{block}"
    t0 = time.perf_counter()
    metrics = train(
        args.dataset,
        preset,
        run,
        layers=f"text={block}",
        seeds=1,
        epochs=args.epochs,
        lr=args.lr,
        cache_dir=args.cache,
    )
    t1 = time.perf_counter()
    report = build_pack(
        preset, work / f"pack{block}", head=run / "head.pt", precisions=["int8", "fp32"], force=True
    )
    t2 = time.perf_counter()
    manifest = json.loads((report.out / "manifest.json").read_text())
    int8 = manifest["int8"]["text"]
    gate = manifest["gate"]["files"]["text"]["int8"]
    an = Analyzer(report.out, providers="cpu", precision="int8")
    preds = metrics["test_predictions"]
    texts = {r["id"]: r["text"] for r in csv.DictReader(open(args.dataset, encoding="utf-8"))}
    diffs = [abs(an.predict(text=texts[i]).score - p) for i, p in list(preds.items())]
    return {
        "block": block,
        "test_mae": metrics["summary"]["mae"]["mean"],
        "matmuls": int8["matmuls"],
        "kept": len(int8["kept_fp32"]),
        "trials": len(int8["search"]),
        "min_cos": gate["min_mean_cosine"],
        "dev_score": gate["max_score_diff"],
        "utterances": manifest["gate"]["utterances"],
        "test_max": float(np.max(diffs)),
        "test_mean": float(np.mean(diffs)),
        "n_test": len(diffs),
        "train_s": t1 - t0,
        "export_s": t2 - t1,
        "kept_nodes": [k["node"] for k in int8["kept_fp32"]],
    }


def write_table(rows: list[dict[str, Any]], out: Path) -> list[str]:
    lines = [
        "| block | head test MAE | MatMuls kept fp32 | gate runs | gate: min mean cosine | "
        "gate: max score diff (dev utterances) | int8 pack vs trained model, test: max / mean "
        "|score diff| | export s |",
        "|---:" * 8 + "|",
    ]
    for r in rows:
        lines.append(
            f"| {r['block']} | {r['test_mae']:.3f} | {r['kept']} of {r['matmuls']} | "
            f"{r['trials']} | {r['min_cos']:.5f} | {r['dev_score']:.4f} "
            f"({r['utterances']}) | {r['test_max']:.4f} / {r['test_mean']:.4f} "
            f"({r['n_test']}) | {r['export_s']:.0f} |"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "\n".join(lines)
        + "\n\n"
        + "\n".join(f"- block {r['block']}: kept {', '.join(r['kept_nodes']) or 'none'}" for r in rows)
        + "\n"
    )
    return lines


def main() -> None:
    args = parse_args()

    from msa_export.presets.registry import get_preset

    preset = get_preset(args.preset)
    blocks = (
        [int(b) for b in args.blocks.split(",")]
        if args.blocks
        else list(range(int(preset.encoders["text"].config["num_hidden_layers"])))
    )
    work = Path(args.work)
    rows = []
    for block in blocks:
        rows.append(run_block(args, preset, block, work))
        print(json.dumps(rows[-1]), flush=True)
    lines = write_table(rows, Path(args.out))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
