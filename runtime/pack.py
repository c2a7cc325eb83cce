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

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, overload

from msa_runtime import schema as sc
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
MANIFEST_DIGEST = "manifest.sha256"
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
    its last stage in between (1: detect every frame; see :mod:`msa_runtime.face_track`)."""

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
        w = "face_detector"
        sc.choice(self.kind, f"{w}.kind", ("mtcnn",))
        stages = sc.obj(self.stages, f"{w}.stages")
        sc.only_keys(stages, FACE_FILES, f"{w}.stages")
        for stage, entry in stages.items():
            entry = sc.obj(entry, f"{w}.stages.{stage}")
            if "file" in entry:
                sc.file_name(entry["file"], f"{w}.stages.{stage}.file")
        sc.number(self.min_face_size, f"{w}.min_face_size", 4.0, 4096.0)
        sc.number(self.factor, f"{w}.factor", 0.1, 0.95)
        if len(sc.array(self.thresholds, f"{w}.thresholds")) != 3:
            raise sc.SchemaError(f"face_detector.thresholds needs 3 values, got {self.thresholds}")
        for i, t in enumerate(self.thresholds):
            sc.number(t, f"{w}.thresholds[{i}]", 0.0, 1.0)
        sc.number(self.pixel_mean, f"{w}.pixel_mean", -1000.0, 1000.0)
        sc.number(self.pixel_scale, f"{w}.pixel_scale", 0.0, 1000.0, above=True)
        for key, value in asdict(self.nms).items():
            sc.number(value, f"{w}.nms.{key}", 0.0, 1.0)
        for key in ("source", "validation", "versions"):
            sc.obj(getattr(self, key), f"{w}.{key}")

    def files(self) -> dict[str, str]:
        """The file of each stage (``pnet``, ``rnet``, ``onet``), standard names by default."""
        out = {}
        for stage, default in FACE_FILES.items():
            entry = self.stages.get(stage)
            out[stage] = str(entry.get("file", default)) if isinstance(entry, dict) else default
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaceDetectorEntry:
        """Read the manifest's ``face_detector`` object (:class:`SchemaError` when malformed)."""
        data = sc.obj(data, "face_detector")
        sc.only_keys(data, {f.name for f in fields(cls)}, "face_detector")
        values = dict(data)
        if "thresholds" in values:
            values["thresholds"] = tuple(sc.array(values["thresholds"], "face_detector.thresholds"))
        if "nms" in values:
            nms = sc.obj(values["nms"], "face_detector.nms")
            sc.only_keys(nms, {f.name for f in fields(FaceNms)}, "face_detector.nms")
            values["nms"] = FaceNms(**nms)
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
    try:
        path = (root / name).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, an unusable name
        raise PackError(f"pack {root}: file {name!r} cannot be resolved ({exc}); rebuild the pack") from exc
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


_ENCODER_KEYS = (
    "kind",
    "source",
    "layer",
    "num_layers",
    "hidden_size",
    "frame_stride",
    "preprocess",
    "files",
    "layer_weights",
    "providers",
)
_HEAD_KEYS = ("kind", "file", "modalities", "trained", "gates", "checkpoint_sha256")
_TOP_KEYS = ("format", "format_version", "name", "encoders", "head", "files", "tools", "validation")
MAX_MANIFEST_BYTES = 64 << 20


def _format_version(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PackError(f"format_version must be an integer >= 1, got {sc._show(value)}; rebuild the pack")
    if value > FORMAT_VERSION:
        raise PackError(
            f"the pack has format version {value}, this runtime reads up to {FORMAT_VERSION}: "
            "upgrade msa-edge (pip install -U msa-edge)"
        )
    return value


def _encoder(mod: str, raw: Any) -> EncoderEntry:
    w = f"encoders.{mod}"
    e = sc.obj(raw, w)
    sc.only_keys(e, _ENCODER_KEYS, w)
    num_layers = sc.integer(sc.required(e, "num_layers", w), f"{w}.num_layers", 1, 1000)
    files = sc.obj(sc.required(e, "files", w), f"{w}.files", nonempty=True)
    for precision, name in files.items():
        sc.choice(precision, f"{w}.files key", PRECISIONS)
        sc.file_name(name, f"{w}.files.{precision}")
    providers: dict[str, tuple[str, ...]] = {}
    for provider, raw_list in sc.obj(e.get("providers", {}), f"{w}.providers").items():
        sc.choice(provider, f"{w}.providers key", PROVIDER_ORDER)
        listed = sc.array(raw_list, f"{w}.providers.{provider}", nonempty=True, max_len=len(PRECISIONS))
        for p in listed:
            if sc.choice(p, f"{w}.providers.{provider}[]", PRECISIONS) not in files:
                raise sc.SchemaError(f"{w}.providers.{provider} names precision {p} without a file")
        providers[provider] = tuple(listed)
    weights = None
    if "layer_weights" in e:
        raw_w = sc.array(e["layer_weights"], f"{w}.layer_weights", nonempty=True, max_len=num_layers + 1)
        weights = tuple(sc.number(x, f"{w}.layer_weights[]", -1e6, 1e6) for x in raw_w)
    try:
        prep = prep_from_dict(mod, sc.required(e, "preprocess", w))
    except ValueError as exc:
        raise sc.SchemaError(f"{w}.preprocess: {exc}") from exc
    return EncoderEntry(
        modality=mod,
        kind=sc.text(sc.required(e, "kind", w), f"{w}.kind", max_len=200),
        source=sc.text(sc.required(e, "source", w), f"{w}.source"),
        layer=sc.integer(sc.required(e, "layer", w), f"{w}.layer", 0, num_layers - 1),
        num_layers=num_layers,
        hidden_size=sc.integer(sc.required(e, "hidden_size", w), f"{w}.hidden_size", 1, 65536),
        frame_stride=sc.integer(e.get("frame_stride", 1), f"{w}.frame_stride", 1, 10_000),
        prep=prep,
        files={str(k): str(v) for k, v in files.items()},
        layer_weights=weights,
        providers=providers,
    )


def _head(raw: Any) -> HeadEntry:
    h = sc.obj(raw, "head")
    sc.only_keys(h, _HEAD_KEYS, "head")
    mods = sc.array(sc.required(h, "modalities", "head"), "head.modalities", nonempty=True, max_len=3)
    for mod in mods:
        sc.choice(mod, "head.modalities[]", MODALITIES)
    if len(set(mods)) != len(mods):
        raise sc.SchemaError(f"head.modalities repeats a modality: {mods}")
    ckpt = h.get("checkpoint_sha256")
    return HeadEntry(
        kind=sc.text(sc.required(h, "kind", "head"), "head.kind", max_len=200),
        file=sc.file_name(sc.required(h, "file", "head"), "head.file"),
        modalities=tuple(mods),
        trained=sc.boolean(sc.required(h, "trained", "head"), "head.trained"),
        gates=sc.boolean(sc.required(h, "gates", "head"), "head.gates"),
        checkpoint_sha256=None if ckpt is None else sc.sha256_hex(ckpt, "head.checkpoint_sha256"),
    )


def _files(raw: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for name, meta in sc.obj(raw, "files", nonempty=True).items():
        sc.file_name(name, "files key")
        entry = sc.obj(meta, f"files.{name}")
        sc.sha256_hex(sc.required(entry, "sha256", f"files.{name}"), f"files.{name}.sha256")
        if "bytes" in entry:
            sc.integer(entry["bytes"], f"files.{name}.bytes", 0, 1 << 50)
        out[name] = entry
    return out


def _loaded_files(m: Manifest) -> list[tuple[str, str]]:
    """(what, file) of every file the runtime loads from the pack."""
    out = [
        (f"the {e.modality} encoder's {p} file", f) for e in m.encoders.values() for p, f in e.files.items()
    ]
    out.append(("the head file", m.head.file))
    if "text" in m.encoders:
        out.append(("the tokenizer", m.text_prep().tokenizer))
    out += [("the face detector file", f) for f in face_detector_files(m)]
    return out


def _parse(data: Any) -> Manifest:
    data = sc.obj(data, "the manifest")
    if data.get("format") != FORMAT:
        raise PackError(
            f"not an msa-edge pack manifest (its format is {data.get('format')!r}, not {FORMAT!r})"
        )
    _format_version(data.get("format_version"))
    encoders = {}
    for mod, raw in sc.obj(sc.required(data, "encoders", "the manifest"), "encoders", nonempty=True).items():
        sc.choice(mod, "encoders key (modality)", MODALITIES)
        encoders[mod] = _encoder(mod, raw)
    raw_face = data.get("face_detector")
    manifest = Manifest(
        name=sc.text(sc.required(data, "name", "the manifest"), "name", max_len=200),
        encoders=encoders,
        head=_head(sc.required(data, "head", "the manifest")),
        files=_files(sc.required(data, "files", "the manifest")),
        tools=sc.obj(data.get("tools", {}), "tools"),
        validation=sc.array(data.get("validation", []), "validation"),
        extras={k: v for k, v in data.items() if k not in (*_TOP_KEYS, "face_detector")},
        face_detector=None if raw_face is None else FaceDetectorEntry.from_dict(raw_face),
    )
    if "vision" in encoders and manifest.vision_prep().crop == "face" and raw_face is None:
        raise sc.SchemaError("the vision encoder expects face crops but face_detector is missing")
    for what, name in _loaded_files(manifest):
        if name not in manifest.files:
            raise sc.SchemaError(f"{what} {name} is not listed with a sha256 in files")
    return manifest


def parse_manifest(data: Any, where: str = MANIFEST) -> Manifest:
    """Validate a manifest's parsed JSON against the pack format and build the :class:`Manifest`:
    types, ranges, known modalities and precisions, every file the runtime loads listed with a
    sha256. The one validation layer of a pack; anything wrong is a :class:`PackError` naming
    the key (never another exception)."""
    try:
        return _parse(data)
    except PackError as exc:
        raise PackError(f"{where}: {exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise PackError(f"{where} is malformed: {exc}; rebuild the pack") from exc


def face_detector_files(manifest: Manifest) -> list[str]:
    """The file names of the pack's face detector stages (empty when it has none)."""
    if manifest.face_detector is None:
        return []
    return list(manifest.face_detector.files().values())


def write_manifest(folder: str | Path, data: Mapping[str, Any]) -> str:
    """Write ``manifest.json`` and ``manifest.sha256`` (its digest, in ``sha256sum`` form) into
    ``folder``, each atomically; returns the digest, which identifies the whole pack."""
    root = Path(folder)
    blob = (json.dumps(data, indent=2) + "\n").encode("utf-8")
    digest = hashlib.sha256(blob).hexdigest()
    for name, content in ((MANIFEST, blob), (MANIFEST_DIGEST, f"{digest}  {MANIFEST}\n".encode())):
        tmp = root / f".{name}.tmp-{os.getpid()}"
        tmp.write_bytes(content)
        tmp.replace(root / name)
    return digest


def _read_manifest(root: Path, expect: str | None, *, env: bool = True) -> tuple[bytes, str]:
    path = root / MANIFEST
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise PackError(f"{path} is larger than {MAX_MANIFEST_BYTES >> 20} MB: not a pack manifest")
        blob = path.read_bytes()
        recorded = (root / MANIFEST_DIGEST).read_text(encoding="ascii", errors="replace").split()
    except FileNotFoundError as exc:
        raise PackError(
            f"pack {root} has no {Path(str(exc.filename)).name}: it was exported by an older msa-edge or "
            "changed by hand; re-export it with msa-export"
        ) from None
    except OSError as exc:
        raise PackError(f"cannot read the manifest of pack {root}: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if not recorded or recorded[0] != digest:
        raise PackError(
            f"pack {root}: {MANIFEST} does not match {MANIFEST_DIGEST} (edited or corrupted); "
            "rebuild or re-copy the pack"
        )
    if expect is None and env:
        expect = os.environ.get("MSA_EDGE_PACK_DIGEST") or None
    if expect is not None and expect.strip().lower() != digest:
        raise PackError(
            f"pack {root} has digest {digest}, not the expected {expect.strip()}: it is another pack or "
            "was altered; use the pack you meant or update the expected digest"
        )
    return blob, digest


def pack_digest(folder: str | Path) -> str:
    """The pack's digest: the sha256 of its ``manifest.json``, which holds the sha256 of every
    other file. Pin it (``digest=`` / ``MSA_EDGE_PACK_DIGEST``) to accept only that pack."""
    return _read_manifest(Path(folder), None, env=False)[1]


def load_manifest(folder: str | Path, *, verify: bool = True, digest: str | None = None) -> Manifest:
    """Read and check ``folder/manifest.json``: its digest (``manifest.sha256``, and ``digest`` or
    ``MSA_EDGE_PACK_DIGEST`` when given), its schema (:func:`parse_manifest`), that every file it
    lists is inside the folder and present and, with ``verify``, every file's sha256."""
    root = Path(folder)
    if not root.is_dir():
        raise PackError(f"no pack at {root}: the folder does not exist (build one with msa-export)")
    if not (root / MANIFEST).is_file():
        raise PackError(f"{root} is not a pack: it has no {MANIFEST} (build one with msa-export)")
    blob, _ = _read_manifest(root, digest)
    path = root / MANIFEST
    try:
        data = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PackError(f"{path} is not valid JSON ({exc}); rebuild the pack") from exc
    manifest = parse_manifest(data, str(path))
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
    return manifest
