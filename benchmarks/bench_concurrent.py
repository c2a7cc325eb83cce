"""Encoders one after another vs concurrently (``Analyzer(concurrent=True)``), same pack, same clip.

    python benchmarks/bench_concurrent.py PACK [--providers openvino] [--repeat 5]
        [--out benchmarks/results/concurrent-vm.md]

The clip is bench_e2e's 5 s clip (15 frames 640x480 with a face, 80,000 samples, one sentence).
Both Analyzers are loaded first, then scored alternately (one warm-up each), so machine drift
hits both alike; the table gives the median wall time of ``predict_arrays`` and each stage's
median. With ``concurrent=True`` text, audio and vision (with the face crop) run on three threads
at once, each session keeping its own thread count: on two cores this fills the gaps one
encoder's thread pool leaves (the face cascade's Python, synchronisation points).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e.clips import clip_inputs  # noqa: E402
from msa_runtime import Analyzer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pack", type=Path)
    ap.add_argument("--providers", default="openvino")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, help="write the table to this markdown file")
    args = ap.parse_args(argv)
    clip = clip_inputs()
    feeds: dict[str, Any] = {
        "frames": clip["frames"],
        "audio": clip["audio"],
        "sample_rate": clip["sample_rate"],
        "text": clip["text"],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an untrained head's warning
        analyzers = {
            mode: Analyzer(
                args.pack, providers=args.providers, threads=args.threads, tuning=False, concurrent=mode
            )
            for mode in (False, True)
        }
    walls: dict[bool, list[float]] = {False: [], True: []}
    stages: dict[bool, dict[str, list[float]]] = {False: {}, True: {}}
    for an in analyzers.values():
        an.predict_arrays(**feeds)  # warm-up
    for _ in range(args.repeat):
        for mode, an in analyzers.items():
            t0 = time.perf_counter()
            pred = an.predict_arrays(**feeds)
            walls[mode].append((time.perf_counter() - t0) * 1e3)
            for k, v in pred.timings_ms.items():
                stages[mode].setdefault(k, []).append(v)
    seq, conc = statistics.median(walls[False]), statistics.median(walls[True])
    names = sorted(set(stages[False]) | set(stages[True]))
    lines = [
        f"# Encoders in sequence vs concurrently ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"Command: `python benchmarks/bench_concurrent.py {args.pack} --providers {args.providers} "
        f"--repeat {args.repeat}`; {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"{args.threads} threads per session; files: "
        + ", ".join(f"{c.modality} {c.file}" for c in analyzers[False].plan.values()),
        "",
        "| mode | predict_arrays median ms | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for mode, label in ((False, "one after another"), (True, "concurrent=True")):
        cells = [f"{statistics.median(stages[mode][k]):,.0f}" if k in stages[mode] else "-" for k in names]
        lines.append(f"| {label} | {statistics.median(walls[mode]):,.0f} | " + " | ".join(cells) + " |")
    lines += ["", f"Concurrent / sequential: {conc / seq:.2f} (stage times overlap when concurrent)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        from charts import chart_for  # the .png beside the table

        chart_for(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
