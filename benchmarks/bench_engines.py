"""Each encoder of a pack on every engine route this machine can use, side by side.

    python benchmarks/bench_engines.py PACK [--threads 2] [--repeat 6]
        [--out benchmarks/results/engines-vm.md]

Contenders per encoder (those the pack has files for and this machine offers):
ONNX Runtime's CPU EP on the int8 file (the pack's CPU default), OpenVINO's own runtime and ONNX
Runtime's OpenVINO plugin on the ov-int8 file and on the fp32 file (bf16 where the CPU has it).
All sessions are built first, then timed in turns (one call each per round, ``--repeat``
rounds after one warm-up), so drift hits all alike. Inputs: tuning's typical clip (5 s of
audio, 15 frames, one sentence; :func:`msa_runtime.loading.tuning.tuning_inputs`). Cosine: to the CPU
EP on the fp32 file. Then the first call of a new process on OpenVINO's runtime, with an empty
and with a warm compile cache (``MSA_EDGE_OPENVINO_CACHE``), per encoder: load + first call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hostinfo import cpu_model
from msa_runtime.engine.interface import Session
from msa_runtime.engine.openvino import describe_routes
from msa_runtime.engine.sessions import import_ort, make_session, resolve_providers
from msa_runtime.loading.tuning import tuning_inputs
from msa_runtime.pack import load_manifest

ROUTES = {"cpu": "cpu", "openvino-native": "openvino-native", "openvino-ep": "openvino-ep"}
PRECISIONS = {
    "cpu": ("int8", "fp32"),
    "openvino-native": ("ov-int8", "fp32"),
    "openvino-ep": ("ov-int8", "fp32"),
}


def usable_routes() -> list[str]:
    out = []
    for route in ROUTES:
        try:
            resolve_providers(route)
            out.append(route)
        except Exception:  # noqa: BLE001 - a route that is absent or offers no device is left out
            continue
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def time_encoders(pack: Path, threads: int, repeat: int) -> list[dict[str, Any]]:
    manifest = load_manifest(pack)
    feeds = tuning_inputs(manifest, pack)
    rows: list[dict[str, Any]] = []
    for mod, entry in manifest.encoders.items():
        sessions: dict[tuple[str, str], Session] = {}
        for route in usable_routes():
            for prec in PRECISIONS[route]:
                if prec in entry.files:
                    sessions[(route, prec)] = make_session(
                        pack / entry.files[prec], route, threads=threads, cache="off"
                    )
        ref = make_session(pack / entry.files["fp32"], "cpu", threads=threads).run(["hidden"], feeds[mod])[0]
        outs = {k: s.run(["hidden"], feeds[mod])[0] for k, s in sessions.items()}  # warm-up
        times: dict[tuple[str, str], list[float]] = {k: [] for k in sessions}
        for _ in range(repeat):
            for k, s in sessions.items():
                t0 = time.perf_counter()
                s.run(["hidden"], feeds[mod])
                times[k].append((time.perf_counter() - t0) * 1e3)
        base = statistics.median(times[("cpu", "int8")]) if ("cpu", "int8") in times else None
        for (route, prec), t in times.items():
            med = statistics.median(t)
            rows.append(
                {
                    "encoder": mod,
                    "route": route,
                    "file": entry.files[prec],
                    "median_ms": round(med, 1),
                    "min_ms": round(min(t), 1),
                    "vs_cpu_int8": round(base / med, 2) if base else None,
                    "cosine": round(cosine(outs[(route, prec)], ref), 5),
                }
            )
            print(f"{mod:6s} {route:16s} {entry.files[prec]:22s} {med:9.1f} ms", file=sys.stderr)
    return rows


FIRST_CALL = """
import json, sys, time
t0 = time.perf_counter()
from msa_runtime.pack import load_manifest
from msa_runtime.engine.sessions import make_session
from msa_runtime.loading.tuning import tuning_inputs
pack = __import__("pathlib").Path(sys.argv[1])
m = load_manifest(pack)
feeds = tuning_inputs(m, pack)
out = {}
for mod, e in m.encoders.items():
    f = e.files.get("ov-int8") or e.files["fp32"]
    t = time.perf_counter()
    make_session(pack / f, "openvino-native", threads=int(sys.argv[2])).run(["hidden"], feeds[mod])
    out[mod] = round((time.perf_counter() - t) * 1e3, 1)
print(json.dumps(out))
"""


def first_calls(pack: Path, threads: int) -> dict[str, dict[str, float]]:
    """Load + first call per encoder in a new process: cache empty, then warm."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "MSA_EDGE_OPENVINO_CACHE": cache}
        got = {}
        for label in ("empty cache", "warm cache"):
            proc = subprocess.run(
                [sys.executable, "-c", FIRST_CALL, str(pack), str(threads)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=1800,
            )
            got[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return got


def render(
    pack: Path, rows: list[dict[str, Any]], first: dict[str, dict[str, float]] | None, args: Any
) -> str:
    lines = [
        f"# Engines per encoder: {pack.name}",
        "",
        f"CPU: **{cpu_model()}**, {os.cpu_count()} cores, {args.threads} threads per session; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.repeat} rounds, engines in turns.",
        f"OpenVINO here: {describe_routes(import_ort())}.",
        "",
        "| encoder | engine route | file | median ms | min ms | CPU EP int8 / this | cosine to fp32 |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['vs_cpu_int8']:.2f}x" if r["vs_cpu_int8"] else "-"
        lines.append(
            f"| {r['encoder']} | {r['route']} | {r['file']} | {r['median_ms']:,.1f} | {r['min_ms']:,.1f} "
            f"| {ratio} | {r['cosine']:.5f} |"
        )
    if first:
        lines += [
            "",
            "First call of a new process on OpenVINO's runtime (load + compile + one run, ms):",
            "",
            "| encoder | empty cache | warm cache |",
            "|---|---:|---:|",
        ]
        for mod in first["empty cache"]:
            lines.append(f"| {mod} | {first['empty cache'][mod]:,.0f} | {first['warm cache'][mod]:,.0f} |")
    lines += [
        "",
        "Not measured here: GPUs and NPUs, ARM, CUDA; the plugin route on non-Intel CPUs (it offers none).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pack", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--no-first-call", action="store_true", help="skip the compile-cache measurement")
    ap.add_argument("--out", type=Path, help="write the table to this markdown file")
    args = ap.parse_args(argv)
    rows = time_encoders(args.pack, args.threads, args.repeat)
    first = None
    if not args.no_first_call and "openvino-native" in usable_routes():
        first = first_calls(args.pack, args.threads)
    text = render(args.pack, rows, first, args)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        from charts import chart_for  # the .png beside the table

        chart_for(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
