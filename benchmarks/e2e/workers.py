"""The subprocess workers (one per contender, the peak, the stream) and how they are spawned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from e2e.common import ANALYZER_CONTENDERS, BENCH_DIR, THREADS
from e2e.machine import worker_peak
from e2e.measure import Interference, reset_peak_rss, stats, status_kb, trim_heap
from e2e.pipelines import (
    AnalyzerPipeline,
    OrtPipeline,
    Preprocessor,
    TorchPipeline,
    get_preset_random,
    run_pipeline,
)
from e2e.profile import profile_encoders


def load_clip(task: dict[str, Any]) -> dict[str, Any]:
    data = np.load(task["clip"])
    return {
        "frames": data["frames"],
        "audio": data["audio"],
        "sample_rate": int(data["rate"]),
        "text": str(data["text"]),
    }


Once = Callable[[], tuple[dict[str, float], dict[str, np.ndarray] | None, float]]


def contender_files(name: str, task: dict[str, Any], pack: Path, manifest: Any) -> dict[str, Path]:
    """The encoder files an ONNX Runtime contender runs."""
    if name == "ort_fp32_full":
        return {m: Path(task["full"]) / f"{m}.fp32.onnx" for m in manifest.encoders}
    if name == "ov_int8_cut":  # the ov-int8 file, else what the manifest gives OpenVINO
        return {
            m: pack / e.files[(e.provider_precisions("openvino") or ("fp32",))[0]]
            for m, e in manifest.encoders.items()
        }
    if name == "ov_bf16_cut":
        return {m: pack / e.files["fp32"] for m, e in manifest.encoders.items()}
    precision = name.split("_")[1]
    return {m: pack / e.files[precision] for m, e in manifest.encoders.items()}


def contender_pipeline(
    task: dict[str, Any], prep: Preprocessor, clip: dict[str, Any]
) -> tuple[Any, dict[str, Path] | None, Once]:
    """The contender loaded: its pipeline, its encoder files (None for torch), and one timed
    run of the clip (stage times, features unless its stages overlap, score)."""
    name = task["contender"]
    pack = Path(task["pack"])
    pipe: Any
    if name in ANALYZER_CONTENDERS:  # the runtime itself: its stages overlap
        tuned = name == "tuned_concurrent"
        pipe = AnalyzerPipeline(
            pack, "auto" if tuned else "openvino", Path(task["tuning"]) if tuned else False
        )

        def analyzer_once() -> tuple[dict[str, float], dict[str, np.ndarray] | None, float]:
            times, score = pipe.run(clip)
            return times, None, score

        return pipe, pipe.files, analyzer_once
    files: dict[str, Path] | None = None
    if name == "torch_best":  # each encoder at the PyTorch setting that runs it fastest here
        from e2e.torch_best import TorchBestPipeline

        pipe = TorchBestPipeline(
            get_preset_random(task["preset"]),
            prep(clip)[0],
            tuple(task["torch_settings"]),
            task["repeat"],
            log=lambda m: print(m, file=sys.stderr, flush=True),
        )
    elif name in ("reference", "torch_cut"):
        pipe = TorchPipeline(get_preset_random(task["preset"]), cut=name == "torch_cut")
    else:
        files = contender_files(name, task, pack, prep.manifest)
        providers = "openvino" if name.startswith("ov_") else "cpu"
        pipe = OrtPipeline(files, pack / prep.manifest.head.file, providers=providers)

    def once() -> tuple[dict[str, float], dict[str, np.ndarray] | None, float]:
        return run_pipeline(pipe, prep, clip)

    return pipe, files, once


def worker_contender(task: dict[str, Any]) -> dict[str, Any]:
    name = task["contender"]
    pack = Path(task["pack"])
    prep = Preprocessor(pack)
    clip = load_clip(task)
    t0 = time.perf_counter()
    pipe, files, once = contender_pipeline(task, prep, clip)
    load_s = time.perf_counter() - t0
    peak_with_load = status_kb("VmHWM")
    trim_heap()
    rss_loaded = status_kb("VmRSS")
    reset_ok = reset_peak_rss()
    for _ in range(task["warmup"]):
        once()
    runs: list[dict[str, float]] = []
    interference = Interference()
    for _ in range(task["repeat"]):
        times, feats, score = once()
        runs.append(times)
    quiet = interference.result()
    if feats is None:  # the Analyzer's encoders once more, untimed, and the face count
        feats = pipe.features(clip)
        prep(clip)
    np.savez(task["features"], **feats)  # type: ignore[arg-type]
    result = {
        "contender": name,
        "load_s": round(load_s, 2),
        "score": score,
        "stages": {k: stats([r[k] for r in runs]) for k in runs[0]},
        "runs_ms": runs,
        "rss_mb": {
            "after_load": rss_loaded / 1024,
            "peak_including_load": max(peak_with_load, status_kb("VmHWM")) / 1024,
            "peak_inference": status_kb("VmHWM") / 1024 if reset_ok else None,
            "peak_inference_method": "VmHWM reset via /proc/self/clear_refs after load"
            if reset_ok
            else "unavailable (clear_refs not writable)",
        },
        "torch_imported": "torch" in sys.modules,
        "interference": quiet,
        "faces_found": prep.faces_found,
        "files": None if files is None else {m: p.name for m, p in files.items()},
        "overlapping_stages": name in ANALYZER_CONTENDERS,
        "choice": getattr(pipe, "choice", None),
    }
    if name == "torch_best":
        result["torch_settings"] = pipe.report
        result["torch_chosen"] = pipe.chosen
        result["bf16_native"] = pipe.bf16_native
    if task.get("profile") and isinstance(pipe, OrtPipeline) and files is not None:
        result["profile"] = profile_encoders(
            files,
            prep(clip)[0],
            Path(task["profile_dir"]),
            runs=task.get("profile_runs", 2),
        )
    return result


def worker_stream(task: dict[str, Any]) -> dict[str, Any]:
    import warnings

    from msa_runtime import Analyzer

    warnings.simplefilter("ignore", UserWarning)  # the untrained-head warning
    t0 = time.perf_counter()
    an = Analyzer(
        task["pack"],
        providers=task.get("providers", "cpu"),
        threads=THREADS,
        precision=task["precision"],
        tuning=False,
        concurrent=task.get("concurrent", False),
    )
    load_s = time.perf_counter() - t0
    trim_heap()
    reset_peak_rss()
    interference = Interference()
    t0 = time.perf_counter()
    preds = list(
        an.stream(task["media"], transcript=task["transcript"], window=task["window"], hop=task["hop"])
    )
    wall = time.perf_counter() - t0
    lat = [p.latency_ms for p in preds if p.latency_ms is not None]
    per_mod = {
        m: stats([p.timings_ms[m] for p in preds if m in p.timings_ms])
        for m in ("text", "audio", "vision", "face", "head")
        if any(m in p.timings_ms for p in preds)
    }
    return {
        "windows": len(preds),
        "wall_s": wall,
        "duration_s": task["duration"],
        "rtf": wall / task["duration"],
        "load_s": load_s,
        "window_latency_ms": stats(lat),
        "first_window_latency_ms": lat[0] if lat else None,
        "concurrent": task.get("concurrent", False),
        "stage_ms": per_mod,
        "window": task["window"],
        "hop": task["hop"],
        "precision": an.precision,
        "providers": task.get("providers", "cpu"),
        "files": {c.modality: c.file for c in an.plan.values()},
        "peak_rss_mb": status_kb("VmHWM") / 1024,
        "torch_imported": "torch" in sys.modules,
        "interference": interference.result(),
    }


WORKERS = {"contender": worker_contender, "peak": worker_peak, "stream": worker_stream}


def spawn(task: dict[str, Any], work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    task_file = work / f"task_{task['kind']}_{task.get('contender', task.get('providers', ''))}.json"
    result_file = task_file.with_suffix(".result.json")
    task = {**task, "result": str(result_file)}
    task_file.write_text(json.dumps(task))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(THREADS),
        "MKL_NUM_THREADS": str(THREADS),
        "TOKENIZERS_PARALLELISM": "false",
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / "bench_e2e.py"), "--worker", str(task_file)],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"worker {task['kind']} {task.get('contender', '')} failed "
            f"(exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    result = json.loads(result_file.read_text())
    result["worker_s"] = round(time.perf_counter() - t0, 1)
    return result
