"""ONNX Runtime profiles of the pack's encoders: time and throughput per op type and per GEMM shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from e2e.common import THREADS


def profile_flops(op: str, args: dict[str, Any]) -> float:
    """FLOPs of one profiled node from its recorded shapes (matmul-like ops and Conv)."""

    def shapes(key: str) -> list[list[int]]:
        return [list(next(iter(s.values()))) for s in args.get(key, [])]

    ins, outs = shapes("input_type_shape"), shapes("output_type_shape")
    if not ins or not outs:
        return 0.0
    out_elems = float(np.prod(outs[0]))
    if (
        op
        in (
            "MatMul",
            "MatMulInteger",
            "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat",
            "FusedMatMul",
            "Gemm",
            "QGemm",
            "FusedGemm",
        )
        and ins[0]
    ):
        return 2.0 * out_elems * ins[0][-1]
    if op in ("Conv", "ConvInteger", "FusedConv", "NchwcConv", "QLinearConv") and len(ins) > 1:
        return 2.0 * out_elems * float(np.prod(ins[1][1:]))
    return 0.0


def profile_encoders(
    files: dict[str, Path], inputs: dict[str, tuple[np.ndarray, ...]], folder: Path, runs: int = 1
) -> dict[str, Any]:
    """One warm run, then ``runs`` profiled runs of each encoder; time per op type."""
    import onnxruntime as ort

    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for mod, path in files.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.enable_profiling = True
        opts.profile_file_prefix = str(folder / f"{mod}_{path.stem.replace('.', '_')}")
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feeds = dict(zip([i.name for i in sess.get_inputs()], inputs[mod]))
        sess.run(["hidden"], feeds)
        for _ in range(runs):
            sess.run(["hidden"], feeds)
        prof = Path(sess.end_profiling())
        events = json.loads(prof.read_text())
        model_runs = [e for e in events if e.get("name") == "model_run"]
        wall_us = sum(e["dur"] for e in model_runs[-runs:])
        first_run_ts = model_runs[-runs]["ts"] if model_runs else 0
        by_op: dict[str, dict[str, float]] = {}
        by_shape: dict[str, dict[str, float]] = {}
        for e in events:
            if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
                continue
            if e["ts"] < first_run_ts:
                continue
            op = e["args"].get("op_name", "?")
            row = by_op.setdefault(op, {"us": 0.0, "calls": 0, "flops": 0.0})
            row["us"] += e["dur"]
            row["calls"] += 1
            flops = profile_flops(op, e["args"])
            row["flops"] += flops
            if flops:
                ins = [list(next(iter(x.values()))) for x in e["args"].get("input_type_shape", [])]
                outs = [list(next(iter(x.values()))) for x in e["args"].get("output_type_shape", [])]
                key = f"{op} K={ins[0][-1]} -> {'x'.join(map(str, outs[0]))}"
                shape = by_shape.setdefault(key, {"us": 0.0, "calls": 0, "flops": 0.0})
                shape["us"] += e["dur"]
                shape["calls"] += 1
                shape["flops"] += flops
        kernel_us = sum(r["us"] for r in by_op.values())
        table = []
        for op, r in sorted(by_op.items(), key=lambda kv: -kv[1]["us"]):
            table.append(
                {
                    "op": op,
                    "ms": r["us"] / 1e3 / runs,
                    "share": r["us"] / max(kernel_us, 1),
                    "calls": int(r["calls"] / runs),
                    "gflops_per_s": r["flops"] / (r["us"] * 1e-6) / 1e9 if r["flops"] else None,
                }
            )
        out[mod] = {
            "file": path.name,
            "run_ms": wall_us / 1e3 / runs,
            "kernel_ms": kernel_us / 1e3 / runs,
            "ops": table,
            "gemm_shapes": [
                {
                    "gemm": k,
                    "ms": v["us"] / 1e3 / runs,
                    "calls": int(v["calls"] / runs),
                    "share": v["us"] / max(kernel_us, 1),
                    "gflops_per_s": v["flops"] / (v["us"] * 1e-6) / 1e9,
                }
                for k, v in sorted(by_shape.items(), key=lambda kv: -kv[1]["us"])
            ],
        }
        prof.unlink()
    return out


INT8_GEMM = {
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "MatMulInteger",
    "QAttention",
    "QGemm",
    "DynamicQuantizeLinear",
}
FP32_GEMM = {
    "MatMul",
    "FusedMatMul",
    "Gemm",
    "FusedGemm",
    "Conv",
    "FusedConv",
    "NchwcConv",
    "Attention",
    "MultiHeadAttention",
}


def op_classes(profile: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Kernel time of one encoder's profile split into int8 GEMMs (with the on-the-fly
    activation quantization), fp32 GEMMs/convolutions, and everything else."""
    out: dict[str, dict[str, Any]] = {
        k: {"ms": 0.0, "gflop": 0.0} for k in ("int8 GEMM", "fp32 GEMM/conv", "other")
    }
    for o in profile["ops"]:
        k = "int8 GEMM" if o["op"] in INT8_GEMM else "fp32 GEMM/conv" if o["op"] in FP32_GEMM else "other"
        out[k]["ms"] += o["ms"]
        if o["gflops_per_s"]:
            out[k]["gflop"] += o["gflops_per_s"] * o["ms"] * 1e-3
    total = sum(v["ms"] for v in out.values()) or 1.0
    for v in out.values():
        v["share"] = v["ms"] / total
        v["rate"] = v["gflop"] / (v["ms"] * 1e-3) if v["ms"] and v["gflop"] else None
    return out


def classes_text(profile: dict[str, Any]) -> str:
    parts = []
    for k, v in op_classes(profile).items():
        rate = f" at {v['rate']:,.0f} G(FL)OP/s" if v["rate"] else ""
        parts.append(f"{k} {v['share']:.0%} ({v['ms']:,.0f} ms{rate})")
    top = ", ".join(f"{o['op']} {o['share']:.0%}" for o in profile["ops"][:5])
    return "; ".join(parts) + f" (top ops: {top})"
