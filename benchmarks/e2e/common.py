"""Names shared by the end-to-end benchmark's modules: contenders, stages, targets, threads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# the benchmarks folder: bench_e2e.py (the workers' entry point), results/, .cache/
BENCH_DIR = Path(__file__).resolve().parent.parent
HERE = BENCH_DIR
CONTENDERS = (
    "reference",
    "torch_cut",
    "torch_best",
    "ort_fp32_full",
    "ort_fp32_cut",
    "ort_int8_cut",
    "ov_bf16_cut",
    "ov_int8_cut",
    "ov_int8_concurrent",
    "tuned_concurrent",
)
# run only when the OpenVINO execution provider plugin is installed (msa-edge[openvino])
OPENVINO_CONTENDERS = ("ov_bf16_cut", "ov_int8_cut", "ov_int8_concurrent", "tuned_concurrent")
# the contenders that are the product (a pack run by the runtime), for "best provider here"
PACK_CONTENDERS = ("ort_int8_cut", "ov_int8_cut", "ov_bf16_cut", "ov_int8_concurrent", "tuned_concurrent")
# the contenders that run PyTorch (the others never import it)
TORCH_CONTENDERS = ("reference", "torch_cut", "torch_best")
# contenders timed through Analyzer.predict_arrays: their stages overlap (text, audio and vision
# with its face crop on three threads; preprocessing inside each), only the total is additive
ANALYZER_CONTENDERS = ("ov_int8_concurrent", "tuned_concurrent")
LABELS = {
    "reference": "PyTorch full depth, all hidden states (reference)",
    "torch_cut": "PyTorch cut",
    "torch_best": "PyTorch cut, fastest CPU settings per encoder",
    "ort_fp32_full": "ORT fp32 full depth",
    "ort_fp32_cut": "ORT fp32 cut (pack)",
    "ort_int8_cut": "ORT int8 cut (pack)",
    "ov_bf16_cut": "OpenVINO, fp32 file (bf16) (pack)",
    "ov_int8_cut": "OpenVINO, ov-int8 file (pack)",
    "ov_int8_concurrent": "Analyzer(concurrent=True) on OpenVINO, the pack's OpenVINO files",
    "tuned_concurrent": "Analyzer(concurrent=True), auto + tuning record (fastest file per encoder)",
}
STAGES = ("preprocess", "face", "text", "audio", "vision", "head")
#: The streams a run measures: key, providers, precision, concurrent encoders, title.
STREAMS: tuple[tuple[str, str, str | None, bool, str], ...] = (
    ("stream", "cpu", "int8", False, "int8 pack on the CPU EP"),
    ("stream_openvino", "openvino", None, False, "pack on OpenVINO"),
    ("stream_openvino_concurrent", "openvino", None, True, "pack on OpenVINO, Analyzer(concurrent=True)"),
)
THREADS = 2
TARGETS: dict[str, Any] = {
    "speedup": {"ando2022-mosi": 10.0, "edge": 6.0},  # issue 9
    "score_diff": 0.02,  # issue 9 (issue 5 asked 0.05)
    "rtf": {"edge": 0.1, "ando2022-mosi": 0.3},  # issue 9: window 6 s, hop 2 s, 60 s clip
    "peak_fraction": 0.75,  # issue 5
}


def present(run: dict[str, Any]) -> list[str]:
    """The contenders a run has, in the usual order (OpenVINO ones only where it was installed)."""
    return [c for c in CONTENDERS if c in run.get("contenders", {})]


def best_pack(run: dict[str, Any]) -> str:
    """The fastest pack contender of a run end to end (the "best provider here")."""
    have = [c for c in PACK_CONTENDERS if c in run["contenders"]]
    return min(have, key=lambda c: run["contenders"][c]["stages"]["total"]["median"])


def log(msg: str) -> None:
    print(msg, flush=True)
