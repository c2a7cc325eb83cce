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
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msa_runtime import schema as sc
from msa_runtime.errors import PackError
from msa_runtime.pack_face import FaceDetectorEntry
from msa_runtime.pack_prep import (
    PREP_LIMITS,
    PREP_TYPES,
    AudioPrep,
    Prep,
    TextPrep,
    VisionPrep,
    prep_from_dict,
    prep_to_dict,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "MANIFEST_DIGEST",
    "MODALITIES",
    "PRECISIONS",
    "PREP_LIMITS",
    "PREP_TYPES",
    "PROVIDER_ORDER",
    "AudioPrep",
    "EncoderEntry",
    "FaceDetectorEntry",
    "HeadEntry",
    "Manifest",
    "Prep",
    "TextPrep",
    "VisionPrep",
    "default_providers",
    "face_detector_files",
    "load_manifest",
    "verify_files",
    "manifest_to_dict",
    "pack_digest",
    "parse_manifest",
    "prep_from_dict",
    "prep_to_dict",
    "sha256_file",
    "write_manifest",
]

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


def _typed(entry: EncoderEntry, cls: type[Prep]) -> Any:
    if not isinstance(entry.prep, cls):
        raise PackError(
            f"the {entry.modality} encoder's preprocessing is a "
            f"{type(entry.prep).__name__}, not a {cls.__name__}; rebuild the pack"
        )
    return entry.prep


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
        raise sc.SchemaError(
            "its vision encoder expects face crops (vision preprocess crop = 'face') but the pack has no "
            "face detector; re-export it with msa-export (pip install --no-deps facenet-pytorch first)"
        )
    for what, name in _loaded_files(manifest):
        if name not in manifest.files:
            raise sc.SchemaError(f"{what} {name} is not listed with a sha256 in files")
    _asr_folder(manifest)
    return manifest


def _asr_folder(m: Manifest) -> str | None:
    """The folder of the speech-recognition model the pack carries (``msa-export --asr``), its
    files checked to be listed with a sha256."""
    if m.extras.get("asr") is None:
        return None
    entry = sc.obj(m.extras["asr"], "asr")
    folder = sc.file_name(sc.required(entry, "folder", "asr"), "asr.folder")
    for raw in sc.array(sc.required(entry, "files", "asr"), "asr.files", nonempty=True):
        name = sc.file_name(raw, "asr.files[]")
        if not name.startswith(folder + "/") or name not in m.files:
            raise sc.SchemaError(f"the ASR model's file {name} is not listed with a sha256 in files")
    return folder


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


def load_manifest(
    folder: str | Path, *, verify: bool = True, digest: str | None = None, encoder_files: bool = True
) -> Manifest:
    """Read and check ``folder/manifest.json``: its digest (``manifest.sha256``, and ``digest`` or
    ``MSA_EDGE_PACK_DIGEST`` when given), its schema (:func:`parse_manifest`), that every file it
    lists is inside the folder and present and, with ``verify``, every file's sha256.
    ``encoder_files=False`` leaves the encoders' files unhashed: a loader that uses one file per
    encoder hashes those with :func:`verify_files` before loading them."""
    root = Path(folder)
    _check_folder(root)
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
    asr = _asr_folder(manifest)
    if asr is not None and (root / asr).is_dir():
        for file in sorted((root / asr).rglob("*")):
            rel = file.relative_to(root).as_posix()
            if not file.is_dir() and rel not in manifest.files:
                raise PackError(
                    f"pack {root}: {rel} is in the ASR model's folder but has no sha256 in the manifest "
                    "(it would be loaded unchecked); remove it or re-export the pack"
                )
    if verify:
        skip = set() if encoder_files else {f for e in manifest.encoders.values() for f in e.files.values()}
        verify_files(root, manifest, [name for name in manifest.files if name not in skip])
    return manifest


def verify_files(folder: str | Path, manifest: Manifest, names: Iterable[str]) -> None:
    """Check the sha256 of the pack files ``names`` against ``manifest``."""
    root = Path(folder)
    for name in names:
        meta = manifest.files.get(name)
        if meta is None or sha256_file(_inside(root, name)) != meta.get("sha256"):
            raise PackError(
                f"pack {root}: {name} does not match its sha256 in the manifest (tampered or "
                "corrupted); rebuild or re-copy the pack"
            )
