"""Names shared by the end-to-end benchmark's modules: contenders, stages, targets, threads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# the benchmarks folder: bench_e2e.py (the workers' entry point), results/, .cache/
BENCH_DIR = Path(__file__).resolve().parent.parent
HERE = BENCH_DIR
CONTENDERS = ("reference", "torch_cut", "ort_fp32_full", "ort_fp32_cut", "ort_int8_cut")
LABELS = {
    "reference": "PyTorch full depth, all hidden states (reference)",
    "torch_cut": "PyTorch cut",
    "ort_fp32_full": "ORT fp32 full depth",
    "ort_fp32_cut": "ORT fp32 cut (pack)",
    "ort_int8_cut": "ORT int8 cut (pack)",
}
STAGES = ("preprocess", "face", "text", "audio", "vision", "head")
THREADS = 2
TARGETS: dict[str, Any] = {
    "speedup": {"ando2022-mosi": 10.0, "edge": 6.0},
    "score_diff": 0.05,
    "rtf": 0.1,
    "peak_fraction": 0.75,
}


def log(msg: str) -> None:
    print(msg, flush=True)
