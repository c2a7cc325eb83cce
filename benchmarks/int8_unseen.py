"""int8 fidelity beyond the gate: score differences on utterances the parity gate never saw.

For a trained head (an ``msa-train`` run folder), export the pack once per variant (how many
calibration utterances the gate scores, and the score difference the int8 search aims at on
them, ``MSA_EDGE_INT8_SEARCH_SCORE``), then score the dataset's test utterances with the int8
and the fp32 files through ``msa_runtime.Analyzer`` and report, per variant: the largest and
mean |score difference| int8 vs fp32 (what int8 costs) and fp32 pack vs the trained model's
own test predictions (what export and the fp16 feature cache cost), how many test utterances
exceed 0.02, the MatMuls kept fp32, and the text encoder's time per test utterance: the fp32
file and every variant's int8 file timed in one alternating loop (median of rounds), so their
ratios hold on a busy machine. A third field per variant sets the activation smoothing of the
int8 file (``MSA_EDGE_INT8_SMOOTH``: ``auto``, a strength, or ``0`` for none; default auto)::

    python benchmarks/int8_unseen.py --run RUN --dataset ../shared/data/mosi/label.csv \\
        --variants 64:0.02:0,64:0.02:auto --out int8-unseen.md
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
        help="comma-separated ITEMS:TARGET[:SMOOTH] (dev utterances the gate scores : search "
        "score target : activation smoothing, auto / strength / 0)",
    )
    ap.add_argument("--reuse", action="store_true", help="reuse a variant's pack when it is in --work")
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds over the test utterances")
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
    items, target, smooth = (variant.split(":") + ["auto"])[:3]
    n = int(items)
    gate_txt = Path(args.work) / f"dev{n}.txt"
    gate_txt.parent.mkdir(parents=True, exist_ok=True)
    gate_txt.write_text("\n".join(calibration.spread_texts(dev, n)) + "\n", encoding="utf-8")
    calibration.load_utterances.__defaults__ = (n,)  # the gate's item cap, for this study
    os.environ["MSA_EDGE_INT8_SEARCH_SCORE"] = target
    os.environ["MSA_EDGE_INT8_SMOOTH"] = smooth
    out = Path(args.work) / f"pack-{n}-{target}-{smooth}"
    t0 = time.perf_counter()
    export_s = float("nan")  # --reuse: the pack of an earlier run (its export time is in that run's log)
    if not (args.reuse and (out / "manifest.json").is_file()):
        build_pack(
            get_preset(args.preset),
            out,
            head=run / "head.pt",
            precisions=["int8", "fp32"],
            gate_text=gate_txt,
            force=True,
            progress=lambda m: print(f"  {variant}: {m}", flush=True),
        )
        export_s = time.perf_counter() - t0
    manifest = json.loads((out / "manifest.json").read_text())
    int8 = manifest["int8"]["text"]
    a8 = Analyzer(out, providers="cpu", precision="int8")
    a32 = Analyzer(out, providers="cpu", precision="fp32")
    ids = list(test)
    t1 = time.perf_counter()
    q = np.array([a8.predict(text=texts[i]).score for i in ids])
    int8_ms = 1000 * (time.perf_counter() - t1) / len(ids)
    f = np.array([a32.predict(text=texts[i]).score for i in ids])
    p = np.array([test[i] for i in ids])
    d8, d32 = np.abs(q - f), np.abs(f - p)
    worst = int(np.argmax(d8))
    return {
        "variant": variant,
        "pack": str(out),
        "smooth": smooth,
        "smoothed": int8.get("smoothing", {}).get("activations_smoothed", 0),
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


def encoder_ms(rows: list[dict[str, Any]], texts: list[str], rounds: int) -> dict[str, float]:
    """Median ms per utterance of the text encoder alone (ONNX Runtime, 2 threads, batch 1) for
    the fp32 file and each variant's int8 file, timed in alternation over ``rounds`` rounds."""
    from msa_runtime import Analyzer
    from msa_runtime.engine.sessions import make_session

    first = Path(rows[0]["pack"])
    tok = Analyzer(first, providers="cpu", precision="fp32").text_encoder
    assert tok is not None
    feeds = [dict(zip(("input_ids", "attention_mask"), tok(t))) for t in texts]
    files = {"fp32": first / "text.fp32.onnx"} | {
        r["variant"]: Path(r["pack"]) / "text.int8.onnx" for r in rows
    }
    sessions = {k: make_session(p, "cpu", threads=2) for k, p in files.items()}
    times: dict[str, list[float]] = {k: [] for k in files}
    for _ in range(rounds):
        for k, sess in sessions.items():
            t0 = time.perf_counter()
            for f in feeds:
                sess.run(None, f)
            times[k].append(1000 * (time.perf_counter() - t0) / len(feeds))
    return {k: float(np.median(v)) for k, v in times.items()}


def table(rows: list[dict[str, Any]], ms: dict[str, float]) -> list[str]:
    lines = [
        "| block | gate utterances | search target | smoothing (activations) | MatMuls kept fp32 | "
        "gate: max score diff | test int8 vs fp32: max / mean | test > 0.02 | fp32 pack vs trained: "
        "max | text encoder ms/utt (int8; fp32 " + f"{ms['fp32']:.2f})" + " | export s |",
        "|---:" * 11 + "|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['items']} | {r['target']:g} | {r['smooth']} ({r['smoothed']}) | "
            f"{r['kept']} of {r['matmuls']} | "
            f"{r['gate_score']:.4f} | {r['test_max']:.4f} / {r['test_mean']:.4f} | "
            f"{r['test_over']} of {r['n_test']} | {r['fp32_max']:.4f} | {ms[r['variant']]:.2f} | "
            f"{r['export_s']:.0f} |"
        )
    lines.append("")
    lines += [f"- {r['variant']}: kept {', '.join(r['kept_nodes']) or 'none'}" for r in rows]
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
    ms = encoder_ms(rows, [texts[i] for i in test], args.rounds)
    print(json.dumps({"encoder_ms": ms}), flush=True)
    lines = table(rows, ms)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
