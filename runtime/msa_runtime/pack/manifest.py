"""The pack's data model: the format's constants, the parsed manifest (:class:`Manifest`, one
:class:`EncoderEntry` per encoder, the :class:`HeadEntry`) and its serialisation
(:func:`manifest_to_dict`, the writer side). Re-exported by :mod:`msa_runtime.pack`, which reads
and writes pack folders; :mod:`msa_runtime.pack.parse` validates a manifest into these types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Required, TypedDict, TypeVar

from msa_runtime.errors import PackError
from msa_runtime.pack.face import FaceDetectorEntry
from msa_runtime.pack.prep import AudioPrep, Prep, TextPrep, VisionPrep, prep_to_dict

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


P = TypeVar("P", TextPrep, AudioPrep, VisionPrep)


def _typed(entry: EncoderEntry, cls: type[P]) -> P:
    if not isinstance(entry.prep, cls):
        raise PackError(
            f"the {entry.modality} encoder's preprocessing is a "
            f"{type(entry.prep).__name__}, not a {cls.__name__}; rebuild the pack"
        )
    return entry.prep


class FileRecord(TypedDict, total=False):
    """A file of the pack as ``files`` lists it: its sha256 (always) and size in bytes."""

    sha256: Required[str]
    bytes: int


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
    files: dict[str, FileRecord]
    tools: dict[str, str] = field(default_factory=dict)
    validation: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    face_detector: FaceDetectorEntry | None = None
    """The face detector (:func:`msa_export.models.face.export_face_detector`): stage files, cascade
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

    def _prep(self, modality: str, cls: type[P]) -> P:
        if modality not in self.encoders:
            raise PackError(
                f"pack {self.name} has no {modality} encoder; it has {', '.join(self.modalities)}"
            )
        return _typed(self.encoders[modality], cls)


def face_detector_files(manifest: Manifest) -> list[str]:
    """The file names of the pack's face detector stages (empty when it has none)."""
    if manifest.face_detector is None:
        return []
    return list(manifest.face_detector.files().values())


def manifest_to_dict(m: Manifest) -> dict[str, Any]:
    """Serialise a manifest (the writer side of :func:`msa_runtime.pack.load_manifest`)."""
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
