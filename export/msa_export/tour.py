"""The offline tour: generate data, train a head, export a pack, score with the runtime.

    python -m msa_export.tour --out tour

Everything runs on this machine with no download: a synthetic multimodal dataset whose label
needs text, audio and video together, the ``tiny`` preset (small encoders with seeded random
weights), the gated fusion head, an int8 pack, and ``msa_runtime.Analyzer`` on the test clips.
It ends by comparing the pack's scores with the trained model's own test predictions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from msa_export.console import fail_cleanly, stderr_progress


def run_tour(
    out: str | Path, *, epochs: int = 60, lr: float = 1e-3, seeds: int = 1, progress: Any = print
) -> dict[str, Any]:
    """Run every step into ``out`` (reusing the dataset and feature cache of an earlier run)."""
    from msa_export.data.datasets import load_dataset
    from msa_export.data.synthetic import make_synthetic_dataset
    from msa_export.pack.build import build_pack
    from msa_export.presets.registry import get_preset
    from msa_export.training.run import train
    from msa_runtime import Analyzer

    out = Path(out)
    data = out / "data"
    manifest = data / "manifest.csv"
    t0 = time.perf_counter()
    if not manifest.exists():
        progress("1/4 generating the synthetic dataset (216 clips of 2 s)")
        make_synthetic_dataset(data)
    else:
        progress(f"1/4 reusing the dataset in {data}")
    progress("2/4 training the gated head on the tiny preset (msa-train)")
    preset = get_preset("tiny")
    metrics = train(
        manifest,
        preset,
        out / "run",
        epochs=epochs,
        lr=lr,
        seeds=seeds,
        cache_dir=out / "cache",
        progress=progress,
    )
    progress("3/4 exporting the pack with the trained head (msa-export --head)")
    build_pack(
        preset,
        out / "pack",
        head=out / "run" / "head.pt",
        precisions=["int8", "fp32"],
        force=True,
        progress=progress,
    )
    progress("4/4 scoring the test clips with the pack (msa-run)")
    ds = load_dataset(manifest)
    trained = metrics["test_predictions"]
    rows = []
    with Analyzer(out / "pack", providers="cpu") as an:
        for s in ds.split("test"):
            p = an.predict(s.media, text=s.text)
            rows.append((s.id, s.label, trained[s.id], p.score))
    labels, ref, got = (np.array([r[i] for r in rows]) for i in (1, 2, 3))
    summary = {
        "clips": len(rows),
        "pack_mae": float(np.abs(got - labels).mean()),
        "trained_mae": float(np.abs(ref - labels).mean()),
        "max_diff_pack_vs_trained": float(np.abs(got - ref).max()),
        "multimodal_test_mae": metrics["summary"]["mae"]["mean"],
        "unimodal_test_mae": {m: v["mae"] for m, v in metrics["unimodal"].items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "tour.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


@click.command()
@click.option("--out", default="tour", show_default=True, type=click.Path())
@click.option("--epochs", default=60, show_default=True)
@fail_cleanly
def main(out: str, epochs: int) -> None:
    """Generate -> train -> export -> run, offline, in a few minutes."""
    progress = stderr_progress()

    s = run_tour(out, epochs=epochs, progress=progress)
    uni = ", ".join(f"{m} {v:.3f}" for m, v in s["unimodal_test_mae"].items())
    click.echo(f"\ntest MAE, multimodal head: {s['multimodal_test_mae']:.3f} (unimodal: {uni})")
    click.echo(
        f"pack (int8, ONNX Runtime) on {s['clips']} test clips: MAE {s['pack_mae']:.3f}; "
        f"largest difference to the trained model's predictions "
        f"{s['max_diff_pack_vs_trained']:.4f}"
    )
    click.echo(f"done in {s['seconds']:.0f} s. Try: msa-run {out}/data/media --pack {out}/pack")


if __name__ == "__main__":
    main()
