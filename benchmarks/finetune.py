"""Fine-tuning the kept blocks of MiniLM on CMU-MOSI text: K = 0, 1, 2, all kept blocks.

Real MOSI transcripts and labels (``../shared/data/mosi/label.csv``), the real all-MiniLM-L6-v2
(``minilm-text`` preset, cut at its layer 3: 4 kept blocks). Every K is trained with the same
recipe (:class:`msa_export.training.finetune.FineTuneOptions`, msa-train's ``--finetune``
defaults unless given here) and the same seeds; K = 0 is the head alone on the frozen features
under that recipe. Test MAE / Corr / Acc-2 / Acc-7 are reported as mean ± std over seeds, with
the training time of each run. Runs are appended to a JSONL log (seed-major, so an interrupted
benchmark has every K for the seeds done) and the report is rewritten from the log::

    python benchmarks/finetune.py --dataset ../shared/data/mosi/label.csv --cache CACHE \\
        --log finetune.jsonl --out benchmarks/results/finetune-vm.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from hostinfo import cpu_model

METRICS = ("mae", "corr", "acc2_non0", "acc7")


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def run(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from msa_export.data.datasets import load_dataset
    from msa_export.models import encoders as enc
    from msa_export.models.tuned import Tail
    from msa_export.presets.registry import get_preset
    from msa_export.training import features as fc
    from msa_export.training import states as st
    from msa_export.training.finetune import FineTuneOptions, TunedData, evaluate_tuned, train_tuned
    from msa_export.training.sweep import head_config
    from msa_export.training.trainer import Split

    torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    card = preset.encoders["text"]
    ds = load_dataset(args.dataset)
    rep = fc.extract_features(ds.samples, preset, args.cache, modalities=["text"], offline=True)
    folder = rep.folders["text"]
    samples = {
        s: [x for x in ds.split(s) if fc.has_features(folder, x, "text")] for s in ("train", "dev", "test")
    }
    model = enc.cut(enc.SPECS[card.kind].build(card, True), card.blocks)
    opts = FineTuneOptions(lr=args.lr, decay=args.decay, epochs=args.epochs, patience=args.patience)
    ks = [int(k) for k in args.ks.split(",")]
    log = Path(args.log)
    done = set()
    if log.exists():
        done = {(r["k"], r["seed"]) for r in map(json.loads, log.read_text().splitlines())}
    data: dict[int, list[TunedData]] = {}
    for seed in range(args.seeds):
        for k in ks:
            if (k, seed) in done:
                continue
            if k not in data:
                data[k] = []
                for name in ("train", "dev", "test"):
                    feats, _ = fc.load_layer(folder, samples[name], card.layer, "text")
                    labels = [s.label for s in samples[name]]
                    split = Split({"text": feats}, np.asarray(labels), [s.id for s in samples[name]])
                    states = {"text": st.load_states(folder, samples[name], card, k)} if k else {}
                    data[k].append(TunedData(split, states))
            cfg = head_config(preset, "gated", {"text": card.config.get("hidden_size", 384)})
            base = {"text": Tail(card, model, k)} if k else {}
            started = time.perf_counter()
            result = train_tuned(cfg, base, data[k][0], data[k][1], seed=seed, opts=opts, progress=print)
            seconds = time.perf_counter() - started
            test = evaluate_tuned(result, data[k][2], cfg)[0]
            row = {
                "k": k,
                "seed": seed,
                "test": test,
                "dev_mae": result.dev_loss,
                "best_epoch": result.best_epoch + 1,
                "epochs_run": len(result.history),
                "seconds": seconds,
                "load": _load(),
            }
            print(json.dumps(row), flush=True)
            with log.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    report(log, Path(args.out), card.blocks, vars(args), opts)


def report(log: Path, out: Path, kept: int, args: dict[str, Any], opts: Any) -> None:
    """Rewrite the markdown and JSON results from the log."""
    import numpy as np

    rows = [json.loads(line) for line in log.read_text().splitlines()]
    by_k: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_k.setdefault(r["k"], []).append(r)
    summary: dict[str, Any] = {}
    lines = [
        "# Fine-tuning the kept blocks of MiniLM on CMU-MOSI text",
        "",
        f"`python benchmarks/finetune.py` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). Real MOSI "
        f"transcripts and labels (1281 train / 229 dev / 685 test), the real all-MiniLM-L6-v2 cut at its "
        f"layer 3 ({kept} kept blocks). Recipe for every K: head lr {opts.head_lr:g}, blocks lr {opts.lr:g}, "
        f"layer-wise decay {opts.decay:g}, AdamW (weight decay {opts.weight_decay:g}), "
        f"batch {opts.batch_size}, "
        f"warm-up {opts.warmup:.0%} then cosine, at most {opts.epochs} epochs, early stop after "
        f"{opts.patience} without a better dev MAE, best dev epoch kept. K = 0 is the head alone on "
        "the frozen block-3 features under this recipe.",
        "",
        f"CPU: {cpu_model()} (Sapphire Rapids VM), 2 cores, torch on {args['threads']} thread(s); a shared "
        "machine, busy with other engineers' jobs (load below): training times are upper bounds, "
        "compare them within this table only.",
        "",
        "| K (tuned blocks) | seeds | test MAE | Corr | Acc-2 (non-0) | Acc-7 | epochs (best / run) "
        "| train time per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in sorted(by_k):
        rs = by_k[k]
        stats = {
            m: (float(np.mean([r["test"][m] for r in rs])), float(np.std([r["test"][m] for r in rs])))
            for m in METRICS
        }
        secs = [r["seconds"] for r in rs]
        summary[str(k)] = {
            "seeds": len(rs),
            **{m: {"mean": a, "std": b} for m, (a, b) in stats.items()},
            "seconds": {"mean": float(np.mean(secs)), "max": float(np.max(secs))},
        }
        label = f"{k} (all)" if k == kept else str(k)
        cells = [
            f"{stats[m][0]:.3f} ± {stats[m][1]:.3f}"
            if m in ("mae", "corr")
            else f"{100 * stats[m][0]:.1f} ± {100 * stats[m][1]:.1f}"
            for m in METRICS
        ]
        epochs = (
            f"{np.mean([r['best_epoch'] for r in rs]):.1f} / {np.mean([r['epochs_run'] for r in rs]):.1f}"
        )
        lines.append(f"| {label} | {len(rs)} | {' | '.join(cells)} | {epochs} | {np.mean(secs):.0f} s |")
    loads = [float(r["load"].split("load average:")[-1].split(",")[0]) for r in rows]
    lines += [
        "",
        f"1-minute load average after each run: {min(loads):.1f} to {max(loads):.1f} on 2 cores.",
        "",
    ]
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(
        json.dumps({"summary": summary, "runs": rows, "args": args}, indent=1) + "\n"
    )
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--preset", default="minilm-text")
    ap.add_argument("--ks", default="0,1,2,4")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--decay", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log", required=True, help="JSONL of per-run results (appended; done runs are skipped)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if args.report_only:
        from msa_export.training.finetune import FineTuneOptions

        opts = FineTuneOptions(lr=args.lr, decay=args.decay, epochs=args.epochs, patience=args.patience)
        report(Path(args.log), Path(args.out), 4, vars(args), opts)
    else:
        run(args)


if __name__ == "__main__":
    main()
