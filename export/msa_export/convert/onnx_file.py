"""Torch module -> ONNX file -> int8 / fp16 variants, and running them."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from msa_export.errors import ExportError
from msa_runtime.engine.sessions import make_session

# Linear layers of WavLM's gated relative-position bias: quantizing them moves the bucket
# weights; they stay fp32 (docs/quantization.md).
NEVER_QUANTIZE = ("gru_rel_pos", "rel_attn_embed")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
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
        with quiet(), torch.no_grad():
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
    with quiet():
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
    with quiet():
        half = convert_float_to_float16(model, keep_io_types=True)
    onnx.save_model(half, str(dst))
    return dst


def run_onnx(
    path: Path, feeds: dict[str, np.ndarray], threads: int | None = None, providers: str = "cpu"
) -> list[np.ndarray]:
    session = make_session(path, providers, threads=threads)
    return [np.asarray(o) for o in session.run(None, feeds)]
