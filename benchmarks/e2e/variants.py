"""Variants of one encoder file for ``bench_levers.py``, and the timing of each.

Sessions with other settings (threads, spinning, graph optimization level), the pack's dynamic
int8 quantization with other op types or scales, static QDQ int8, ORT's transformer optimizer
(attention fusion); :class:`LeverBench` times each variant on the clip and compares its output
with the pack's fp32 output."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from e2e.common import THREADS, log
from e2e.measure import Interference, noisy, stats, wait_for_quiet


def session(
    model: str | bytes | Path, threads: int = THREADS, spinning: bool = False, level: str = "all"
) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    opts.log_severity_level = 3
    return ort.InferenceSession(
        str(model) if isinstance(model, Path) else model, opts, providers=["CPUExecutionProvider"]
    )


def timed(
    sess: Any, chunks: list[dict[str, np.ndarray]], repeat: int, warmup: int = 1
) -> tuple[dict[str, float], np.ndarray]:
    """Run all ``chunks`` (one clip) ``warmup`` + ``repeat`` times; time per clip."""
    out = None
    for _ in range(warmup):
        out = [sess.run(["hidden"], f)[0] for f in chunks]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = [sess.run(["hidden"], f)[0] for f in chunks]
        times.append((time.perf_counter() - t0) * 1e3)
    assert out is not None
    return stats(times), np.concatenate(out, 0)


def op_counts(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(collections.Counter(n.op_type for n in model.graph.node))


def quantize(src: Path, dst: Path, op_types: list[str], per_channel: bool = True) -> Path:
    """The pack's quantization (msa_export.convert.onnx_file.quantize_int8) with other op types or scales."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from msa_export.convert.onnx_file import NEVER_QUANTIZE, quiet

    model = onnx.load(str(src), load_external_data=False)
    excluded = []
    for node in model.graph.node:
        scope = " ".join([node.name, *(p.value for p in node.metadata_props if p.key == "namespace")])
        if any(tag in scope for tag in NEVER_QUANTIZE):
            excluded.append(node.name)
    with quiet():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            op_types_to_quantize=op_types,
            nodes_to_exclude=excluded,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return dst


def quantize_static_qdq(
    src: Path, dst: Path, calibration: list[dict[str, np.ndarray]], op_types: list[str]
) -> Path:
    """Static int8 in QDQ form: activation scales calibrated (MinMax) on ``calibration`` feeds,
    uint8 activations, int8 per-channel weights; the same nodes excluded as the pack's."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from msa_export.convert.onnx_file import NEVER_QUANTIZE, quiet

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    model = onnx.load(str(src), load_external_data=False)
    excluded = [
        n.name
        for n in model.graph.node
        if any(t in " ".join([n.name, *(p.value for p in n.metadata_props)]) for t in NEVER_QUANTIZE)
    ]
    with quiet():
        quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return dst


def op_count_text(path: Path, op: str) -> str:
    return f"{op} {op_counts(path).get(op, 0)}"


def fuse(src: Path, dst: Path, model_type: str, heads: int, hidden: int) -> tuple[Path, dict[str, int]]:
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model = optimize_model(str(src), model_type=model_type, num_heads=heads, hidden_size=hidden, opt_level=0)
    model.save_model_to_file(str(dst))
    return dst, op_counts(dst)


FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "LayerNormalization",
    "QuickGelu",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "Softmax",
    "MatMul",
)


class LeverBench:
    """Times variants of one encoder on the clip (``whole``, or other ``chunks`` of it); a row
    per variant in :attr:`rows`. A variant timed while other processes took the CPU is timed
    again after waiting for quiet (up to ``retries`` times); each row keeps its interference.
    Only the levers in ``only`` run, when given."""

    def __init__(
        self,
        whole: list[dict[str, np.ndarray]],
        reference: np.ndarray,
        repeat: int,
        only: set[str] | None,
        retries: int,
        quiet_minutes: float,
    ) -> None:
        self.whole, self.reference, self.repeat = whole, reference, repeat
        self.only, self.retries, self.quiet_minutes = only, retries, quiet_minutes
        self.rows: list[dict[str, Any]] = []

    def wanted(self, lever: str) -> bool:
        return not self.only or lever in self.only

    def add(
        self,
        lever: str,
        variant: str,
        model: Path | bytes | Callable[[], Path],
        chunks: list[dict[str, np.ndarray]] | None = None,
        notes: str | Callable[[], str] = "",
        expect: np.ndarray | None = None,
        **kw: Any,
    ) -> dict[str, Any] | None:
        """Build (``model`` and ``notes`` may be callables, run only when the lever is wanted)
        and time one variant; ``expect``: its expected output, else the fp32 reference."""
        from msa_export.gate.checks import cosine

        if not self.wanted(lever):
            return None
        try:
            if callable(model):
                model = model()
            if callable(notes):
                notes = notes()
            sess = session(model, **kw)
            for attempt in range(self.retries + 1):
                watch = Interference()
                st, out = timed(sess, chunks or self.whole, self.repeat)
                busy = watch.result()
                if not noisy(busy) or attempt == self.retries:
                    break
                log(
                    f"  ({variant}: others took {busy['others_cpu_share']:.0%} of the CPU; "
                    "waiting for quiet to time it again)"
                )
                wait_for_quiet(self.quiet_minutes)
            del sess
        except Exception as exc:  # an ORT kernel missing for a variant is a result, not a crash
            row: dict[str, Any] = {
                "lever": lever,
                "variant": variant,
                "median": None,
                "p90": None,
                "cosine": None,
                "notes": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}",
            }
            self.rows.append(row)
            log(f"  {lever:18s} {variant:44s} FAILED {row['notes']}")
            return row
        row = {
            "lever": lever,
            "variant": variant,
            "median": st["median"],
            "p90": st["p90"],
            "cosine": cosine(out, self.reference if expect is None else expect),
            "notes": notes,
            "interference": busy,
        }
        self.rows.append(row)
        log(f"  {lever:18s} {variant:44s} {st['median']:9.1f} ms  cos {row['cosine']:.5f}  {notes}")
        return row
