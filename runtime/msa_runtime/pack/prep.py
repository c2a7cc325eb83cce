"""Preprocessing parameters of a pack's encoders: the one schema of a manifest's
``encoders.MODALITY.preprocess`` object and a preset card's ``[MODALITY.preprocess]`` table, with
the type and range of every value (:data:`PREP_LIMITS`). Re-exported by :mod:`msa_runtime.pack`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, overload

from msa_runtime.pack import schema as sc

DEFAULT_REDETECT = 15
"""Full detection every this many frames (at 3 fps: every 5 s, once per 5 s clip); 1 detects every
frame. Packs record theirs (``vision.preprocess.face_redetect``): packs exported before 15 became
the default keep the 10 they were made with."""
DEFAULT_MAX_SIDE = 640
"""Frames whose longer side exceeds this are shrunk to it for detection (0: never)."""


@dataclass(frozen=True)
class TextPrep:
    """Tokenisation: ``tokenizer`` is a file in the pack (Hugging Face tokenizers JSON)."""

    tokenizer: str = "tokenizer.json"
    max_tokens: int = 128

    def __post_init__(self) -> None:
        _check_prep(self, "text")


@dataclass(frozen=True)
class AudioPrep:
    """Audio: mono at ``sample_rate``; ``normalize`` = zero mean, unit variance per clip."""

    sample_rate: int = 16000
    normalize: bool = True
    min_seconds: float = 0.5

    def __post_init__(self) -> None:
        _check_prep(self, "audio")


@dataclass(frozen=True)
class VisionPrep:
    """Frames: sampled at ``fps``, cropped (``center`` or ``face``), resized to ``image_size``,
    scaled to [0, 1] and normalised with ``mean`` and ``std``.

    ``center``: the short side is resized to ``image_size`` and the centre square kept. ``face``:
    the pack's face detector finds the speaker's face, a 256 px square crop of it (no margin, as
    in Ando et al.'s code) then goes through the same resize; frames without a face fall back to
    the centre crop (see :func:`msa_runtime.preprocess.vision_squares`).

    Face crops only: ``face_max_side`` shrinks frames whose longer side exceeds it before
    detection (0: never; boxes are scaled back and the crop is cut from the full frame);
    ``face_redetect`` runs the full detector every that many frames and follows the face with
    its last stage in between (1: detect every frame; see :mod:`msa_runtime.face.track`)."""

    fps: float = 3.0
    image_size: int = 224
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    crop: str = "center"
    face_max_side: int = DEFAULT_MAX_SIDE
    face_redetect: int = DEFAULT_REDETECT

    def __post_init__(self) -> None:
        _check_prep(self, "vision")


Prep = TextPrep | AudioPrep | VisionPrep
PREP_TYPES: dict[str, type[Prep]] = {"text": TextPrep, "audio": AudioPrep, "vision": VisionPrep}
"""The one preprocessing schema per modality: a preset card's ``[MODALITY.preprocess]`` table and
a manifest's ``encoders.MODALITY.preprocess`` object are both read by :func:`prep_from_dict` and
written by :func:`prep_to_dict`."""

PREP_LIMITS: dict[str, tuple[float, float]] = {
    "text.max_tokens": (2, 8192),
    "audio.sample_rate": (1000, 384_000),
    "audio.min_seconds": (0.0, 60.0),
    "vision.fps": (0.0, 60.0),  # (0, 60]
    "vision.image_size": (8, 2048),
    "vision.face_max_side": (48, 16384),  # or 0 (off)
    "vision.face_redetect": (1, 100_000),
}
"""The range of every size-bearing preprocessing number (a manifest or a card outside it is
refused before anything is allocated)."""


def _check_prep(prep: Prep, modality: str) -> None:
    """Types and ranges of a preprocessing dataclass (:class:`SchemaError`, a ValueError)."""
    lim = PREP_LIMITS
    if isinstance(prep, TextPrep):
        sc.file_name(prep.tokenizer, "text.tokenizer")
        sc.integer(prep.max_tokens, "text.max_tokens", *map(int, lim["text.max_tokens"]))
    elif isinstance(prep, AudioPrep):
        sc.integer(prep.sample_rate, "audio.sample_rate", *map(int, lim["audio.sample_rate"]))
        sc.boolean(prep.normalize, "audio.normalize")
        sc.number(prep.min_seconds, "audio.min_seconds", *lim["audio.min_seconds"])
    else:
        sc.number(prep.fps, "vision.fps", *lim["vision.fps"], above=True)
        sc.integer(prep.image_size, "vision.image_size", *map(int, lim["vision.image_size"]))
        for key in ("mean", "std"):
            values = sc.array(getattr(prep, key), f"vision.{key}")
            if len(values) != 3:
                raise sc.SchemaError(f"vision.mean and vision.std need 3 values each, got {len(values)}")
            for i, v in enumerate(values):
                sc.number(v, f"vision.{key}[{i}]", 0.0 if key == "std" else -10.0, 10.0, above=key == "std")
        sc.choice(prep.crop, "vision.crop", ("center", "face"))
        if prep.face_max_side != 0:
            lo, hi = map(int, lim["vision.face_max_side"])
            if isinstance(prep.face_max_side, bool) or not isinstance(prep.face_max_side, int):
                sc.integer(prep.face_max_side, "vision.face_max_side", lo, hi)
            if not lo <= prep.face_max_side <= hi:
                raise sc.SchemaError(
                    f"vision.face_max_side must be 0 (off) or in [{lo}, {hi}], got {prep.face_max_side}"
                )
        lo, hi = map(int, lim["vision.face_redetect"])
        if isinstance(prep.face_redetect, int) and not isinstance(prep.face_redetect, bool):
            if prep.face_redetect < lo:
                raise sc.SchemaError(
                    f"vision.face_redetect must be >= 1 (1: detect every frame), got {prep.face_redetect}"
                )
        sc.integer(prep.face_redetect, "vision.face_redetect", lo, hi)


@overload
def prep_from_dict(modality: Literal["text"], data: Mapping[str, Any]) -> TextPrep: ...
@overload
def prep_from_dict(modality: Literal["audio"], data: Mapping[str, Any]) -> AudioPrep: ...
@overload
def prep_from_dict(modality: Literal["vision"], data: Mapping[str, Any]) -> VisionPrep: ...
@overload
def prep_from_dict(modality: str, data: Mapping[str, Any]) -> Prep: ...
def prep_from_dict(modality: str, data: Mapping[str, Any]) -> Prep:
    """Build the preprocessing dataclass of ``modality`` from a manifest or preset table
    (unknown keys, wrong types and out-of-range numbers raise a ValueError naming the key)."""
    cls: Any = PREP_TYPES[modality]
    data = sc.obj(data, f"{modality} preprocessing")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {modality} preprocessing keys {unknown}; valid: {sorted(known)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


def prep_to_dict(prep: Prep) -> dict[str, Any]:
    """The JSON/TOML table of a preprocessing dataclass (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(prep).items()}
