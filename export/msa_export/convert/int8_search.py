"""Accuracy-aware int8: quantize every weight MatMul, and keep the fewest in fp32 that the gate needs.

Dynamic int8 (:func:`msa_export.convert.onnx_file.quantize_int8`) is fast, but some encoders have MatMuls
whose inputs carry activation outliers (MiniLM's feed-forward layers, for one): quantized, they
move the features past what the parity gate accepts. Which MatMuls those are depends on the
encoder and on the block the pack is cut at, so it is measured, not guessed:

1. quantize every weight MatMul/Gemm (except the card's ``int8_keep_fp32`` override and WavLM's
   relative-position subgraph) and run the gate; when it passes, that is the file;
2. otherwise measure each MatMul's **sensitivity** on the validation inputs: one probe model
   holds a switch per MatMul that puts that MatMul alone in ONNX Runtime's dynamic int8
   arithmetic (activation: DynamicQuantizeLinear, uint8 per tensor; weight: int8 per output
   channel, symmetric); the sensitivity is what that costs at the encoder's output, the largest
   cost over the validation inputs: the export uses the gate's own measures relative to their
   limits, ``max((1 - mean cosine) / (1 - 0.999), score diff / 0.02)`` (1.0 = at the limit);
3. keep the most sensitive MatMuls in fp32, 1, 2, 4, ... of them until the gate passes, then
   bisect down to the fewest, and finally try to release each kept MatMul again (least sensitive
   first) while the gate still passes.

Only when keeping every MatMul in fp32 still fails does :func:`accuracy_aware_int8` raise, with
what it tried. The outcome (:class:`Int8Outcome`) goes into the pack's manifest under ``int8``.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from msa_export.convert.onnx_file import NEVER_QUANTIZE, quantize_int8
from msa_export.convert.smooth import Smoothing, smooth_alpha, smooth_matmuls
from msa_export.errors import ValidationError
from msa_export.gate.checks import Gate

Progress = Callable[[str], None]
PRUNE_LIMIT = 8
"""The final release pass (one gate run per kept MatMul) runs when at most this many are kept."""


Evaluate = Callable[[Path], Gate]
Quantize = Callable[[Path, Path, Sequence[str]], Path]
Cost = Callable[[int, np.ndarray, np.ndarray], float]


@dataclass
class Trial:
    kept: int  # MatMuls kept fp32 by the search (on top of the override)
    passed: bool
    worst: str


@dataclass
class Int8Outcome:
    """Which MatMuls an int8 file keeps in fp32, why, and what the search tried."""

    file: str
    matmuls: int  # weight MatMul/Gemm nodes that could be quantized
    override: list[str] = field(default_factory=list)  # kept by int8_keep_fp32
    kept: list[str] = field(default_factory=list)  # kept by the search
    sensitivity: dict[str, float] = field(default_factory=dict)
    trials: list[Trial] = field(default_factory=list)
    gate: Gate | None = None
    smoothing: Smoothing | None = None

    @property
    def quantized(self) -> int:
        return self.matmuls - len(self.override) - len(self.kept)

    def summary(self) -> str:
        text = f"{self.file}: {self.quantized} of {self.matmuls} MatMuls int8"
        if self.smoothing is not None and self.smoothing.smoothed:
            text += f" (inputs of {len(self.smoothing.matmuls)} smoothed)"
        if self.override:
            text += f", {len(self.override)} fp32 by int8_keep_fp32"
        if self.kept:
            names = ", ".join(f"{_short(n)} ({self.sensitivity.get(n, 0.0):.1e})" for n in self.kept)
            text += f", {len(self.kept)} kept fp32 by sensitivity: {names}"
        if self.gate is not None:
            text += f"; worst check: {self.gate.describe()}"
        return text

    def to_manifest(self) -> dict[str, Any]:
        nodes: list[dict[str, Any]] = [
            {"node": n, "reason": "int8_keep_fp32 (preset card)"} for n in self.override
        ]
        nodes += [
            {
                "node": n,
                "reason": "sensitivity: the gate fails with it in int8",
                "sensitivity": float(f"{self.sensitivity.get(n, 0.0):.3e}"),
            }
            for n in self.kept
        ]
        out: dict[str, Any] = {
            "file": self.file,
            "method": "dynamic int8, per channel, MatMul/Gemm",
            "matmuls": self.matmuls,
            "int8_matmuls": self.quantized,
            "kept_fp32": nodes,
            "search": [t.__dict__ for t in self.trials],
        }
        if self.smoothing is not None:
            out["smoothing"] = self.smoothing.to_manifest()
        if self.gate is not None:
            out["gate"] = gate_summary(self.gate)
        return out


def gate_summary(gate: Gate) -> dict[str, Any]:
    """Worst figures of a gate run: mean/worst cosine and the largest score difference."""
    scores = [c.score_diff for c in gate.checks if c.score_diff is not None]
    cos = [c for c in gate.checks if c.output != "score"]
    return {
        "inputs": len(cos),
        "passed": gate.passed,
        "min_mean_cosine": round(min((c.cosine for c in cos), default=1.0), 6),
        "min_vector_cosine": round(
            min((c.min_cosine for c in cos if c.min_cosine is not None), default=1.0), 6
        ),
        "scored_inputs": len(scores),
        "max_score_diff": round(max(scores, default=0.0), 6),
    }


def _short(node: str) -> str:
    return node.strip("/").removeprefix("model/").removesuffix("/MatMul")


def weight_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul/Gemm nodes dynamic quantization turns into int8 (a weight initializer
    as one input), minus WavLM's relative-position subgraph."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm") or not any(i in inits for i in node.input[:2]):
            continue
        scope = " ".join([node.name, *(p.value for p in node.metadata_props if p.key == "namespace")])
        if not any(tag in scope for tag in NEVER_QUANTIZE):
            out.append(node.name)
    return out


def _fake_quant_weight(w: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric int8 per output channel (``axis``), as quantize_dynamic's per-channel weights."""
    absmax = np.abs(w).max(axis=1 - axis, keepdims=True)
    scale = np.where(absmax > 0, absmax / 127.0, 1.0)
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(np.float32)


def _probe(model: onnx.ModelProto, nodes: Sequence[str]) -> list[str]:
    """Rewrite ``model`` in place so that each of ``nodes`` can be switched to int8 arithmetic by
    a scalar input ``int8_select_<i>`` (0: fp32, 1: int8): its activation goes through
    DynamicQuantizeLinear + DequantizeLinear (ONNX Runtime's dynamic activation quantization)
    and its weight moves to the per-channel int8 grid. Returns the select input names."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    wanted = {n: i for i, n in enumerate(nodes)}
    added, selects = [], []
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        i = wanted[node.name]
        wi = 1 if node.input[1] in inits else 0
        w = numpy_helper.to_array(inits[node.input[wi]]).astype(np.float32)
        if node.op_type == "Gemm":
            trans = any(at.name == "transB" and at.i == 1 for at in node.attribute)
            axis = 0 if trans else 1
        else:
            axis = 1 if wi == 1 else 0
        if w.ndim != 2:
            continue
        sel = f"int8_select_{i}"
        selects.append(sel)
        model.graph.input.append(helper.make_tensor_value_info(sel, onnx.TensorProto.FLOAT, []))
        delta = f"int8_delta_{i}"
        model.graph.initializer.append(numpy_helper.from_array(_fake_quant_weight(w, axis) - w, delta))
        x = node.input[1 - wi]
        t = f"int8_probe_{i}"
        added += [
            helper.make_node("DynamicQuantizeLinear", [x], [f"{t}_q", f"{t}_s", f"{t}_z"]),
            helper.make_node("DequantizeLinear", [f"{t}_q", f"{t}_s", f"{t}_z"], [f"{t}_xd"]),
            helper.make_node("Sub", [f"{t}_xd", x], [f"{t}_dx"]),
            helper.make_node("Mul", [f"{t}_dx", sel], [f"{t}_dxs"]),
            helper.make_node("Add", [x, f"{t}_dxs"], [f"{t}_x"]),
            helper.make_node("Mul", [delta, sel], [f"{t}_dw"]),
            helper.make_node("Add", [node.input[wi], f"{t}_dw"], [f"{t}_w"]),
        ]
        node.input[1 - wi], node.input[wi] = f"{t}_x", f"{t}_w"
    # the new nodes must precede their consumers: put them first, each after its producer
    graph = list(model.graph.node)
    del model.graph.node[:]
    producers = {o: k for k, n in enumerate(graph) for o in n.output}
    by_slot: dict[int, list[onnx.NodeProto]] = {}
    for n in added:
        slot = max((producers.get(x, -1) for x in n.input), default=-1)
        by_slot.setdefault(slot, []).append(n)
    for n in by_slot.get(-1, []):
        model.graph.node.append(n)
    for k, n in enumerate(graph):
        model.graph.node.append(n)
        model.graph.node.extend(by_slot.get(k, []))
    return selects


def cosine_cost(case: int, got: np.ndarray, ref: np.ndarray) -> float:
    """``1 - mean cosine`` of the feature vectors: the default sensitivity measure."""
    from msa_export.gate.checks import cosines

    return 1.0 - float(cosines(got, ref).mean())


def sensitivity(
    fp32: Path, inputs: Sequence[dict[str, np.ndarray]], nodes: Sequence[str], cost: Cost = cosine_cost
) -> dict[str, float]:
    """Per MatMul, what int8 arithmetic in that MatMul alone costs at the encoder's output on
    ``inputs``: the largest ``cost(case, output, fp32 output)`` over the inputs (default
    ``1 - mean cosine``; the export passes the gate's own measure, cosine and head score, each
    relative to its limit)."""

    model = onnx.load(str(fp32))
    selects = _probe(model, nodes)
    names = [n for n in nodes]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="msa-sens-") as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save_model(
            model, str(path), save_as_external_data=model.ByteSize() > 2**30, location="probe.onnx.data"
        )
        del model
        from msa_runtime.engine.sessions import make_session

        session = make_session(path, "cpu")
        off = {s: np.zeros((), np.float32) for s in selects}
        refs = [session.run(None, {**feeds, **off})[0] for feeds in inputs]
        for sel in selects:
            i = int(sel.rsplit("_", 1)[1])
            on = {**off, sel: np.ones((), np.float32)}
            worst = 0.0
            for case, (feeds, ref) in enumerate(zip(inputs, refs)):
                got = session.run(None, {**feeds, **on})[0]
                worst = max(worst, cost(case, got, ref))
            out[names[i]] = worst
    return out


def _patterns(nodes: Sequence[str]) -> list[str]:
    return [f"^{re.escape(n)}$" for n in nodes]


@dataclass
class _Search:
    """The candidate files of one search: each attempt writes ``dst`` keeping some MatMuls fp32,
    runs the gate on it and records the trial in ``outcome``; ``gates`` holds the gate run for
    each count of kept MatMuls (the most sensitive first) that was tried."""

    fp32: Path
    dst: Path
    keep_fp32: Sequence[str]
    evaluate: Evaluate
    quantize: Quantize
    outcome: Int8Outcome
    progress: Progress
    gates: dict[int, Gate] = field(default_factory=dict)

    def attempt(self, kept: Sequence[str]) -> Gate:
        self.quantize(self.fp32, self.dst, [*self.keep_fp32, *_patterns(kept)])
        gate = self.evaluate(self.dst)
        self.outcome.trials.append(Trial(kept=len(kept), passed=gate.passed, worst=gate.describe()))
        return gate

    def keep_first(self, order: Sequence[str], k: int) -> Gate:
        """Attempt with the ``k`` most sensitive MatMuls of ``order`` kept fp32."""
        self.progress(f"{self.dst.name}: keeping the {k} most sensitive MatMul(s) in fp32")
        self.gates[k] = self.attempt(order[:k])
        return self.gates[k]


def _bracket(search: _Search, order: Sequence[str]) -> tuple[int, int]:
    """``(lo, hi)``: a failing and a passing count of kept MatMuls, found by doubling; raises
    when even all of them kept fp32 fail (then quantization is not the problem)."""
    lo, k = 0, 1
    while k < len(order):
        if search.keep_first(order, k).passed:
            return lo, k
        lo, k = k, k * 2
    dst = search.dst
    search.progress(f"{dst.name}: keeping all {len(order)} MatMuls in fp32")
    search.gates[len(order)] = search.attempt(order)
    if not search.gates[len(order)].passed:
        tried = ", ".join(f"{t.kept} kept: {'pass' if t.passed else t.worst}" for t in search.outcome.trials)
        raise ValidationError(
            f"{dst.name} fails parity with PyTorch even with all {len(order)} MatMuls kept "
            f"in fp32 (not a quantization problem): tried {tried}; no pack was written"
        )
    return lo, len(order)


def _fewest(search: _Search, order: Sequence[str]) -> tuple[list[str], Gate]:
    """The fewest most-sensitive MatMuls that pass (bisection), then each released again, least
    sensitive first, while the gate still passes: sensitivity is measured one MatMul at a time,
    so the bisected set can hold some the gate does not need together."""
    lo, hi = _bracket(search, order)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if search.keep_first(order, mid).passed else (mid, hi)
    kept = list(order[:hi])
    best = search.gates[hi]
    if len(kept) <= PRUNE_LIMIT:
        for node in reversed(order[:hi]):
            if len(kept) == 1:
                break
            trial = [n for n in kept if n != node]
            gate = search.attempt(trial)
            if gate.passed:
                kept, best = trial, gate
    return kept, best


def accuracy_aware_int8(
    fp32: Path,
    dst: Path,
    *,
    evaluate: Evaluate,
    inputs: Sequence[dict[str, np.ndarray]],
    keep_fp32: Sequence[str] = (),
    quantize: Quantize = quantize_int8,
    cost: Cost = cosine_cost,
    progress: Progress = lambda m: None,
    smooth: float | str | None = None,
) -> Int8Outcome:
    """Write ``dst``: ``fp32`` in dynamic int8 with the fewest MatMuls kept fp32 for which
    ``evaluate(dst)`` passes. ``inputs`` (ONNX feeds) are used to rank the MatMuls' sensitivity (``cost``);
    ``keep_fp32`` (regular expressions over node names, the card's ``int8_keep_fp32``) are kept
    fp32 whatever the search finds. ``quantize(src, dst, keep_fp32_patterns)`` writes a
    candidate (default: ONNX Runtime dynamic int8; another int8 flavour, e.g. an NNCF file with an
    ignored scope, plugs in here). Raises :class:`ValidationError` saying what was tried when
    even every MatMul in fp32 fails.

    Before any of this, the activations of the MatMuls to quantize are smoothed
    (:mod:`msa_export.convert.smooth`, strength ``smooth``, else ``MSA_EDGE_INT8_SMOOTH``, else
    chosen per activation on ``inputs``): the int8 file is made from the smoothed fp32 file,
    whose function is the same."""
    model = onnx.load(str(fp32), load_external_data=False)
    candidates = weight_matmuls(model)
    del model
    override = [n for n in candidates if any(re.search(p, n) for p in keep_fp32)]
    free = [n for n in candidates if n not in override]
    outcome = Int8Outcome(file=dst.name, matmuls=len(candidates), override=override)
    alpha = smooth_alpha(smooth)
    with tempfile.TemporaryDirectory(prefix="msa-smooth-") as tmp:
        source = fp32
        if alpha != 0.0 and free and inputs:
            progress(f"{dst.name}: smoothing the activations of {len(free)} MatMuls (strength {alpha})")
            source = Path(tmp) / fp32.name
            outcome.smoothing = smooth_matmuls(fp32, source, inputs, free, alpha)
        return _search(source, dst, outcome, free, evaluate, inputs, keep_fp32, quantize, cost, progress)


def _search(
    fp32: Path,
    dst: Path,
    outcome: Int8Outcome,
    free: Sequence[str],
    evaluate: Evaluate,
    inputs: Sequence[dict[str, np.ndarray]],
    keep_fp32: Sequence[str],
    quantize: Quantize,
    cost: Cost,
    progress: Progress,
) -> Int8Outcome:
    """The search of :func:`accuracy_aware_int8` on ``fp32`` (the file int8 is made from)."""
    search = _Search(fp32, dst, keep_fp32, evaluate, quantize, outcome, progress)
    gate = search.attempt([])
    if gate.passed or not free:
        if not gate.passed:
            raise ValidationError(
                f"{dst.name} fails parity with PyTorch with every MatMul that "
                f"can be quantized already kept fp32 by int8_keep_fp32: "
                f"{gate.describe()}; no pack was written"
            )
        outcome.gate = gate
        return outcome
    progress(f"{dst.name}: {gate.describe()}; measuring the sensitivity of {len(free)} MatMuls")
    sens = sensitivity(fp32, inputs, free, cost)
    order = sorted(free, key=lambda n: -sens.get(n, 0.0))
    outcome.sensitivity = {n: sens.get(n, 0.0) for n in order}
    search.gates[0] = gate
    kept, best = _fewest(search, order)
    quantize(fp32, dst, [*keep_fp32, *_patterns(kept)])  # the file of the chosen set
    outcome.kept, outcome.gate = kept, best
    return outcome
