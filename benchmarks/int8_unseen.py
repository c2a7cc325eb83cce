"""int8 fidelity beyond the gate: score differences on utterances the parity gate never saw.

For a trained head (an ``msa-train`` run folder), export the pack once per variant (how many
calibration utterances the gate scores, and the score difference the int8 search aims at on
them, ``MSA_EDGE_INT8_SEARCH_SCORE``), then score the dataset's test utterances with the int8
and the fp32 files through ``msa_runtime.Analyzer`` and report, per variant: the largest and
mean |score difference| int8 vs fp32 (what int8 costs) and fp32 pack vs the trained model's
own test predictions (what export and the fp16 feature cache cost), how many test utterances
exceed 0.02, the MatMuls kept fp32 and the time per utterance of the int8 file::

    python benchmarks/int8_unseen.py --run RUN --dataset ../shared/data/mosi/label.csv \\
        --variants 64:0.02,229:0.02,64:0.01 --out int8-unseen.md
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="msa-train output folder (head.pt, metrics.json)")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--preset", default="minilm-text")
    ap.add_argument(
        "--variants",
        default="64:0.02",
        help="comma-separated ITEMS:TARGET (dev utterances the gate scores : search score target)",
    )
    ap.add_argument("--work", default="/tmp/msa-int8-unseen")
    ap.add_argument("--out", required=True)
    return ap.parse_args()


def run_variant(
    args: argparse.Namespace,
    variant: str,
    texts: dict[str, str],
    dev: list[str],
    test: dict[str, float],
) -> dict[str, Any]:
    """Export the pack with the gate on ``ITEMS`` dev utterances and the search aiming at
    ``TARGET``, then score the test utterances with its int8 and fp32 files."""
    from msa_export.gate import inputs as calibration
    from msa_export.pack.build import build_pack
    from msa_export.presets.registry import get_preset
    from msa_runtime import Analyzer

    run = Path(args.run)
    items, target = variant.split(":")
    n = int(items)
    gate_txt = Path(args.work) / f"dev{n}.txt"
    gate_txt.parent.mkdir(parents=True, exist_ok=True)
    gate_txt.write_text("\n".join(calibration.spread_texts(dev, n)) + "\n", encoding="utf-8")
    calibration.load_utterances.__defaults__ = (n,)  # the gate's item cap, for this study
    os.environ["MSA_EDGE_INT8_SEARCH_SCORE"] = target
    t0 = time.perf_counter()
    report = build_pack(
        get_preset(args.preset),
        Path(args.work) / f"pack-{n}-{target}",
        head=run / "head.pt",
        precisions=["int8", "fp32"],
        gate_text=gate_txt,
        force=True,
    )
    export_s = time.perf_counter() - t0
    manifest = json.loads((report.out / "manifest.json").read_text())
    int8 = manifest["int8"]["text"]
    a8 = Analyzer(report.out, providers="cpu", precision="int8")
    a32 = Analyzer(report.out, providers="cpu", precision="fp32")
    ids = list(test)
    t1 = time.perf_counter()
    q = np.array([a8.predict(text=texts[i]).score for i in ids])
    int8_ms = 1000 * (time.perf_counter() - t1) / len(ids)
    f = np.array([a32.predict(text=texts[i]).score for i in ids])
    p = np.array([test[i] for i in ids])
    d8, d32 = np.abs(q - f), np.abs(f - p)
    worst = int(np.argmax(d8))
    return {
        "items": n,
        "target": float(target),
        "layer": manifest["encoders"]["text"]["layer"],
        "kept": len(int8["kept_fp32"]),
        "matmuls": int8["matmuls"],
        "gate_score": manifest["gate"]["files"]["text"]["int8"]["max_score_diff"],
        "test_max": float(d8.max()),
        "test_mean": float(d8.mean()),
        "test_over": int((d8 > 0.02).sum()),
        "fp32_max": float(d32.max()),
        "n_test": len(ids),
        "int8_ms": int8_ms,
        "export_s": export_s,
        "worst": f"{ids[worst]} ({len(texts[ids[worst]].split())} words)",
        "kept_nodes": [k["node"] for k in int8["kept_fp32"]],
    }


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| block | gate utterances | search target | MatMuls kept fp32 | gate: max score diff | "
        "test int8 vs fp32: max / mean | test > 0.02 | fp32 pack vs trained: max | int8 ms/utt | "
        "export s |",
        "|---:" * 10 + "|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['items']} | {r['target']:g} | {r['kept']} of {r['matmuls']} | "
            f"{r['gate_score']:.4f} | {r['test_max']:.4f} / {r['test_mean']:.4f} | "
            f"{r['test_over']} of {r['n_test']} | {r['fp32_max']:.4f} | {r['int8_ms']:.1f} | "
            f"{r['export_s']:.0f} |"
        )
    lines.append("")
    lines += [f"- {r['items']}:{r['target']:g}: kept {', '.join(r['kept_nodes']) or 'none'}" for r in rows]
    return lines


def main() -> None:
    args = parse_args()
    metrics = json.loads((Path(args.run) / "metrics.json").read_text())
    rows_csv = list(csv.DictReader(open(args.dataset, encoding="utf-8")))
    texts = {r["id"]: r["text"] for r in rows_csv}
    dev = [r["text"] for r in rows_csv if r["mode"] == "dev" and r["text"].strip()]
    test = metrics["test_predictions"]
    rows: list[dict[str, Any]] = []
    for variant in args.variants.split(","):
        rows.append(run_variant(args, variant, texts, dev, test))
        print(json.dumps(rows[-1]), flush=True)
    lines = table(rows)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
