"""Validating a manifest's parsed JSON into a :class:`~msa_runtime.pack.manifest.Manifest`
(:func:`parse_manifest`, the one validation layer of a pack): types, ranges, known modalities and
precisions, every file the runtime loads listed with a sha256. Re-exported by
:mod:`msa_runtime.pack`."""

from __future__ import annotations

from typing import Any

from msa_runtime.errors import PackError
from msa_runtime.pack import schema as sc
from msa_runtime.pack.face import FaceDetectorEntry
from msa_runtime.pack.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MODALITIES,
    PRECISIONS,
    PROVIDER_ORDER,
    EncoderEntry,
    FileRecord,
    HeadEntry,
    Manifest,
    face_detector_files,
)
from msa_runtime.pack.prep import prep_from_dict

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


def _files(raw: Any) -> dict[str, FileRecord]:
    out = {}
    for name, meta in sc.obj(raw, "files", nonempty=True).items():
        sc.file_name(name, "files key")
        entry = sc.obj(meta, f"files.{name}")
        digest = sc.sha256_hex(sc.required(entry, "sha256", f"files.{name}"), f"files.{name}.sha256")
        record = FileRecord(sha256=digest)
        if "bytes" in entry:
            record["bytes"] = sc.integer(entry["bytes"], f"files.{name}.bytes", 0, 1 << 50)
        out[name] = record
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
    asr_folder(manifest)
    return manifest


def asr_folder(m: Manifest) -> str | None:
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
