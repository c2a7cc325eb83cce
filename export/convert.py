"""Torch module -> ONNX file -> int8 / fp16 variants, and the parity checks between them."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from msa_export.errors import ExportError, ValidationError
from msa_runtime.sessions import make_session

# Linear layers of WavLM's gated relative-position bias: quantizing them moves the bucket
# weights; they stay fp32 (DESIGN.md).
NEVER_QUANTIZE = ("gru_rel_pos", "rel_attn_embed")
FP32_ATOL = 1e-4
MIN_COSINE = 0.999
MAX_SCORE_DIFF = 0.02  # on every validation input, through the (trained) head


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's chatter (progress prints, warnings); errors still propagate."""
    loggers = [
        logging.getLogger(n)
        for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript", "torch.fx.experimental", "")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


EXPORTERS = ("torchscript", "dynamo")


def export_onnx(
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    exporter: str = "torchscript",
) -> Path:
    """Export ``module`` with dynamic axes into one self-contained ONNX file.

    ``torchscript`` (the default) traces in about a second and gives graphs whose attention ONNX
    Runtime can fuse; ``dynamo`` (opset 18) is the newer exporter and takes tens of seconds.
    Either way the file is validated against PyTorch afterwards, on several input lengths.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; valid: {', '.join(EXPORTERS)}")
    module = module.eval()
    kwargs: dict[str, Any]
    if exporter == "dynamo":
        dims: dict[str, torch.export.Dim] = {}
        shapes: tuple[object, ...] = tuple(
            {i: dims.setdefault(a, torch.export.Dim(a)) for i, a in dynamic_axes.get(n, {}).items()}
            for n in input_names
        )
        params = inspect.signature(module.forward).parameters.values()
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            shapes = (shapes,)  # torch.export sees *args as one input
        kwargs = {"dynamo": True, "opset_version": 18, "dynamic_shapes": shapes}
    else:
        kwargs = {"dynamo": False, "opset_version": 17, "dynamic_axes": dynamic_axes}
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                module,
                inputs,
                None if exporter == "dynamo" else str(path),
                input_names=list(input_names),
                output_names=list(output_names),
                verbose=False,
                **kwargs,
            )
    except Exception as exc:  # the exporters raise many kinds of errors; report which module
        raise ExportError(
            f"torch.onnx.export ({exporter}) failed for {path.name}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        ) from exc
    if exporter == "dynamo":
        if program is None:
            raise ExportError(f"torch.onnx.export (dynamo) returned no program for {path.name}")
        model = program.model_proto
        if model.ByteSize() < 2**31 - 2**20:
            onnx.save_model(model, str(path))
        else:
            onnx.save_model(
                model,
                str(path),
                save_as_external_data=True,
                location=f"{path.name}.data",
                all_tensors_to_one_file=True,
            )
    return path


def remove_onnx(path: Path) -> None:
    """Delete an ONNX file written by :func:`export_onnx` and its external-data file, if any."""
    path.unlink()
    path.with_name(f"{path.name}.data").unlink(missing_ok=True)


def excluded_nodes(model: onnx.ModelProto, keep_fp32: Sequence[str]) -> list[str]:
    """Nodes that stay fp32 in every int8 flavour: WavLM's relative-position subgraph, and the
    card's ``int8_keep_fp32`` patterns (regular expressions over node names)."""
    names = []
    for node in model.graph.node:
        scope = " ".join([node.name, *(p.value for p in node.metadata_props if p.key == "namespace")])
        if any(tag in scope for tag in NEVER_QUANTIZE) or any(
            re.search(pattern, node.name) for pattern in keep_fp32
        ):
            names.append(node.name)
    return names


def quantize_int8(src: Path, dst: Path, keep_fp32: Sequence[str] = ()) -> Path:
    """Dynamic int8, per channel, MatMul and Gemm only (never Conv: ConvInteger is slow here;
    never WavLM's relative-position subgraph). Nodes whose name matches a ``keep_fp32`` regular
    expression stay fp32 too (for encoders with activation outliers, such as MiniLM's FFN)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = excluded_nodes(onnx.load(str(src), load_external_data=False), keep_fp32)
    with _quiet():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm"],
            nodes_to_exclude=excluded,
        )
    return dst


def convert_fp16(src: Path, dst: Path) -> Path:
    """fp16 weights and compute for CUDA; inputs and outputs stay fp32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    with _quiet():
        half = convert_float_to_float16(model, keep_io_types=True)
    onnx.save_model(half, str(dst))
    return dst


def run_onnx(
    path: Path, feeds: dict[str, np.ndarray], threads: int | None = None, providers: str = "cpu"
) -> list[np.ndarray]:
    session = make_session(path, providers, threads=threads)
    return [np.asarray(o) for o in session.run(None, feeds)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each feature vector (last axis) of ``a`` with that of ``b``."""
    a2 = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b2 = b.reshape(-1, b.shape[-1]).astype(np.float64)
    num = (a2 * b2).sum(-1)
    den = np.linalg.norm(a2, axis=-1) * np.linalg.norm(b2, axis=-1) + 1e-12
    return num / den


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest cosine similarity over feature vectors (last axis)."""
    return float(cosines(a, b).min())


@dataclass
class Check:
    """One parity measurement of one file on one input length."""

    file: str
    precision: str
    output: str
    length: int
    max_abs: float
    cosine: float  # mean over feature vectors: the pass criterion for int8/fp16
    score_diff: float | None = None
    min_cosine: float | None = None
    provider: str = "cpu"  # the execution provider the file was checked through

    @property
    def exact(self) -> bool:
        """fp32 on the CPU EP must match PyTorch to FP32_ATOL; everything else (int8, fp16, and
        fp32 on OpenVINO, which runs it in bf16 where it can) is judged by cosine and score."""
        return self.precision == "fp32" and self.provider == "cpu"

    def passed(self) -> bool:
        if self.exact and self.max_abs > FP32_ATOL:
            return False
        if not self.exact and self.cosine < MIN_COSINE:
            return False
        return self.score_diff is None or self.score_diff <= MAX_SCORE_DIFF

    def describe(self) -> str:
        if self.exact:
            return f"max |diff| {self.max_abs:.2e} (limit {FP32_ATOL:.0e})"
        text = f"mean cosine {self.cosine:.5f} (at least {MIN_COSINE})"
        if self.min_cosine is not None:
            text += f", worst vector {self.min_cosine:.5f}"
        if self.score_diff is not None:
            text += f", score diff {self.score_diff:.4f} (max {MAX_SCORE_DIFF})"
        return text


def compare(
    file: str,
    precision: str,
    output: str,
    length: int,
    got: np.ndarray,
    ref: np.ndarray,
    provider: str = "cpu",
) -> Check:
    if got.shape != ref.shape:
        raise ValidationError(
            f"{file}: output {output} has shape {got.shape}, PyTorch gives "
            f"{ref.shape} (input length {length}); the export is wrong"
        )
    return Check(
        file=file,
        precision=precision,
        output=output,
        length=length,
        max_abs=float(np.abs(got.astype(np.float64) - ref).max(initial=0.0)),
        cosine=float(cosines(got, ref).mean()),
        min_cosine=cosine(got, ref),
        provider=provider,
    )


def worst_failure(checks: Sequence[Check]) -> None:
    """Raise :class:`ValidationError` naming the worst failing check, if any failed."""
    failed = [c for c in checks if not c.passed()]
    if not failed:
        return
    worst = max(failed, key=lambda c: c.max_abs if c.exact else 1 - c.cosine)
    raise ValidationError(
        f"{worst.file}: output {worst.output} at input length {worst.length} "
        f"fails parity with PyTorch: {worst.describe()}; no pack was written"
    )
