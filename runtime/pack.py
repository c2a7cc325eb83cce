"""The pack: the contract between ``msa-export`` (writes it) and the runtime (reads it).

A pack is a folder::

    manifest.json          format version, encoders, preprocessing, head, sha256 of every file
    tokenizer.json         when the pack has a text encoder
    text.int8.onnx ...     one ONNX file per encoder and precision: int8 (dynamic, for ONNX
                           Runtime's CPU EP), fp16 (CUDA), fp32, ov-int8 (static QDQ by NNCF,
                           for the OpenVINO EP)
    head.onnx              the fusion head (fp32; it is tiny)
    face_pnet.onnx ...     the MTCNN face detector (P-, R-, O-net), when frames are face-cropped

Reading checks the format version, that every file named stays inside the folder, and (by
default) the sha256 of every file. Nothing is ever unpickled.

Each encoder records which of its files each execution provider may run (``providers``: the
files that passed the parity gate through that provider, the default first). Packs without it
(older exports) get the defaults of :data:`PROVIDER_ORDER`.
"""

from __future__ import annotations

import errno
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, overload

from msa_runtime.errors import PackError
from msa_runtime.face import (
    DEFAULT_FACTOR,
    DEFAULT_MIN_FACE_SIZE,
    DEFAULT_THRESHOLDS,
    FACE_FILES,
    PIXEL_MEAN,
    PIXEL_SCALE,
    FaceNms,
)
from msa_runtime.face_track import DEFAULT_MAX_SIDE, DEFAULT_REDETECT

FORMAT = "msa-edge-pack"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODALITIES = ("text", "audio", "vision")
PRECISIONS = ("int8", "fp16", "fp32", "ov-int8")
# per provider (short name), the precisions it runs by preference: CPU EP dynamic int8, CUDA
# fp16, OpenVINO its own static int8 file, else fp32 (which OpenVINO runs in bf16 where the CPU
# has AMX or AVX512-BF16)
PROVIDER_ORDER: dict[str, tuple[str, ...]] = {
    "cpu": ("int8", "fp32", "fp16"),
    "cuda": ("fp16", "fp32", "int8"),
    "openvino": ("ov-int8", "fp32"),
}


def default_providers(files: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Which of ``files`` (precision -> file) each provider runs, by preference."""
    out = {}
    for provider, order in PROVIDER_ORDER.items():
        ok = tuple(p for p in order if p in files)
        if ok:
            out[provider] = ok
    return out


@dataclass(frozen=True)
class TextPrep:
    """Tokenisation: ``tokenizer`` is a file in the pack (Hugging Face tokenizers JSON)."""

    tokenizer: str = "tokenizer.json"
    max_tokens: int = 128

    def __post_init__(self) -> None:
        if self.max_tokens < 2:
            raise ValueError(f"text.max_tokens must be >= 2, got {self.max_tokens}")


@dataclass(frozen=True)
class AudioPrep:
    """Audio: mono at ``sample_rate``; ``normalize`` = zero mean, unit variance per clip."""

    sample_rate: int = 16000
    normalize: bool = True
    min_seconds: float = 0.5

    def __post_init__(self) -> None:
        if self.sample_rate < 1000:
            raise ValueError(f"audio.sample_rate must be >= 1000, got {self.sample_rate}")


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
    its last stage in between (1: detect every frame; see :mod:`msa_runtime.face_track`)."""

    fps: float = 3.0
    image_size: int = 224
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    crop: str = "center"
    face_max_side: int = DEFAULT_MAX_SIDE
    face_redetect: int = DEFAULT_REDETECT

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"vision.fps must be > 0, got {self.fps}")
        if self.image_size < 8:
            raise ValueError(f"vision.image_size must be >= 8, got {self.image_size}")
        if self.crop not in ("center", "face"):
            raise ValueError(f"vision.crop must be 'center' or 'face', got {self.crop!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("vision.mean and vision.std need 3 values each, std > 0")
        if self.face_max_side != 0 and self.face_max_side < 48:
            raise ValueError(f"vision.face_max_side must be 0 (off) or >= 48, got {self.face_max_side}")
        if self.face_redetect < 1:
            raise ValueError(
                f"vision.face_redetect must be >= 1 (1: detect every frame), got {self.face_redetect}"
            )


Prep = TextPrep | AudioPrep | VisionPrep
PREP_TYPES: dict[str, type[Prep]] = {"text": TextPrep, "audio": AudioPrep, "vision": VisionPrep}
"""The one preprocessing schema per modality: a preset card's ``[MODALITY.preprocess]`` table and
a manifest's ``encoders.MODALITY.preprocess`` object are both read by :func:`prep_from_dict` and
written by :func:`prep_to_dict`."""


@overload
def prep_from_dict(modality: Literal["text"], data: Mapping[str, Any]) -> TextPrep: ...
@overload
def prep_from_dict(modality: Literal["audio"], data: Mapping[str, Any]) -> AudioPrep: ...
@overload
def prep_from_dict(modality: Literal["vision"], data: Mapping[str, Any]) -> VisionPrep: ...
@overload
def prep_from_dict(modality: str, data: Mapping[str, Any]) -> Prep: ...
def prep_from_dict(modality: str, data: Mapping[str, Any]) -> Prep:
    """Build the preprocessing dataclass of ``modality`` from a manifest or preset table."""
    cls: Any = PREP_TYPES[modality]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {modality} preprocessing keys {unknown}; valid: {sorted(known)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


def prep_to_dict(prep: Prep) -> dict[str, Any]:
    """The JSON/TOML table of a preprocessing dataclass (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(prep).items()}


def _typed(entry: EncoderEntry, cls: type[Prep]) -> Any:
    if not isinstance(entry.prep, cls):
        raise PackError(
            f"the {entry.modality} encoder's preprocessing is a "
            f"{type(entry.prep).__name__}, not a {cls.__name__}; rebuild the pack"
        )
    return entry.prep


@dataclass(frozen=True, eq=False)
class FaceDetectorEntry:
    """The face detector of a pack (``face_detector`` in the manifest), as
    :func:`msa_export.face.export_face_detector` writes it and
    :class:`msa_runtime.face.FaceDetector` runs it: stage files, the cascade's parameters (pyramid,
    thresholds, NMS overlaps, pixel scaling), and the export's source, validation and versions."""

    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    kind: str = "mtcnn"
    min_face_size: float = DEFAULT_MIN_FACE_SIZE
    factor: float = DEFAULT_FACTOR
    thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS
    pixel_mean: float = PIXEL_MEAN
    pixel_scale: float = PIXEL_SCALE
    nms: FaceNms = field(default_factory=FaceNms)
    source: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind != "mtcnn":
            raise ValueError(f"face_detector.kind {self.kind!r} is not supported (mtcnn)")
        if len(self.thresholds) != 3:
            raise ValueError(f"face_detector.thresholds needs 3 values, got {self.thresholds}")
        if not isinstance(self.stages, dict):
            raise TypeError("face_detector.stages must be an object")

    def files(self) -> dict[str, str]:
        """The file of each stage (``pnet``, ``rnet``, ``onet``), standard names by default."""
        out = {}
        for stage, default in FACE_FILES.items():
            entry = self.stages.get(stage)
            out[stage] = str(entry.get("file", default)) if isinstance(entry, dict) else default
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaceDetectorEntry:
        if not isinstance(data, Mapping):
            raise TypeError(f"face_detector must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown face_detector keys {unknown}; valid: {sorted(known)}")
        values = dict(data)
        if "thresholds" in values:
            values["thresholds"] = tuple(float(x) for x in values["thresholds"])
        if "nms" in values:
            values["nms"] = FaceNms(**values["nms"])
        for key in ("factor", "pixel_mean", "pixel_scale"):
            if key in values:
                values[key] = float(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's JSON object."""
        out = asdict(self)
        out["thresholds"] = list(self.thresholds)
        return out

    def __getitem__(self, key: str) -> Any:
        """Read like the manifest's JSON object (``entry["thresholds"]``), as before it was typed."""
        return self.to_dict()[key]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FaceDetectorEntry):
            other = other.to_dict()
        return isinstance(other, Mapping) and self.to_dict() == dict(other)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class EncoderEntry:
    """One encoder of a pack: where it came from, where it was cut, and its files."""

    modality: str
    kind: str
    source: str
    layer: int
    num_layers: int
    hidden_size: int
    prep: Prep
    files: dict[str, str]
    frame_stride: int = 1
    layer_weights: tuple[float, ...] | None = None  # "weighted" mode instead of one layer
    providers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Provider short name (cpu, cuda, openvino) -> the precisions of ``files`` it may run,
    the default first; empty means :func:`default_providers`."""

    def provider_precisions(self, provider: str) -> tuple[str, ...]:
        """The precisions ``provider`` (short name) may run for this encoder, default first."""
        table = self.providers or default_providers(self.files)
        return tuple(p for p in table.get(provider, ()) if p in self.files)


@dataclass(frozen=True)
class HeadEntry:
    kind: str
    file: str
    modalities: tuple[str, ...]
    trained: bool
    gates: bool
    checkpoint_sha256: str | None = None


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a pack."""

    name: str
    encoders: dict[str, EncoderEntry]
    head: HeadEntry
    files: dict[str, dict[str, Any]]
    tools: dict[str, str] = field(default_factory=dict)
    validation: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    face_detector: FaceDetectorEntry | None = None
    """The face detector (:func:`msa_export.face.export_face_detector`): stage files, cascade
    parameters, validation; present when the vision encoder expects face crops."""

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.encoders)

    def text_prep(self) -> TextPrep:
        """The text encoder's preprocessing (:class:`PackError` if the pack has none)."""
        return self._prep("text", TextPrep)

    def audio_prep(self) -> AudioPrep:
        return self._prep("audio", AudioPrep)

    def vision_prep(self) -> VisionPrep:
        return self._prep("vision", VisionPrep)

    def _prep(self, modality: str, cls: type[Prep]) -> Any:
        if modality not in self.encoders:
            raise PackError(
                f"pack {self.name} has no {modality} encoder; it has {', '.join(self.modalities)}"
            )
        return _typed(self.encoders[modality], cls)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inside(root: Path, name: str) -> Path:
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()):
        raise PackError(f"pack {root}: file {name!r} points outside the pack folder; refusing it")
    return path


def manifest_to_dict(m: Manifest) -> dict[str, Any]:
    """Serialise a manifest (the writer side of :func:`load_manifest`)."""
    encoders = {}
    for mod, e in m.encoders.items():
        prep = prep_to_dict(e.prep)
        encoders[mod] = {
            "kind": e.kind,
            "source": e.source,
            "layer": e.layer,
            "num_layers": e.num_layers,
            "hidden_size": e.hidden_size,
            "frame_stride": e.frame_stride,
            "preprocess": prep,
            "files": e.files,
        }
        if e.layer_weights is not None:
            encoders[mod]["layer_weights"] = list(e.layer_weights)
        if e.providers:
            encoders[mod]["providers"] = {k: list(v) for k, v in e.providers.items()}
    head = dict(m.head.__dict__)
    head["modalities"] = list(m.head.modalities)
    out = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": m.name,
        "encoders": encoders,
        "head": head,
        "files": m.files,
        "tools": m.tools,
        "validation": m.validation,
        **m.extras,
    }
    if m.face_detector is not None:
        out["face_detector"] = m.face_detector.to_dict()
    return out


def _parse(data: dict[str, Any], where: str) -> Manifest:
    encoders = {}
    for mod, e in data["encoders"].items():
        if mod not in MODALITIES:
            raise PackError(f"{where}: unknown modality {mod!r}; valid: {', '.join(MODALITIES)}")
        encoders[mod] = EncoderEntry(
            modality=mod,
            kind=e["kind"],
            source=e["source"],
            layer=int(e["layer"]),
            num_layers=int(e["num_layers"]),
            hidden_size=int(e["hidden_size"]),
            frame_stride=int(e.get("frame_stride", 1)),
            prep=prep_from_dict(mod, e["preprocess"]),
            files=dict(e["files"]),
            layer_weights=tuple(e["layer_weights"]) if "layer_weights" in e else None,
            providers={str(k): tuple(v) for k, v in e.get("providers", {}).items()},
        )
        unknown = {p for v in encoders[mod].providers.values() for p in v} - set(e["files"])
        if unknown:
            raise ValueError(f"encoder {mod}: providers name precisions without files: {sorted(unknown)}")
    h = data["head"]
    head = HeadEntry(
        kind=h["kind"],
        file=h["file"],
        modalities=tuple(h["modalities"]),
        trained=bool(h["trained"]),
        gates=bool(h["gates"]),
        checkpoint_sha256=h.get("checkpoint_sha256"),
    )
    raw_face = data.get("face_detector")
    face = FaceDetectorEntry.from_dict(raw_face) if raw_face is not None else None
    known = {
        "format",
        "format_version",
        "name",
        "encoders",
        "head",
        "files",
        "tools",
        "validation",
        "face_detector",
    }
    return Manifest(
        name=data["name"],
        encoders=encoders,
        head=head,
        files=dict(data["files"]),
        tools=dict(data.get("tools", {})),
        validation=list(data.get("validation", [])),
        extras={k: v for k, v in data.items() if k not in known},
        face_detector=face,
    )


def face_detector_files(manifest: Manifest) -> list[str]:
    """The file names of the pack's face detector stages (empty when it has none)."""
    if manifest.face_detector is None:
        return []
    return list(manifest.face_detector.files().values())


def _check_folder(root: Path) -> None:
    """``root`` must be a folder: say what it is otherwise (missing, a file, a FIFO, a symlink
    loop, unreadable). Only ``stat`` is used, so a FIFO is never opened."""
    import stat

    try:
        mode = root.stat().st_mode
    except FileNotFoundError:
        kind = "a broken symlink" if root.is_symlink() else "the folder does not exist"
        raise PackError(f"no pack at {root}: {kind} (build one with msa-export)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PackError(f"{root} is a symlink loop, not a pack folder: fix the link") from None
        raise PackError(f"{root} cannot be read ({exc.strerror or exc}): check the path") from None
    if not stat.S_ISDIR(mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "a file"
            if stat.S_ISREG(mode)
            else "a socket or device"
        )
        raise PackError(f"{root} is {kind}, not a pack folder: give the folder msa-export wrote")


def load_manifest(folder: str | Path, *, verify: bool = True) -> Manifest:
    """Read and check ``folder/manifest.json``; with ``verify`` also every file's sha256."""
    root = Path(folder)
    _check_folder(root)
    path = root / MANIFEST
    if not path.is_file():
        raise PackError(f"{root} is not a pack: it has no {MANIFEST} (build one with msa-export)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackError(f"{path} is not valid JSON ({exc}); rebuild the pack") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PackError(f"{path} is not an msa-edge pack manifest")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PackError(
            f"pack {root} has format version {version}, this runtime reads up to "
            f"{FORMAT_VERSION}: upgrade msa-edge (pip install -U msa-edge)"
        )
    try:
        manifest = _parse(data, str(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise PackError(f"{path} is malformed ({type(exc).__name__}: {exc}); rebuild the pack") from exc
    paths = {name: _inside(root, name) for name in manifest.files}
    for name, file in paths.items():
        if not file.is_file():
            raise PackError(f"pack {root} is incomplete: {name} is missing; rebuild or re-copy it")
    for name, meta in manifest.files.items():
        if verify and sha256_file(paths[name]) != meta.get("sha256"):
            raise PackError(
                f"pack {root}: {name} does not match its sha256 in the manifest (tampered or "
                "corrupted); rebuild or re-copy the pack"
            )
    for entry in manifest.encoders.values():
        for fname in entry.files.values():
            if fname not in manifest.files:
                raise PackError(f"pack {root}: {fname} is not listed with a sha256 in the manifest")
    if manifest.head.file not in manifest.files:
        raise PackError(f"pack {root}: head file {manifest.head.file} has no sha256 in the manifest")
    for fname in face_detector_files(manifest):
        if fname not in manifest.files:
            raise PackError(
                f"pack {root}: face detector file {fname} is not listed with a sha256 in the manifest"
            )
    return manifest
