"""Probing the machine: its CPU, versions, single-matmul peak in ONNX Runtime, pack and install sizes."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from e2e.common import HERE, THREADS
from e2e.measure import Interference


def matmul_model(kind: str, m: int, k: int, n: int) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    if kind == "fp32":
        a = helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])
        y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])
        inits.append(numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "B"))
        nodes.append(helper.make_node("MatMul", ["A", "B"], ["Y"]))
        opsets = [helper.make_opsetid("", 17)]
    elif kind == "int8":
        a = helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])
        y = helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])
        inits.append(numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "B"))
        nodes.append(helper.make_node("MatMulInteger", ["A", "B"], ["Y"]))
        opsets = [helper.make_opsetid("", 17)]
    else:  # what the int8 pack runs: fp32 activations quantized on the fly, int8 weights
        a = helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])
        y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])
        inits += [
            numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "B"),
            numpy_helper.from_array(np.full(n, 0.01, np.float32), "scale"),
            numpy_helper.from_array(np.zeros(n, np.int8), "zp"),
        ]
        nodes.append(
            helper.make_node(
                "DynamicQuantizeMatMul", ["A", "B", "scale", "zp"], ["Y"], domain="com.microsoft"
            )
        )
        opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    graph = helper.make_graph(nodes, kind, [a], [y], inits)
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def worker_peak(task: dict[str, Any]) -> dict[str, Any]:
    """Throughput of single large matmuls in ORT: best and median of timed runs."""
    import onnxruntime as ort

    out: dict[str, Any] = {}
    interference = Interference()
    for label, (m, k, n) in task["shapes"].items():
        for kind in ("fp32", "int8", "dq_int8"):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = THREADS
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.log_severity_level = 3
            sess = ort.InferenceSession(matmul_model(kind, m, k, n), opts, providers=["CPUExecutionProvider"])
            rng = np.random.default_rng(1)
            a = (
                rng.integers(0, 256, (m, k), dtype=np.uint8)
                if kind == "int8"
                else rng.standard_normal((m, k), dtype=np.float32)
            )
            sess.run(None, {"A": a})
            times: list[float] = []
            deadline = time.perf_counter() + task["seconds"]
            while time.perf_counter() < deadline or len(times) < 3:
                t0 = time.perf_counter()
                sess.run(None, {"A": a})
                times.append(time.perf_counter() - t0)
            flops = 2.0 * m * k * n
            out[f"{label}/{kind}"] = {
                "shape": [m, k, n],
                "kind": kind,
                "runs": len(times),
                "best_gflops": flops / min(times) / 1e9,
                "median_gflops": flops / float(np.median(times)) / 1e9,
            }
    return {"peaks": out, "interference": interference.result()}


def merge_peaks(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Per matmul kind, the better of two peak measurements (both kept in ``samples``)."""
    peaks = {}
    for k, a in first["peaks"].items():
        b = second["peaks"].get(k, a)
        best = a if a["best_gflops"] >= b["best_gflops"] else b
        peaks[k] = {**best, "samples_best_gflops": [a["best_gflops"], b["best_gflops"]]}
    return {"peaks": peaks, "interference": [first["interference"], second["interference"]]}


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def pack_sizes(pack: Path, full: Path) -> dict[str, Any]:
    from msa_runtime.pack import load_manifest

    manifest = load_manifest(pack, verify=False)
    files = {n: int(m["bytes"]) for n, m in manifest.files.items()}
    kinds = ("int8", "fp32", "fp16", "ov-int8")
    shared = sum(b for n, b in files.items() if not any(f".{p}." in n for p in kinds))
    per: dict[str, Any] = {}
    for precision in ("int8", "fp32", "fp16", "ov-int8"):
        own = {n: b for n, b in files.items() if f".{precision}." in n}
        if own:
            per[precision] = {
                "encoders": own,
                "total_with_head_and_tokenizer": sum(own.values()) + shared,
            }
    full_files = {p.name: p.stat().st_size for p in sorted(full.glob("*.onnx"))}
    return {
        "per_precision": per,
        "shared_bytes": shared,
        "full_depth_fp32": full_files,
        "full_depth_fp32_total": sum(full_files.values()),
    }


def _dist_closure(roots: Iterable[str]) -> list[str]:
    """Installed distributions ``roots`` need (their requirements, recursively; extras and
    environment markers that do not apply are skipped)."""
    from packaging.requirements import Requirement

    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = dist.metadata["Name"]
        for req in dist.requires or []:
            r = Requirement(req)
            if r.marker is not None and not r.marker.evaluate({"extra": ""}):
                continue
            todo.append(r.name)
    return sorted(seen)


def _dist_bytes(name: str) -> int:
    dist = md.distribution(name)
    total = 0
    for f in dist.files or []:
        p = Path(str(dist.locate_file(f)))
        if p.is_file():
            total += p.stat().st_size
    return total


def install_sizes() -> dict[str, Any]:
    """Bytes on disk of the installed distributions (their RECORD files), runtime vs torch."""
    runtime_roots = ["onnxruntime", "numpy", "tokenizers", "av", "click"]
    torch_roots = ["torch", "transformers", "numpy", "tokenizers", "av"]
    out: dict[str, Any] = {}
    for label, roots in (("runtime", runtime_roots), ("torch_stack", torch_roots)):
        closure = _dist_closure(roots)
        sizes = {n: _dist_bytes(n) for n in closure}
        direct = {n: sizes.get(n.lower(), _dist_bytes(n)) for n in roots}
        out[label] = {
            "roots": roots,
            "direct_bytes": sum(direct.values()),
            "direct": direct,
            "with_dependencies_bytes": sum(sizes.values()),
            "dependencies": sizes,
        }
    return out


def machine() -> dict[str, Any]:
    cpu: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if ":" in line:
            k, v = (s.strip() for s in line.split(":", 1))
            cpu.setdefault(k, v)
    flags = set(cpu.get("flags", "").split())
    mem_kb = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    versions = {}
    for dist in (
        "onnxruntime",
        "torch",
        "transformers",
        "numpy",
        "onnx",
        "tokenizers",
        "av",
        "msa-edge",
    ):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True, capture_output=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu.get("model name", "?"),
        "cpu_mhz": cpu.get("cpu MHz"),
        "cores": os.cpu_count(),
        "isa": sorted(
            flags
            & {
                "avx2",
                "avx512f",
                "avx512_vnni",
                "avx_vnni",
                "amx_int8",
                "amx_bf16",
                "amx_tile",
                "avx512_bf16",
                "avx512_fp16",
            }
        ),
        "ram_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": versions,
        "commit": commit,
    }
