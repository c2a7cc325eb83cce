"""SmoothQuant-style scaling before dynamic int8: move activation outliers into the fp32 weights.

ONNX Runtime's dynamic int8 quantizes a MatMul's activation with **one scale per tensor**, taken
from that call's own range (``DynamicQuantizeLinear``). A transformer's hidden states carry a few
channels whose values are tens of times larger than the rest (all-MiniLM-L6-v2 at block 3: the
activations entering the query/key/value and feed-forward MatMuls reach 5-40 in a handful of
channels while most stay below 1). Those channels set the scale, and every other channel is
quantized on a grid far too coarse for it; how coarse depends on the utterance, so a tail of
utterances the parity gate never saw moves more than the gate's ones
(``benchmarks/results/int8-unseen-vm.md``).

The fix (Xiao et al., "SmoothQuant", 2023, adapted to dynamic quantization): for each activation
``X`` that feeds weight MatMuls ``X @ W``, divide its channel ``j`` by

    s_j = max|X_j| ** alpha / max|W_j,:| ** (1 - alpha)

and multiply row ``j`` of each ``W`` by ``s_j``. ``(X / s) @ (s W) = X @ W`` in exact arithmetic,
so the fp32 function is unchanged; the int8 file quantizes ``X / s`` (outliers flattened) and
``s W`` (per output channel, which absorbs the larger rows). The division is one ``Mul`` node per
activation (elementwise, negligible beside the MatMul); ``max|X_j|`` comes from running the fp32
file on calibration inputs (the gate's own validation inputs).

Configuration: the ``alpha`` argument, else ``MSA_EDGE_INT8_SMOOTH`` (a number in [0, 1]; 0
turns smoothing off), else :data:`DEFAULT_ALPHA`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from msa_export.errors import ExportError

AUTO = "auto"
"""Per activation, the strength whose int8 MatMul output is closest to fp32 on the calibration inputs."""
DEFAULT_ALPHA = AUTO
ALPHA_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Strengths :data:`AUTO` tries per activation (besides leaving the activation as it is)."""
SCALE_RANGE = (1e-3, 1e3)
"""Smoothing factors are clipped to this range (a dead channel keeps its factor near 1)."""
MAX_ROWS = 2048
"""Calibration token vectors per activation used to choose the strength (evenly spaced)."""
CHUNK = 8
"""Activations collected per pass over the calibration inputs (bounds memory on large encoders)."""


def smooth_alpha(alpha: float | str | None = None) -> float | str:
    """``alpha`` if given, else ``MSA_EDGE_INT8_SMOOTH``, else :data:`DEFAULT_ALPHA`: ``"auto"``
    or a number in [0, 1] (0 turns smoothing off)."""
    raw: str | float | None = alpha if alpha is not None else os.environ.get("MSA_EDGE_INT8_SMOOTH")
    if raw is None:
        return DEFAULT_ALPHA
    if isinstance(raw, str) and raw.strip().lower() == AUTO:
        return AUTO
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        where = "alpha" if alpha is not None else "MSA_EDGE_INT8_SMOOTH"
        raise ExportError(f"{where}={raw!r}: give 'auto' or a number in [0, 1] (0 turns int8 smoothing off)")
    return value


@dataclass
class Smoothing:
    """What :func:`smooth_matmuls` did, per activation: the strength used (``None``: left as it
    was) and the int8 error of its MatMuls' outputs on the calibration inputs before and after."""

    alpha: float | str
    matmuls: list[str] = field(default_factory=list)
    activations: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def smoothed(self) -> list[str]:
        return [x for x, a in self.activations.items() if a["alpha"] is not None]

    def to_manifest(self) -> dict[str, Any]:
        return {
            "method": "SmoothQuant-style per-channel scaling folded into the fp32 weights",
            "alpha": self.alpha,
            "activations_smoothed": len(self.smoothed),
            "activations": len(self.activations),
            "matmuls": len(self.matmuls),
            "alphas": sorted({a["alpha"] for a in self.activations.values() if a["alpha"] is not None}),
            "max_int8_error_before": round(
                max((a["before"] for a in self.activations.values()), default=0.0), 5
            ),
            "max_int8_error_after": round(
                max((a["after"] for a in self.activations.values()), default=0.0), 5
            ),
        }


def _smoothable(model: onnx.ModelProto, nodes: Sequence[str]) -> dict[str, list[onnx.NodeProto]]:
    """Activation name -> the MatMuls of ``nodes`` that multiply it by a 2-D weight initializer
    (``X @ W``, weight second). Other forms (Gemm, weight first) are left as they are."""
    inits = {i.name: i for i in model.graph.initializer}
    wanted = set(nodes)
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        if node.name not in wanted or node.op_type != "MatMul":
            continue
        w = inits.get(node.input[1])
        if w is None or len(w.dims) != 2 or node.input[0] in inits:
            continue
        out.setdefault(node.input[0], []).append(node)
    return out


def activations(
    path: Path, feeds: Sequence[dict[str, np.ndarray]], tensors: Sequence[str]
) -> dict[str, np.ndarray]:
    """Per tensor of ``tensors`` (intermediate values of the file at ``path``), its vectors (last
    axis) over every position of every input in ``feeds``, ``[N, C]``, at most :data:`MAX_ROWS`
    (evenly spaced)."""
    from msa_runtime.engine.sessions import make_session

    model = onnx.load(str(path))
    known = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in known:
            model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    rows: dict[str, list[np.ndarray]] = {t: [] for t in tensors}
    per_feed = -(-MAX_ROWS // max(len(feeds), 1))
    with tempfile.TemporaryDirectory(prefix="msa-smooth-") as tmp:
        probe = Path(tmp) / "stats.onnx"
        _save(model, probe)
        del model
        session = make_session(probe, "cpu")
        for feed in feeds:
            for name, value in zip(tensors, session.run(list(tensors), feed)):
                x = np.asarray(value, np.float32)
                x = x.reshape(-1, x.shape[-1])
                if len(x) > per_feed:
                    x = x[np.linspace(0, len(x) - 1, per_feed).round().astype(int)]
                rows[name].append(x)
    out = {}
    for name, parts in rows.items():
        x = np.concatenate(parts)
        if len(x) > MAX_ROWS:
            x = x[np.linspace(0, len(x) - 1, MAX_ROWS).round().astype(int)]
        out[name] = x
    return out


def _save(model: onnx.ModelProto, path: Path) -> None:
    big = model.ByteSize() > 2**30
    onnx.save_model(model, str(path), save_as_external_data=big, location=f"{path.name}.data")


def fake_int8_activation(x: np.ndarray) -> np.ndarray:
    """``x`` on ONNX Runtime's dynamic activation grid: uint8, one scale and zero point per
    tensor, the range widened to hold 0 (DynamicQuantizeLinear)."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zero = np.clip(np.round(-lo / scale), 0, 255)
    return ((np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale).astype(np.float32)


def fake_int8_weight(w: np.ndarray) -> np.ndarray:
    """``w`` (``[in, out]``) on the dynamic int8 weight grid: symmetric, one scale per output column."""
    absmax = np.abs(w).max(axis=0, keepdims=True)
    scale = np.where(absmax > 0, absmax / 127.0, 1.0)
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


def int8_error(x: np.ndarray, weights: Sequence[np.ndarray], s: np.ndarray | None) -> float:
    """Mean over token vectors of the relative error ``|Q(X/s) Q(sW) - XW| / |XW|`` of int8
    arithmetic, worst over ``weights`` (the MatMuls that read ``x``). Every token counts alike
    (the gate's mean cosine does too), so a large outlier token cannot hide the others' error.
    ``x`` is quantized as one tensor over all rows: the runtime quantizes one utterance at a
    time, whose range the outlier channels set much as they set the calibration set's."""
    xq = fake_int8_activation(x if s is None else x / s)
    worst = 0.0
    for w in weights:
        ref = x @ w
        got = xq @ fake_int8_weight(w if s is None else w * s[:, None])
        rel = np.linalg.norm(got - ref, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-12)
        worst = max(worst, float(rel.mean()))
    return worst


def factors(x: np.ndarray, weights: Sequence[np.ndarray], alpha: float) -> np.ndarray:
    """SmoothQuant's per-channel factors ``max|X_j|^alpha / max|W_j,:|^(1-alpha)``."""
    act = np.abs(x).max(axis=0)
    wmax = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
    s = np.where((act > 0) & (wmax > 0), act**alpha / np.maximum(wmax, 1e-12) ** (1 - alpha), 1.0)
    return np.clip(s, *SCALE_RANGE).astype(np.float32)


def choose(
    x: np.ndarray, weights: Sequence[np.ndarray], alpha: float | str
) -> tuple[float | None, np.ndarray | None, float, float]:
    """The strength for one activation (``None``: leave it), its factors, and the int8 error
    before and after. ``"auto"`` tries :data:`ALPHA_GRID` and keeps the activation as it is
    unless a strength lowers the error."""
    before = int8_error(x, weights, None)
    grid = ALPHA_GRID if alpha == AUTO else (float(alpha),)
    best: tuple[float | None, np.ndarray | None, float] = (None, None, before if alpha == AUTO else np.inf)
    for a in grid:
        s = factors(x, weights, a)
        err = int8_error(x, weights, s)
        if err < best[2]:
            best = (a, s, err)
    return best[0], best[1], before, best[2]


def smooth_matmuls(
    src: Path,
    dst: Path,
    feeds: Sequence[dict[str, np.ndarray]],
    nodes: Sequence[str],
    alpha: float | str | None = None,
) -> Smoothing:
    """Write ``dst``: ``src`` with each activation that feeds MatMuls of ``nodes`` divided per
    channel by SmoothQuant's factor (one ``Mul`` node) and the factor folded into those MatMuls'
    weights. The function of the file is unchanged (up to fp32 rounding). Channel ranges come
    from running ``src`` on ``feeds``. Returns what was done (strength 0: a plain copy)."""
    a = smooth_alpha(alpha)
    report = Smoothing(alpha=a)
    model = onnx.load(str(src))
    groups = _smoothable(model, nodes)
    if a == 0.0 or not groups or not feeds:
        _save(model, dst)
        return report
    names = list(groups)
    data: dict[str, np.ndarray] = {}
    inits = {i.name: i for i in model.graph.initializer}
    first_use: dict[str, int] = {}
    for k, node in enumerate(model.graph.node):
        for x in node.input:
            first_use.setdefault(x, k)
    muls: dict[int, list[onnx.NodeProto]] = {}
    for x, consumers in groups.items():
        if x not in data:  # the next CHUNK activations, one pass over the inputs
            data = activations(src, feeds, names[names.index(x) : names.index(x) + CHUNK])
        weights = [numpy_helper.to_array(inits[n.input[1]]).astype(np.float32) for n in consumers]
        if data[x].shape[1] != weights[0].shape[0]:
            raise ExportError(
                f"smoothing {x}: {data[x].shape[1]} channels but the weight has {weights[0].shape[0]} rows"
            )
        used, s, before, after = choose(data[x], weights, a)
        report.activations[x] = {"alpha": used, "before": before, "after": after}
        if s is None:
            continue
        tag = f"smooth_{len(report.smoothed) - 1}"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), f"{tag}_inv"))
        mul = helper.make_node("Mul", [x, f"{tag}_inv"], [f"{tag}_x"], name=f"/smooth/{tag}/Mul")
        muls.setdefault(first_use[x], []).append(mul)
        for node, w in zip(consumers, weights):
            name = f"{node.input[1]}_{tag}"
            model.graph.initializer.append(numpy_helper.from_array(w * s[:, None], name))
            node.input[0], node.input[1] = f"{tag}_x", name
            report.matmuls.append(node.name)
    graph = list(model.graph.node)
    del model.graph.node[:]
    for k, node in enumerate(graph):
        model.graph.node.extend(muls.get(k, []))
        model.graph.node.append(node)
    _drop_unused(model)
    _save(model, dst)
    return report


def _drop_unused(model: onnx.ModelProto) -> None:
    """Remove initializers no node reads any more (the weights replaced by their scaled copies)."""
    used = {x for n in model.graph.node for x in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
