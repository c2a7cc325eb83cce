"""The pack's int8 file for OpenVINO: static QDQ quantization by NNCF, and its calibration data.

OpenVINO does not run ONNX Runtime's dynamic-quantization ops well, so a pack that is to run on
OpenVINO (either route: :mod:`msa_runtime.engine.openvino`) gets its own int8 file,
``<modality>.ov-int8.onnx``: NNCF's post-training quantization of the fp32 file (``nncf.quantize``
with ``model_type=TRANSFORMER``: transformer-aware placement of QuantizeLinear/DequantizeLinear
pairs, SmoothQuant, bias correction; convolutions left out first, as OpenVINO runs them faster in
bf16, and quantized when that misses the parity gate: :data:`PLACEMENTS`), calibrated on real
inputs when there are some.

Calibration inputs, in this order (:func:`calibration_clips`):

1. ``msa-export --calibrate DIR_OR_CSV``: a folder of clips (media files, with a transcript
   sidecar ``.txt``/``.srt``/``.vtt`` for the text encoder) or a dataset CSV in any form
   ``msa-train`` reads; up to :data:`MAX_CLIPS` clips, decoded and preprocessed by the runtime's
   own code (the same pixels and samples the pack will see);
2. else, when ``--head`` is a checkpoint in an ``msa-train`` run folder, the clips of that run's
   dataset (``metrics.json`` names it; its train split), i.e. those the feature cache was made of;
3. else the synthetic default: the encoder's validation inputs (the lengths and seeded random
   token ids, noise waveforms and noise images the parity gate uses, :data:`SYNTHETIC_SEEDS`
   seeds each). Noise calibrates activation ranges less well than real clips: the parity gate
   then decides whether the file is kept.

NNCF is an export-side dependency only (the ``export`` extra); the runtime never imports it.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from msa_export.convert.onnx_file import excluded_nodes, quiet
from msa_export.errors import CalibrationError, ExportError
from msa_runtime.errors import MsaError
from msa_runtime.pack import FaceDetectorEntry

MAX_CLIPS = 16
SYNTHETIC_SEEDS = 3
MEDIA = {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".wav", ".flac", ".ogg", ".mp3", ".m4a"}
SIDECARS = (".txt", ".srt", ".vtt")
Feeds = dict[str, np.ndarray]
# (encoder spec, card, model config) -> calibration inputs of that encoder
Calibrate = Callable[[Any, Any, dict[str, Any]], list[Feeds]]


@dataclass(frozen=True)
class Clip:
    """One calibration clip: a media file (or None) and what was said (or "")."""

    media: Path | None
    text: str
    start: float = 0.0
    end: float | None = None


def ready() -> str | None:
    """None when an ov-int8 file can be made and checked here, else what to install."""
    if importlib.util.find_spec("nncf") is None:
        return "NNCF is not installed: pip install 'msa-edge[export]'"
    from msa_runtime.engine.openvino import describe_routes, pick_route
    from msa_runtime.engine.sessions import import_ort

    ort = import_ort()
    if pick_route(ort, "CPU") is None:
        return (
            f"no OpenVINO route offers this machine's CPU to check the file ({describe_routes(ort)}); "
            "pip install 'msa-edge[openvino]' adds OpenVINO's runtime, which runs on Intel, AMD and ARM"
        )
    return None


def _sidecar_text(media: Path) -> str:
    from msa_runtime.asr.transcript import read_transcript

    for suffix in SIDECARS:
        side = media.with_suffix(suffix)
        if side.is_file():
            try:
                return " ".join(c.text for c in read_transcript(side))
            except MsaError:
                return ""
    return ""


def _dataset_clips(path: Path, split: str | None = "train") -> list[Clip]:
    from msa_export.data.datasets import load_dataset

    ds = load_dataset(path, require_splits=())
    samples = ds.split(split) if split and ds.split(split) else list(ds.samples)
    return [Clip(s.media, s.text, s.start or 0.0, s.end) for s in samples if s.id not in ds.missing_media][
        :MAX_CLIPS
    ]


def calibration_clips(calibrate: str | Path | None, head: str | Path | None) -> tuple[list[Clip] | None, str]:
    """The calibration clips and where they came from; (None, "synthetic ...") for the default."""
    if calibrate is not None:
        path = Path(calibrate)
        if not path.exists():
            raise CalibrationError(
                f"--calibrate {path}: no such file or folder; give a folder of clips or a dataset CSV"
            )
        try:
            if path.is_dir() and not any((path / n).is_file() for n in ("label.csv", "manifest.csv")):
                files = sorted(p for p in path.rglob("*") if p.suffix.lower() in MEDIA)
                clips = [Clip(p, _sidecar_text(p)) for p in files[:MAX_CLIPS]]
            else:
                clips = _dataset_clips(path, None)
        except OSError as exc:
            raise CalibrationError(
                f"--calibrate {path} is unreadable ({exc.strerror}); check its permissions"
            ) from exc
        if not clips:
            raise CalibrationError(
                f"--calibrate {path} holds no media files or dataset rows; "
                f"give a folder of clips ({', '.join(sorted(MEDIA))}) or a CSV"
            )
        return clips, f"{len(clips)} clips from {path}"
    if head is not None:
        metrics = Path(head).resolve().parent / "metrics.json"
        if metrics.is_file():
            try:
                dataset = json.loads(metrics.read_text(encoding="utf-8")).get("dataset")
            except (OSError, json.JSONDecodeError):
                dataset = None
            if dataset and Path(dataset).exists():
                clips = _dataset_clips(Path(dataset))
                if clips:
                    return clips, f"{len(clips)} training clips of {dataset} (from {metrics})"
    return None, f"synthetic default ({SYNTHETIC_SEEDS} seeds of the validation inputs)"


def clip_feeds(
    card: Any,
    clips: Sequence[Clip],
    input_names: Sequence[str],
    tokenizer_json: str | None,
    face_detector: Any | None,
) -> list[Feeds]:
    """The encoder's inputs for each clip, made by the runtime's own decoding and preprocessing
    (clips without this modality are skipped)."""
    from msa_runtime import media
    from msa_runtime.preprocess import FaceTrack, TextEncoder, audio_batch, normalize_images, vision_squares

    mod = card.modality
    out: list[Feeds] = []
    text = TextEncoder("calibration", card.prep, json_text=tokenizer_json) if mod == "text" else None
    for clip in clips:
        if mod == "text":
            if clip.text.strip() and text is not None:
                out.append(dict(zip(input_names, text(clip.text))))
            continue
        if clip.media is None:
            continue
        try:
            decoded = media.decode(
                clip.media,
                fps=card.prep.fps if mod == "vision" else None,
                sample_rate=card.prep.sample_rate if mod == "audio" else None,
                start=clip.start,
                end=clip.end,
            )
        except MsaError:
            continue  # a clip that does not decode is skipped, as in training
        if mod == "audio" and decoded.audio.size:
            out.append({input_names[0]: audio_batch(decoded.audio, card.prep)})
        elif mod == "vision" and len(decoded.frames):
            squares, _ = vision_squares(decoded.frames, card.prep, face_detector, FaceTrack())
            out.append({input_names[0]: normalize_images(squares, card.prep)})
    return out


def quantize_openvino(
    src: Path,
    dst: Path,
    feeds: Sequence[Feeds],
    keep_fp32: Sequence[str] = (),
    progress: Callable[[str], None] = lambda m: None,
    quantize_convs: bool = False,
) -> Path:
    """NNCF static int8 (QDQ) of the fp32 ONNX file ``src``, calibrated on ``feeds``.
    Convolutions stay unquantized unless ``quantize_convs`` (see :data:`PLACEMENTS`)."""
    missing = ready()
    if missing:
        raise ExportError(f"cannot make the ov-int8 file: {missing}")
    import logging

    import nncf

    if not feeds:
        raise CalibrationError(f"no calibration inputs for {src.name}")
    model = onnx.load(str(src))
    ignored = excluded_nodes(model, keep_fp32)
    if not quantize_convs:
        ignored += [n.name for n in model.graph.node if n.op_type == "Conv"]
    for name in ("nncf", "torch.utils.cpp_extension"):  # NNCF imports torch when it is there
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with quiet():
            quantized = nncf.quantize(
                model,
                nncf.Dataset(list(feeds)),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(feeds),
                ignored_scope=nncf.IgnoredScope(names=ignored, validate=False) if ignored else None,
            )
    except Exception as exc:  # NNCF raises many kinds of errors; report which file
        raise ExportError(
            f"NNCF could not quantize {src.name}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}"
        ) from exc
    onnx.save_model(quantized, str(dst))
    progress(
        f"{dst.name}: {sum(n.op_type == 'QuantizeLinear' for n in quantized.graph.node)} "
        f"quantize nodes, {len(ignored)} nodes kept fp32"
    )
    return dst


def synthetic_feeds(spec: Any, card: Any, config: dict[str, Any]) -> list[Feeds]:
    """The documented synthetic default: the validation lengths, :data:`SYNTHETIC_SEEDS` seeded
    random inputs each (seeds other than the parity gate's own)."""
    out = []
    for n in spec.lengths(card, config):
        for seed in range(SYNTHETIC_SEEDS):
            x = spec.make_inputs(card, config, n, seed=1000 + seed)
            out.append({name: t.numpy() for name, t in zip(spec.input_names, x)})
    return out


#: The ov-int8 placements tried in turn until one passes the parity gate. First convolutions
#: unquantized: OpenVINO runs a QDQ Conv in f32 and a plain one in bf16 on AMX (CLIP's patch
#: embedding 20.5 vs 6.5 ms, WavLM's grouped positional conv 14 vs 2 ms; and a WavLM Base+
#: front end in int8 misses the gate). Then NNCF's default, convolutions quantized (so run in
#: f32): a small model's group-norm front end can lose too much in bf16 (the tiny preset's).
PLACEMENTS = (("convolutions unquantized", False), ("convolutions quantized", True))


def openvino_files(
    mod: str,
    fp32: Path,
    tmp: Path,
    feeds: Sequence[Feeds],
    output: str,
    validation: Sequence[tuple[Feeds, np.ndarray, int]],
    keep_fp32: Sequence[str],
    progress: Callable[[str], None],
) -> tuple[list[str], dict[str, list[np.ndarray]], list[Any]]:
    """Make ``<mod>.ov-int8.onnx`` next to ``fp32`` and check it, and the fp32 file, through the
    OpenVINO route ``openvino`` takes on this machine against PyTorch (``validation``: feeds,
    reference, length).

    Returns the precisions OpenVINO may run for this encoder (those that passed, ov-int8 first),
    their features per validation input, and the checks. A failing ov-int8 file is deleted (the
    pack then runs fp32 on OpenVINO for this encoder); nothing here fails the export."""
    from msa_export.gate.checks import compare
    from msa_runtime.engine.sessions import make_session

    dst = tmp / f"{mod}.ov-int8.onnx"
    ok: list[str] = []
    feats: dict[str, list[np.ndarray]] = {}
    checks: list[Any] = []

    def check(precision: str, path: Path) -> list[Any]:
        progress(f"{mod}: validating {path.name} through OpenVINO")
        session = make_session(path, "openvino")
        outs = [np.asarray(session.run(None, x)[0]) for x, _ref, _n in validation]
        own = [
            compare(path.name, precision, output, n, got, ref, provider="openvino")
            for got, (_x, ref, n) in zip(outs, validation)
        ]
        if all(c.passed() for c in own):
            ok.append(precision)
            feats[precision] = outs
        else:
            worst = min(own, key=lambda c: c.cosine)
            progress(f"{mod}: {path.name} on OpenVINO fails the parity gate ({worst.describe()})")
        return own

    tried: list[Any] = []
    for placement, convs in PLACEMENTS:
        if convs and not any(n.op_type == "Conv" for n in onnx.load(str(fp32)).graph.node):
            break  # the placements differ only in convolutions (read only when the first failed)
        progress(
            f"{mod}: quantizing for OpenVINO (NNCF static int8, {placement}, {len(feeds)} calibration inputs)"
        )
        quantize_openvino(fp32, dst, feeds, keep_fp32, progress, quantize_convs=convs)
        tried = check("ov-int8", dst)  # the report keeps the last placement's checks
        if "ov-int8" in ok:
            break
    checks += tried
    if "ov-int8" not in ok:
        progress(f"{mod}: {dst.name} dropped (no placement passed the gate)")
    checks += check("fp32", fp32)
    if "fp32" not in ok:
        progress(f"{mod}: OpenVINO will not run {fp32.name}")
    if "ov-int8" not in ok:
        dst.unlink(missing_ok=True)
    return ok, feats, checks


def calibration(
    tmp: Path,
    face: FaceDetectorEntry | None,
    calibrate: str | Path | None,
    head: str | Path | None,
    tokenizer_json: Callable[[Any], str],
    progress: Callable[[str], None],
) -> Calibrate:
    """The calibration inputs of each encoder for its ov-int8 file (see msa_export.convert.openvino)."""
    clips, where = calibration_clips(calibrate, head)
    progress(f"calibration for the OpenVINO int8 files: {where}")

    def feeds(spec: Any, card: Any, config: dict[str, Any]) -> list[Feeds]:
        if clips is None:
            return synthetic_feeds(spec, card, config)
        detector = None
        if card.modality == "vision" and face is not None:
            from msa_runtime.face.cascade import FaceDetector

            detector = FaceDetector.from_folder(tmp, face, providers=["CPUExecutionProvider"])
        tok = tokenizer_json(card) if card.modality == "text" else None
        got = clip_feeds(card, clips, spec.input_names, tok, detector)
        if not got:
            progress(
                f"{card.modality}: the calibration clips have no {card.modality}: "
                "synthetic inputs used instead"
            )
            return synthetic_feeds(spec, card, config)
        return got

    return feeds
