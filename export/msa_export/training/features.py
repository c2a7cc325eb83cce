"""Feature cache: every hidden state of each encoder, extracted once per clip.

Clips go through the runtime's own decoding and preprocessing (``msa_runtime.media.decoding`` and
``msa_runtime.preprocess``), then through the full-depth torch encoder with all hidden states.
Each clip's features are one fp16 ``.npy`` file of shape ``[layers + 1, T, D]`` (index 0 is the
embedding output, index ``k + 1`` the output of block ``k``), in a folder keyed by a hash of the
encoder and its preprocessing; each file's name carries a hash of what went into that item
(:func:`item_key`: the text for the text encoder, the media file's path, size and modification
time and the time range for audio and frames), so a second label file with the same ids but other
texts, or a re-encoded media file, gets its own features instead of the first one's. Files are
written atomically (temp file, then rename), so an interrupted run resumes where it stopped.

A preset whose frames are face-cropped (``vision.preprocess.crop = "face"``) crops them with the
runtime's own function (:func:`msa_runtime.preprocess.vision_squares`) and the same ONNX face
detector a pack carries, exported once into ``<cache>/face-mtcnn/``: training and serving see the
same pixels.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from msa_export.data.datasets import Sample
from msa_export.errors import DatasetError
from msa_export.models import encoders as enc
from msa_export.presets.registry import EncoderCard, Preset
from msa_runtime import media
from msa_runtime.atomic import atomic_write, atomic_write_bytes
from msa_runtime.errors import MsaError
from msa_runtime.face.cascade import DEFAULT_FACTOR, DEFAULT_MIN_FACE_SIZE, DEFAULT_THRESHOLDS, FaceDetector
from msa_runtime.pack import AudioPrep, TextPrep, VisionPrep, prep_to_dict
from msa_runtime.preprocess import (
    FACE_CROP_SIZE,
    FACE_MARGIN,
    FaceTrack,
    TextEncoder,
    audio_batch,
    normalize_images,
    vision_squares,
)

# Part of every cache key: a cache written in another layout (items are keyed by item_key, what
# went into them) gets another folder, so it is never read as this one.
CACHE_VERSION = 2
FACE_FOLDER = "face-mtcnn"
"""Sub-folder of the cache holding the ONNX face detector used for face-cropped presets."""
Progress = Callable[[str], None]


def cache_key(card: EncoderCard) -> str:
    """A short hash of everything that changes the features: encoder, weights, preprocessing
    (the crop mode among it) and, for face crops, the detector's parameters."""
    data = {
        "v": CACHE_VERSION,
        "kind": card.kind,
        "source": card.source,
        "seed": card.seed if card.source == "random" else None,
        "config": card.config if card.source == "random" else None,
        "tokenizer": card.tokenizer,
        "stride": card.frame_stride,
        "prep": prep_to_dict(card.prep),
    }
    if isinstance(card.prep, VisionPrep) and card.prep.crop == "face":
        data["face"] = {
            "detector": "mtcnn",
            "min_face_size": DEFAULT_MIN_FACE_SIZE,
            "factor": DEFAULT_FACTOR,
            "thresholds": list(DEFAULT_THRESHOLDS),
            "crop_size": FACE_CROP_SIZE,
            "margin": FACE_MARGIN,
        }
    blob = json.dumps(data, sort_keys=True)
    return f"{card.modality}-{card.kind}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def training_face_detector(folder: str | Path, progress: Progress = lambda m: None) -> FaceDetector:
    """The face detector of face-cropped presets, as ONNX in ``folder`` (exported on first use).

    The same export a pack gets (:func:`msa_export.models.face.export_face_detector`), run by the same
    numpy + ONNX Runtime cascade on CPU, so the feature cache crops what the runtime crops.
    """
    root = Path(folder)
    entry_file = root / "face_detector.json"
    if not entry_file.is_file():
        from msa_export.models.face import export_face_detector

        progress(f"features: exporting the MTCNN face detector to ONNX into {root}")
        tmp = root.with_name(f".{root.name}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            exported = export_face_detector(tmp)
            (tmp / "face_detector.json").write_text(
                json.dumps(exported.to_dict(), indent=1), encoding="utf-8"
            )
            shutil.rmtree(root, ignore_errors=True)
            tmp.rename(root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    entry = json.loads(entry_file.read_text(encoding="utf-8"))
    return FaceDetector.from_folder(root, entry, providers=["CPUExecutionProvider"])


def media_identity(path: Path | None) -> dict[str, object] | None:
    """What identifies a media file for the cache: its resolved path, size and modification
    time (ns). A file replaced or edited in place gets a new identity, so new features."""
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return {"path": str(path), "missing": True}
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def item_key(sample: Sample, modality: str) -> str:
    """A hash of everything that went into one cached item besides the encoder and its
    preprocessing (those key the folder, :func:`cache_key`): the text for the text encoder; the
    media file's identity (:func:`media_identity`) and the time range for audio and frames."""
    data: dict[str, object] = {"id": sample.id, "modality": modality}
    if modality == "text":
        data["text"] = sample.text
    else:
        data.update(media=media_identity(sample.media), start=sample.start, end=sample.end)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:20]


def _file_name(sample: Sample, modality: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", sample.id)[:80]
    return f"{safe}-{item_key(sample, modality)}.npy"


@dataclass
class CacheReport:
    """What extraction did: per modality the cache folder, and the clips that failed."""

    folders: dict[str, Path] = field(default_factory=dict)
    extracted: int = 0
    reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    face_frames: int = 0  # face-cropped presets: frames extracted now ...
    face_fallbacks: int = 0  # ... and those without a face (centre crop used)


class _Extractor:
    """One torch encoder, full depth, run on runtime-preprocessed inputs.

    ``face_dir`` holds the face detector (:func:`training_face_detector`) for presets whose
    frames are face-cropped; ``frames`` and ``fallbacks`` count the frames seen and those without
    a face (centre crop used).
    """

    def __init__(
        self,
        card: EncoderCard,
        offline: bool | None,
        *,
        face_dir: Path | None = None,
        progress: Progress = lambda m: None,
    ) -> None:
        self.card = card
        self.model = enc.SPECS[card.kind].build(card, offline)
        self.layers = enc.num_blocks(self.model)
        self.text: TextEncoder | None = None
        self.detector: FaceDetector | None = None
        self.frames = self.fallbacks = 0
        if isinstance(card.prep, TextPrep):
            from msa_export.pack.encoder import tokenizer_json

            self.text = TextEncoder(
                card.tokenizer or card.source, card.prep, json_text=tokenizer_json(card, offline)
            )
        if isinstance(card.prep, VisionPrep) and card.prep.crop == "face":
            if face_dir is None:
                raise DatasetError("a face-cropped preset needs a folder for its face detector")
            self.detector = training_face_detector(face_dir, progress)

    @torch.no_grad()
    def __call__(self, sample: Sample, clip: media.Decoded | None) -> np.ndarray | None:
        """All hidden states ``[states, T, D]`` of this encoder for one clip (None: nothing to
        encode), from the runtime's own preprocessing of the clip."""
        inputs = self._inputs(sample, clip)
        if inputs is None:
            return None
        return enc.all_states(self.card, self.model, inputs).numpy()

    def inputs(self, sample: Sample, clip: media.Decoded | None) -> tuple[torch.Tensor, ...] | None:
        """The encoder's inputs for one clip, preprocessed as the runtime does (None: nothing)."""
        return self._inputs(sample, clip)

    def _inputs(self, sample: Sample, clip: media.Decoded | None) -> tuple[torch.Tensor, ...] | None:
        prep = self.card.prep
        if isinstance(prep, TextPrep):
            if not sample.text.strip() or self.text is None:
                return None
            ids, mask = self.text(sample.text)
            return torch.from_numpy(ids), torch.from_numpy(mask)
        if clip is None:
            return None
        if isinstance(prep, AudioPrep):
            if clip.audio.size == 0:
                return None
            return (torch.from_numpy(audio_batch(clip.audio, prep)),)
        if len(clip.frames) == 0:
            return None
        squares, found = vision_squares(clip.frames, prep, self.detector, FaceTrack())
        self.frames += len(squares)
        self.fallbacks += 0 if found is None else int(len(found) - found.sum())
        return (torch.from_numpy(normalize_images(squares, prep)),)


Extractor = _Extractor
"""One full-depth torch encoder on runtime-preprocessed clips (public name for fine-tuning's
state cache, :mod:`msa_export.training.states`)."""


def file_name(sample: Sample, modality: str) -> str:
    """The cache file name of ``sample``'s ``modality`` item (its id and :func:`item_key`)."""
    return _file_name(sample, modality)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, array.astype(np.float16)))


def _clean_tmp(folder: Path) -> None:
    """Remove the temporary files of interrupted runs (their process is gone)."""
    for tmp in folder.glob(".*.tmp-*"):
        match = re.search(r"\.tmp-(\d+)-\d+$", tmp.name)
        if match is None or _alive(int(match.group(1))):
            continue
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def extract_features(
    samples: Sequence[Sample],
    preset: Preset,
    cache_dir: str | Path,
    *,
    modalities: Sequence[str],
    offline: bool | None = None,
    progress: Progress = lambda m: None,
) -> CacheReport:
    """Fill the cache for ``samples`` (missing files only) and return where it is."""
    root = Path(cache_dir)
    report = CacheReport()
    extractors: dict[str, _Extractor] = {}
    todo: dict[str, set[str]] = {}
    for mod in modalities:
        card = preset.encoders[mod]
        folder = root / cache_key(card)
        folder.mkdir(parents=True, exist_ok=True)
        _clean_tmp(folder)
        about = json.dumps({"modality": mod, "kind": card.kind, "source": card.source}, indent=1).encode()
        atomic_write_bytes(folder / "encoder.json", about)
        report.folders[mod] = folder
        todo[mod] = {
            s.id
            for s in samples
            if not (folder / _file_name(s, mod)).exists()
            and not (folder / (_file_name(s, mod) + ".none")).exists()
        }
        report.reused += len(samples) - len(todo[mod])
    wanted = set().union(*todo.values())
    pending = [s for s in samples if s.id in wanted]
    if not pending:
        progress(f"features: all {len(samples)} clips cached in {root}")
        return report
    for mod in modalities:
        if todo[mod]:
            progress(f"features: loading {mod} encoder {preset.encoders[mod].source}")
            extractors[mod] = _Extractor(
                preset.encoders[mod], offline, face_dir=root / FACE_FOLDER, progress=progress
            )
    vprep, aprep = extractors.get("vision"), extractors.get("audio")
    fps = vprep.card.prep.fps if vprep and isinstance(vprep.card.prep, VisionPrep) else None
    rate = aprep.card.prep.sample_rate if aprep and isinstance(aprep.card.prep, AudioPrep) else None
    started = time.perf_counter()
    for i, sample in enumerate(pending, 1):
        clip = None
        try:
            if sample.media is not None and (fps or rate):
                clip = media.decode(
                    sample.media, fps=fps, sample_rate=rate, start=sample.start or 0.0, end=sample.end
                )
            for mod, ex in extractors.items():
                name = _file_name(sample, mod)
                if sample.id not in todo[mod]:
                    continue
                feats = ex(sample, clip)
                if feats is None:
                    atomic_write_bytes(report.folders[mod] / (name + ".none"), b"")
                else:
                    _atomic_save(report.folders[mod] / name, feats)
            report.extracted += 1
        except MsaError as exc:
            report.failed[sample.id] = str(exc)
        if i == len(pending) or i % max(1, len(pending) // 20) == 0:
            rate_s = (time.perf_counter() - started) / i
            progress(
                f"features: {i}/{len(pending)} clips, {rate_s:.2f} s/clip, "
                f"ETA {rate_s * (len(pending) - i):.0f} s"
                + (f", {len(report.failed)} failed" if report.failed else "")
            )
    vision = extractors.get("vision")
    if vision is not None and vision.detector is not None:
        report.face_frames, report.face_fallbacks = vision.frames, vision.fallbacks
        progress(
            f"features: face found in {vision.frames - vision.fallbacks} of "
            f"{vision.frames} frames (centre crop for the rest)"
        )
    return report


def has_features(folder: Path, sample: Sample, modality: str) -> bool:
    """Whether the cache ``folder`` holds ``sample``'s ``modality`` features (a clip without
    text, audio or video has none)."""
    return (folder / _file_name(sample, modality)).is_file()


def load_layer(
    folder: Path,
    samples: Sequence[Sample],
    layer: int | None,
    modality: str | None = None,
) -> tuple[list[np.ndarray | None], int]:
    """Per sample the features of one hidden state (``layer`` = block index; ``None`` = all
    states stacked), or None when the clip has none. Returns the list and the feature size.
    ``modality`` defaults to the one the folder's ``encoder.json`` names."""
    if modality is None:
        modality = str(json.loads((folder / "encoder.json").read_text(encoding="utf-8"))["modality"])
    out: list[np.ndarray | None] = []
    dim = 0
    for s in samples:
        path = folder / _file_name(s, modality)
        if not path.exists():
            out.append(None)
            continue
        arr = np.load(path, mmap_mode="r")
        x = np.asarray(arr if layer is None else arr[layer + 1], dtype=np.float32)
        dim = x.shape[-1]
        out.append(x)
    return out, dim


def num_states(folder: Path) -> int:
    """How many hidden states (blocks + 1) the cached encoder has."""
    for path in folder.glob("*.npy"):
        return int(np.load(path, mmap_mode="r").shape[0])
    raise DatasetError(f"feature cache {folder} is empty: no clip gave features for this encoder")


def eprint(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
