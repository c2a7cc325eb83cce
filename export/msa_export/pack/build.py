"""Build a pack: cut each encoder, export, quantize, validate against PyTorch, write atomically.

The per-encoder step lives in :mod:`msa_export.pack.encoder`, the head's in
:mod:`msa_export.pack.head`; this module checks the arguments, runs them in order and writes
the manifest.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from msa_export.convert.openvino import calibration
from msa_export.convert.openvino import ready as openvino_ready
from msa_export.errors import ExportError
from msa_export.gate.checks import Check
from msa_export.gate.inputs import HeadScorer, validation_utterances
from msa_export.models.heads import Checkpoint, CheckpointError, HeadConfig, build_head, load_checkpoint
from msa_export.pack.encoder import (
    SEARCH_SCORE_TARGET,
    Encoded,
    Progress,
    encode_modality,
    search_score_target,
    tokenizer_json,
)
from msa_export.pack.folder import check_out, prepare_out, swap_into_place
from msa_export.pack.head import export_head, untrained_scorer
from msa_export.pack.preflight import check_checkpoint, check_tuned, match_checkpoint
from msa_export.pack.report import BuildReport, file_rows
from msa_export.presets.kinds import head_kind
from msa_export.presets.registry import Preset
from msa_runtime.pack import (
    PRECISIONS,
    FaceDetectorEntry,
    FileRecord,
    HeadEntry,
    Manifest,
    VisionPrep,
    manifest_to_dict,
    sha256_file,
    write_manifest,
)

__all__ = [
    "SEARCH_SCORE_TARGET",
    "build_pack",
    "default_precisions",
    "needs_face_detector",
    "search_score_target",
    "tokenizer_json",
]


def needs_face_detector(preset: Preset) -> bool:
    """Whether the preset's vision encoder expects face crops (its pack carries the detector)."""
    vision = preset.encoders.get("vision")
    return vision is not None and isinstance(vision.prep, VisionPrep) and vision.prep.crop == "face"


def _export_face(tmp: Path, progress: Progress) -> tuple[FaceDetectorEntry, list[Check]]:
    """Export and validate the MTCNN face detector into the pack folder; its manifest entry and
    one parity check per stage file."""
    from msa_export.models.face import export_face_detector

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
    from msa_runtime.asr.recognizer import Recognizer

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
    """int8, fp16 and fp32, plus ov-int8 when NNCF is installed and an OpenVINO route offers
    this machine's CPU (the file is validated through OpenVINO: :func:`msa_export.convert.openvino.ready`)."""
    return _defaults(openvino_ready())


def _defaults(ov_missing: str | None) -> tuple[str, ...]:
    return ("int8", "fp16", "fp32") + (("ov-int8",) if ov_missing is None else ())


@dataclass
class _Plan:
    """What :func:`build_pack` settles before any export work (checkpoint, layers, gate inputs,
    ASR model), so that a bad argument fails before minutes of exporting; the export steps read it."""

    preset: Preset
    precisions: tuple[str, ...]
    head: str | Path | None
    ckpt: Checkpoint | None
    utterances: list[str]
    calibration_source: str
    scorer: HeadScorer | None
    asr: str | Path | None
    asr_folder: Path | None
    offline: bool | None
    exporter: str
    calibrate: str | Path | None
    progress: Progress


@dataclass
class _Written:
    """What the export steps wrote into the temporary pack folder: the report is made from it."""

    checks: list[Check]
    files: dict[str, FileRecord]
    notes: list[str]


def _choose_precisions(
    precisions: Sequence[str] | None, calibrate: str | Path | None, ov_missing: str | None, progress: Progress
) -> tuple[tuple[str, ...], list[str]]:
    """The precisions to write (checked) and the notes on default files this machine cannot make."""
    left_out: list[str] = []
    if precisions is None:
        precisions = _defaults(ov_missing)
        if ov_missing:
            left_out.append(
                f"no ov-int8 file (OpenVINO's int8): {ov_missing}; build it on a machine where "
                "OpenVINO runs with msa-export --precision int8,fp16,fp32,ov-int8"
            )
            progress(f"note: {left_out[-1]}")
    chosen = tuple(precisions)
    if "ov-int8" in chosen and ov_missing is not None:
        raise ExportError(f"precision ov-int8 cannot be made here: {ov_missing}")
    if calibrate is not None and "ov-int8" not in chosen:
        raise ExportError(
            "--calibrate is for the ov-int8 file: add ov-int8 to --precision "
            "(needs pip install 'msa-edge[export,openvino]')"
        )
    unknown = sorted(set(chosen) - set(PRECISIONS))
    if unknown or not chosen:
        raise ExportError(f"unknown precision {unknown or '(none)'}; valid: {', '.join(PRECISIONS)}")
    return chosen, left_out


def _fusion_head(plan: _Plan, dims: dict[str, int]) -> tuple[HeadConfig, torch.nn.Module]:
    """The checkpoint's head (which must fit the encoders' feature sizes), else a seeded untrained one."""
    ckpt = plan.ckpt
    if ckpt is not None:
        if ckpt.config.dims != dims:
            raise CheckpointError(
                f"the head expects feature sizes {ckpt.config.dims}, the "
                f"encoders give {dims}: the checkpoint does not fit "
                "this preset"
            )
        return ckpt.config, ckpt.head()
    h = plan.preset.head
    cfg = HeadConfig(kind=h.kind, dims=dims, hidden=h.hidden, embed=h.embed, heads=h.heads, dropout=h.dropout)
    return cfg, build_head(cfg, seed=h.seed)


def _encode_all(plan: _Plan, tmp: Path, face: FaceDetectorEntry | None) -> dict[str, Encoded]:
    """Every encoder of the preset exported and validated into ``tmp``."""
    offline = plan.offline
    cal = (
        calibration(tmp, face, plan.calibrate, plan.head, lambda c: tokenizer_json(c, offline), plan.progress)
        if "ov-int8" in plan.precisions
        else None
    )
    return {
        m: encode_modality(
            c,
            tmp,
            plan.precisions,
            offline,
            plan.exporter,
            plan.progress,
            calibrate=cal,
            utterances=plan.utterances,
            scorer=plan.scorer,
            tuned=plan.ckpt.tuned.get(m, {}).get("state") if plan.ckpt is not None else None,
        )
        for m, c in plan.preset.encoders.items()
    }


def _extras(plan: _Plan, encoded: dict[str, Encoded]) -> dict[str, Any]:
    """The manifest's ``extras``: creation time, description, what the gate checked, the int8 search."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "description": plan.preset.description,
        "gate": {
            "calibration": plan.calibration_source,
            "utterances": len(plan.utterances),
            "score": (
                "trained head"
                if plan.ckpt is not None
                else "untrained head"
                if plan.scorer
                else "final check only"
            ),
            "files": {m: e.gates for m, e in encoded.items()},
        },
        "int8": {m: e.int8.to_manifest() for m, e in encoded.items() if e.int8 is not None},
    }


def _export_into(plan: _Plan, tmp: Path) -> _Written:
    """Export every file of the pack into ``tmp`` and write its manifest last."""
    preset, progress = plan.preset, plan.progress
    face: FaceDetectorEntry | None = None
    face_checks: list[Check] = []
    if needs_face_detector(preset):  # first: a missing facenet-pytorch fails fast
        face, face_checks = _export_face(tmp, progress)
    encoded = _encode_all(plan, tmp, face)
    cfg, torch_head = _fusion_head(plan, {m: e.entry.hidden_size for m, e in encoded.items()})
    checks = [c for e in encoded.values() for c in e.checks]
    checks += export_head(cfg, torch_head, encoded, tmp, plan.exporter, progress)
    checks += face_checks
    if "text" in encoded:
        text = preset.encoders["text"]
        (tmp / "tokenizer.json").write_text(tokenizer_json(text, plan.offline), encoding="utf-8")
    progress("writing manifest")
    names = sorted(p.name for p in tmp.iterdir())
    files = {n: FileRecord(sha256=sha256_file(tmp / n), bytes=(tmp / n).stat().st_size) for n in names}
    extras = _extras(plan, encoded)
    if plan.asr_folder is not None:
        from msa_export.models.asr import copy_asr_model

        progress(f"copying the ASR model {plan.asr_folder} into the pack")
        extras["asr"], asr_files = copy_asr_model(plan.asr_folder, tmp, str(plan.asr))
        files.update(asr_files)
    manifest = Manifest(
        name=preset.name,
        encoders={m: e.entry for m, e in encoded.items()},
        head=HeadEntry(
            kind=cfg.kind,
            file="head.onnx",
            modalities=cfg.modalities,
            trained=plan.ckpt is not None,
            gates=head_kind(cfg.kind).gates,
            checkpoint_sha256=sha256_file(Path(plan.head)) if plan.head else None,
        ),
        files=files,
        tools=_tools(),
        validation=[dataclasses.asdict(c) for c in checks],
        extras=extras,
        face_detector=face,
    )
    write_manifest(tmp, manifest_to_dict(manifest))
    notes = [e.int8.summary() for e in encoded.values() if e.int8 is not None]
    return _Written(checks=checks, files=files, notes=notes)


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
    ``head``, else on synthetic inputs (:mod:`msa_export.convert.openvino`). ``gate_text`` (a dataset or
    a ``.txt`` of utterances) adds real utterances to the text encoder's validation inputs
    (default: those the checkpoint carries, else a built-in few); int8 files keep the fewest
    MatMuls in fp32 that pass the gate (:mod:`msa_export.convert.int8_search`). ``asr``: a CTranslate2 Whisper
    model (size, hub id or folder) copied into the pack's ``asr/`` folder, hashed like every
    file, so the pack transcribes without a hub (``msa-run --asr pack``). Nothing is written at
    ``out`` unless every file passes validation (an ov-int8 file that fails is left out).
    """
    started = time.perf_counter()
    ov_missing = openvino_ready()  # probed once: every decision below sees the same answer
    chosen, left_out = _choose_precisions(precisions, calibrate, ov_missing, progress)
    check_out(Path(out), force)  # before any export work: never replace a user's folder
    search_score_target()  # a bad MSA_EDGE_INT8_SEARCH_SCORE fails before any work
    layers = dict(layers or {})
    ckpt = load_checkpoint(head) if head is not None else None
    if ckpt is not None:
        check_checkpoint(preset, ckpt, offline)
        preset = match_checkpoint(preset, ckpt, layers)
        check_tuned(preset, ckpt)
    preset = preset.with_layers(layers)
    utterances, calibration_source = validation_utterances(gate_text, ckpt, "text" in preset.encoders)
    scorer = HeadScorer(ckpt.config, ckpt.head()) if ckpt is not None else untrained_scorer(preset, offline)
    out = Path(out)
    asr_folder = _check_asr(asr, offline, progress) if asr is not None else None
    plan = _Plan(
        preset=preset,
        precisions=chosen,
        head=head,
        ckpt=ckpt,
        utterances=utterances,
        calibration_source=calibration_source,
        scorer=scorer,
        asr=asr,
        asr_folder=asr_folder,
        offline=offline,
        exporter=exporter,
        calibrate=calibrate,
        progress=progress,
    )
    tmp = prepare_out(out, force)
    try:
        written = _export_into(plan, tmp)
        swap_into_place(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report = BuildReport(
        out=out,
        checks=written.checks,
        seconds=time.perf_counter() - started,
        trained_head=ckpt is not None,
        notes=written.notes,
        left_out=left_out,
    )
    report.rows = file_rows(written.files, written.checks)
    return report
