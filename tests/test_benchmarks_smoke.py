"""The end-to-end benchmark script still runs: ``bench_e2e.py --quick`` (tiny preset, one repeat)
into a temporary folder, and its results name every contender with a ratio to the reference.

A smoke test, not a measurement: ``--retry-noisy 0`` (never wait for a quiet machine and rerun a
contender, which took minutes on a busy machine) and a 6 s stream (one full window and a tail)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from msa_runtime.engine.openvino import pick_route
from msa_runtime.engine.sessions import import_ort

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench_e2e.py"
CONTENDERS = ("reference", "torch_cut", "torch_best", "ort_fp32_full", "ort_fp32_cut", "ort_int8_cut")
# where an OpenVINO route offers this CPU (msa-edge[openvino]) the OpenVINO contenders run too
OPENVINO = pick_route(import_ort(), "CPU") is not None
if OPENVINO:
    CONTENDERS += ("ov_bf16_cut", "ov_int8_cut", "ov_int8_concurrent", "tuned_concurrent")


def test_bench_e2e_quick(tmp_path: Path, tiny_pack: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--pack",
            str(tiny_pack),
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
            "--retry-noisy",
            "0",
            "--stream-seconds",
            "6",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    doc = json.loads((out / f"{socket.gethostname()}.json").read_text())
    run = doc["runs"]["tiny"]
    assert set(run["contenders"]) == set(CONTENDERS)
    for name in CONTENDERS:
        c = run["contenders"][name]
        # the Analyzer contender preprocesses inside its encoder threads (its stages overlap)
        stages = ("preprocess",) * (not name.endswith("_concurrent")) + (
            "text",
            "audio",
            "vision",
            "head",
            "total",
        )
        for stage in stages:
            assert c["stages"][stage]["median"] > 0, (name, stage)
            assert c["ratio_to_reference"][stage] > 0, (name, stage)
        assert set(c["fidelity"]["cosine_min"]) == {"text", "audio", "vision"}
        assert c["fidelity"]["score_diff_own_pipeline"] < 0.05, name
        assert c["rss_mb"]["peak_including_load"] > 0
        assert c["torch_imported"] == (name in ("reference", "torch_cut", "torch_best")), name
    assert run["contenders"]["reference"]["ratio_to_reference"]["total"] == pytest.approx(1.0)
    for name in ("ort_fp32_full", "ort_fp32_cut"):
        assert min(run["contenders"][name]["fidelity"]["cosine_min"].values()) > 0.9999, name
    best = run["contenders"]["torch_best"]
    for mod, chosen in best["torch_chosen"].items():  # the eager settings of --quick, each timed
        tried = best["torch_settings"][mod]
        assert set(tried) == {"fp32", "bf16-autocast", "int8-dynamic"}, tried
        assert tried[chosen]["passes"] and tried[chosen]["mean_cosine_to_fp32"] >= 0.999, (mod, tried)
        timed = {s: r["median_ms"] for s, r in tried.items() if r.get("passes")}
        assert tried[chosen]["median_ms"] == min(timed.values()), (mod, tried)
    assert min(best["fidelity"]["cosine_min"].values()) > 0.99
    assert run["limit"]["all_encoders"]["int8_fraction_of_int8_peak"] > 0
    assert run["contenders"]["ort_int8_cut"]["profile"]["vision"]["ops"]
    assert run["stream"]["windows"] >= 1 and run["stream"]["rtf"] > 0
    if OPENVINO:
        ov = run["stream_openvino"]
        assert ov["windows"] == run["stream"]["windows"] and ov["providers"] == "openvino"
        assert run["stream_openvino_concurrent"]["concurrent"] and not ov["concurrent"]
        assert run["stream_openvino_concurrent"]["windows"] == ov["windows"]
        assert any(f.endswith(".ov-int8.onnx") for f in run["contenders"]["ov_int8_cut"]["files"].values())
        both = run["contenders"]["ov_int8_concurrent"], run["contenders"]["ov_int8_cut"]
        assert both[0]["files"] == both[1]["files"] and both[0]["overlapping_stages"]
        assert "tuning record" in run["contenders"]["tuned_concurrent"]["choice"]
    assert set(run["sizes"]["per_precision"]) >= {"int8", "fp32"}
    assert doc["install"]["runtime"]["with_dependencies_bytes"] > 0

    report = (out / f"{socket.gethostname()}.md").read_text()
    for label in (
        "PyTorch full depth",
        "PyTorch cut",
        "ORT fp32 full depth",
        "ORT fp32 cut",
        "ORT int8 cut",
        "Targets (issue 9",
        "Distance to the limit",
        "Streaming",
        "Against the best PyTorch",
        "best pack vs best PyTorch",
        *(("OpenVINO, ov-int8 file (pack)", "Per encoder: CPU EP int8 against OpenVINO") if OPENVINO else ()),
    ):
        assert label in report, label


def test_bench_engines_quick(tmp_path: Path, tiny_pack: Path) -> None:
    """bench_engines.py on the tiny pack: a row per usable route and file, the CPU named."""
    out = tmp_path / "engines.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_engines.py"),
            str(tiny_pack),
            "--repeat",
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = out.read_text()
    assert "CPU: **" in report and "| text | cpu | text.int8.onnx |" in report
    assert ("| vision | openvino-" in report) == OPENVINO
    assert ("empty cache" in report) == (pick_route(import_ort(), "CPU") == "OpenVINORuntime")
