"""The face detector entry of a pack's manifest (``face_detector``): stage files and the MTCNN
cascade's parameters, type- and range-checked, with their defaults (the face stage,
:mod:`msa_runtime.face`, reads them from here). Re-exported by :mod:`msa_runtime.pack`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from msa_runtime.pack import schema as sc

# facenet-pytorch's MTCNN defaults: the cascade's parameters a pack records.
DEFAULT_MIN_FACE_SIZE = 20
DEFAULT_FACTOR = 0.709
DEFAULT_THRESHOLDS: tuple[float, float, float] = (0.6, 0.7, 0.7)
PIXEL_MEAN = 127.5
PIXEL_SCALE = 0.0078125  # 1 / 128

FACE_FILES: dict[str, str] = {
    "pnet": "face_pnet.onnx",
    "rnet": "face_rnet.onnx",
    "onet": "face_onet.onnx",
}
"""File names of the three stages in a pack folder."""


@dataclass(frozen=True)
class FaceNms:
    """IoU thresholds of the cascade's non-maximum suppressions (facenet-pytorch's): per P-net
    pyramid level, over all levels, after R-net, and after O-net (over the smaller box)."""

    pnet_scale: float = 0.5
    pnet: float = 0.7
    rnet: float = 0.7
    onet_min: float = 0.7


@dataclass(frozen=True, eq=False)
class FaceDetectorEntry:
    """The face detector of a pack (``face_detector`` in the manifest), as
    :func:`msa_export.models.face.export_face_detector` writes it and
    :class:`msa_runtime.face.cascade.FaceDetector` runs it: stage files, the cascade's parameters (pyramid,
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
        """Read like the manifest's JSON object (``entry["thresholds"]``), so code written for
        the raw dict works on the typed entry."""
        return self.to_dict()[key]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FaceDetectorEntry):
            other = other.to_dict()
        return isinstance(other, Mapping) and self.to_dict() == dict(other)

    __hash__ = None  # type: ignore[assignment]
