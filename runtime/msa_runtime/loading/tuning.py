"""Which file of a pack each encoder runs, on which provider, and the per-machine tuning record.

Without a tuning record the pack's manifest decides: each encoder lists, per provider, the files
that passed the parity gate through that provider, the default first (OpenVINO: its NNCF int8
file, else fp32 run as bf16; CPU EP: dynamic int8; CUDA: fp16).

The fastest file differs per encoder, provider and CPU, so ``msa-run --tune`` (and ``msa-export
--tune``) times every candidate on this machine and writes a small record BESIDE the pack folder
(``<pack>.tuning.json``; never inside the pack, whose files are hashed). The record is keyed by
the manifest's sha256 and the machine (CPU model, flags, cores, ONNX Runtime, OpenVINO and plugin
versions): a record for another pack or machine is ignored, with a note. Location: argument ->
``MSA_EDGE_TUNING`` -> beside the pack.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, cast

import numpy as np

from msa_runtime.atomic import atomic_write_text
from msa_runtime.engine.sessions import CPU, CUDA, OPENVINO_ROUTES, SHORT, make_session, split_device
from msa_runtime.errors import InputError, PackError
from msa_runtime.limits import MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, read_bounded
from msa_runtime.pack import MANIFEST, PRECISIONS, Manifest
from msa_runtime.pack.contract import check_encoder

FORMAT = "msa-edge-tuning"
TEXT = "Honestly I thought the movie would be boring, but the ending completely won me over."


class Candidate(TypedDict):
    """One file on one provider in the tuning record, with its timing."""

    provider: str
    precision: str
    file: str
    median_ms: float
    min_ms: float


class EncoderTiming(TypedDict):
    """Every candidate of one encoder, the fastest, and the fastest per provider."""

    candidates: list[Candidate]
    best: Candidate
    best_per_provider: dict[str, Candidate]


class MachineKey(TypedDict):
    """What a timing depends on besides the pack (a record made elsewhere is ignored)."""

    cpu: str
    cores: int | None
    flags_sha256: str
    versions: dict[str, str]


class TuningRecord(TypedDict):
    """The file ``msa-run --tune`` writes beside a pack."""

    format: str
    version: int
    pack: str
    manifest_sha256: str
    machine: MachineKey
    threads: int | None
    repeat: int
    created: str
    inputs: dict[str, dict[str, list[int]]]
    encoders: dict[str, EncoderTiming]


@dataclass(frozen=True)
class Choice:
    """One encoder's session: the file, its precision, the providers, and why."""

    modality: str
    file: str
    precision: str
    providers: tuple[str, ...]
    reason: str  # "manifest", "tuning", "requested" or "no-openvino-file" (auto fell back to CPU)

    @property
    def provider(self) -> str:
        return SHORT.get(split_device(self.providers[0])[0], self.providers[0])


def tuning_path(pack: Path, tuning: str | os.PathLike[str] | None = None) -> Path:
    """Where the tuning record of ``pack`` lives: argument -> ``MSA_EDGE_TUNING`` -> beside it."""
    if tuning is not None:
        return Path(tuning)
    env = os.environ.get("MSA_EDGE_TUNING")
    if env:
        return Path(env)
    pack = pack.resolve()
    return pack.parent / f"{pack.name}.tuning.json"


def machine_key() -> MachineKey:
    """What a timing depends on besides the pack: CPU model and flags, cores, library versions."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = info.get("model name") or platform.processor() or platform.machine()
    flags = info.get("flags", "")
    versions = {}
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-ep-openvino", "openvino"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return MachineKey(
        cpu=cpu,
        cores=os.cpu_count(),
        flags_sha256=hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:16],
        versions=versions,
    )


def manifest_sha256(pack: Path) -> str:
    blob = read_bounded(
        pack / MANIFEST,
        MAX_MANIFEST_BYTES,
        label=f"pack {pack}: {MANIFEST}",
        error=PackError,
        fix="rebuild the pack",
    )
    return hashlib.sha256(blob).hexdigest()


def load_tuning(
    pack: Path, tuning: str | os.PathLike[str] | bool | None = None
) -> tuple[TuningRecord | None, str | None]:
    """The tuning record of ``pack`` if there is one for this pack and machine, and a note
    (why it is used or ignored). ``tuning=False`` ignores any record."""
    if tuning is False:
        return None, None
    path = tuning_path(pack, None if tuning is True else tuning)
    if not path.exists():
        if tuning not in (None, True):
            raise InputError(
                f"tuning record {path} does not exist; write one with msa-run --tune --pack {pack}"
            )
        return None, None
    try:
        record = json.loads(
            read_bounded(
                path,
                MAX_CONFIG_BYTES,
                label=f"tuning record {path}",
                error=InputError,
                fix="remove it or re-run msa-run --tune",
            ).decode("utf-8")
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, InputError) as exc:
        return None, f"tuning record {path} is unreadable ({exc}): ignored; re-run msa-run --tune"
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None, f"{path} is not an msa-edge tuning record: ignored"
    if record.get("manifest_sha256") != manifest_sha256(pack):
        return None, (
            f"tuning record {path.name} was made for another build of this pack: "
            "ignored; re-run msa-run --tune"
        )
    if record.get("machine") != machine_key():
        return None, (
            f"tuning record {path.name} was made on another machine or library "
            "version: ignored; re-run msa-run --tune"
        )
    if not _well_formed(record.get("encoders")):
        return None, f"tuning record {path.name} is malformed: ignored; re-run msa-run --tune"
    return cast(TuningRecord, record), f"tuning record {path.name} (made {record.get('created', '?')})"


def _well_formed(encoders: object) -> bool:
    """Whether a record's ``encoders`` has the shape :func:`plan_sessions` reads."""

    def candidate(c: object) -> bool:
        return (
            isinstance(c, dict) and isinstance(c.get("provider"), str) and isinstance(c.get("precision"), str)
        )

    if not isinstance(encoders, dict):
        return False
    for timing in encoders.values():
        if not isinstance(timing, dict) or not candidate(timing.get("best")):
            return False
        per = timing.get("best_per_provider")
        if not isinstance(per, dict) or not all(candidate(c) for c in per.values()):
            return False
    return True


def _provider_of(short: str, providers: Sequence[str]) -> tuple[str, ...] | None:
    """The session providers for ``short`` if it is among the resolved ``providers``."""
    for p in providers:
        if SHORT.get(split_device(p)[0]) == short:
            return (p, CPU) if p != CPU else (CPU,)
    return None


def plan_sessions(
    manifest: Manifest,
    providers: Sequence[str],
    precision: str | None,
    record: TuningRecord | None,
    auto: bool,
) -> dict[str, Choice]:
    """Per encoder, the file and providers its session uses.

    ``precision`` (explicit) wins for every encoder; else the tuning ``record`` (with ``auto``
    it may put an encoder on any available provider, else only on the first); else the
    manifest's default for the first provider."""
    first = providers[0]
    short = SHORT.get(split_device(first)[0], "cpu")
    main = _provider_of(short, providers) or (CPU,)
    if precision is not None:
        if precision not in PRECISIONS:
            raise InputError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        have = {p for e in manifest.encoders.values() for p in e.files}
        if precision not in have:
            raise InputError(f"the pack has no {precision} files; it has {', '.join(sorted(have))}")
    out: dict[str, Choice] = {}
    for mod, entry in manifest.encoders.items():
        if precision is not None:
            prec = precision if precision in entry.files else next(iter(entry.files))
            out[mod] = Choice(mod, entry.files[prec], prec, main, "requested")
            continue
        tuned = record["encoders"].get(mod) if record is not None else None
        pick = None if tuned is None else tuned["best"] if auto else tuned["best_per_provider"].get(short)
        if pick:
            session = _provider_of(pick["provider"], providers)
            if session is not None and pick["precision"] in entry.provider_precisions(pick["provider"]):
                out[mod] = Choice(mod, entry.files[pick["precision"]], pick["precision"], session, "tuning")
                continue
        ok = entry.provider_precisions(short)
        if not ok and short == "openvino" and auto:
            # auto means "the fastest engine that can run this pack": not one the pack has no file for
            ok = entry.provider_precisions("cpu") or tuple(entry.files)
            cpu = _provider_of("cpu", providers) or (CPU,)
            out[mod] = Choice(mod, entry.files[ok[0]], ok[0], cpu, "no-openvino-file")
            continue
        if not ok:
            if short == "openvino":
                raise PackError(
                    f"the pack has no {mod} file for OpenVINO (ov-int8 or fp32); "
                    "re-export it with msa-export --precision int8,fp32,ov-int8, or "
                    "use --providers cpu"
                )
            ok = tuple(entry.files)
        out[mod] = Choice(mod, entry.files[ok[0]], ok[0], main, "manifest")
    return out


def describe_plan(plan: dict[str, Choice]) -> str:
    parts = []
    for c in plan.values():
        bf16 = " as bf16 where the CPU has it" if c.provider == "openvino" and c.precision == "fp32" else ""
        why = {"tuning": " (tuned)", "no-openvino-file": " (the pack has no file for OpenVINO)"}
        parts.append(f"{c.modality} {c.file} on {c.provider}{bf16}{why.get(c.reason, '')}")
    return "; ".join(parts)


def tuning_inputs(
    manifest: Manifest, folder: Path, seconds: float = 5.0, frames: int = 15
) -> dict[str, dict[str, np.ndarray]]:
    """Feeds of a typical clip for each encoder, through the pack's own preprocessing: a
    sentence, ``seconds`` of a voiced-sounding tone, ``frames`` noise frames."""
    from msa_runtime.preprocess import TextEncoder, audio_batch, normalize_images

    rng = np.random.default_rng(0)
    feeds: dict[str, dict[str, np.ndarray]] = {}
    enc = manifest.encoders
    if "text" in enc:
        text = manifest.text_prep()
        ids, mask = TextEncoder(folder / text.tokenizer, text)(TEXT)
        feeds["text"] = {"input_ids": ids, "attention_mask": mask}
    if "audio" in enc:
        audio = manifest.audio_prep()
        t = np.arange(int(seconds * audio.sample_rate)) / audio.sample_rate
        wave = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6)) * 0.1
        wave = wave + 0.01 * rng.standard_normal(t.size)
        feeds["audio"] = {"waveform": audio_batch(wave.astype(np.float32), audio)}
    if "vision" in enc:
        vision = manifest.vision_prep()
        squares = rng.integers(0, 256, (frames, vision.image_size, vision.image_size, 3), dtype=np.uint8)
        feeds["vision"] = {"pixel_values": normalize_images(squares, vision)}
    return feeds


def tune(
    folder: Path,
    manifest: Manifest,
    providers: Sequence[str],
    *,
    threads: int | None = None,
    repeat: int = 5,
    out: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] = lambda m: None,
) -> tuple[Path, TuningRecord]:
    """Time every candidate file of every encoder on each of ``providers`` (resolved names);
    write the record beside the pack (atomically) and return its path and content."""
    feeds = tuning_inputs(manifest, folder)
    encoders: dict[str, EncoderTiming] = {}
    for mod, entry in manifest.encoders.items():
        rows: list[Candidate] = []
        for p in providers:
            short = SHORT.get(split_device(p)[0])
            if short is None:
                continue
            for prec in entry.provider_precisions(short):
                session_providers = [p, CPU] if p != CPU else [CPU]
                session = make_session(folder / entry.files[prec], session_providers, threads=threads)
                check_encoder(session, entry.files[prec], entry)
                session.run(["hidden"], feeds[mod])
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    session.run(["hidden"], feeds[mod])
                    times.append((time.perf_counter() - t0) * 1e3)
                del session
                ms = float(np.median(times))
                rows.append(
                    Candidate(
                        provider=short,
                        precision=prec,
                        file=entry.files[prec],
                        median_ms=round(ms, 3),
                        min_ms=round(min(times), 3),
                    )
                )
                progress(f"tune: {mod} {entry.files[prec]} on {short}: {ms:,.1f} ms")
        best = min(rows, key=lambda r: r["median_ms"])
        per: dict[str, Candidate] = {}
        for r in rows:
            if r["provider"] not in per or r["median_ms"] < per[r["provider"]]["median_ms"]:
                per[r["provider"]] = r
        encoders[mod] = EncoderTiming(candidates=rows, best=best, best_per_provider=per)
    record = TuningRecord(
        format=FORMAT,
        version=1,
        pack=folder.resolve().name,
        manifest_sha256=manifest_sha256(folder),
        machine=machine_key(),
        threads=threads,
        repeat=repeat,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        inputs={m: {k: list(v.shape) for k, v in f.items()} for m, f in feeds.items()},
        encoders=encoders,
    )
    path = tuning_path(folder, out)
    try:
        atomic_write_text(path, json.dumps(record, indent=1))
    except OSError as exc:
        raise InputError(
            f"cannot write the tuning record {path}: {exc.strerror}; give a "
            "writable path with MSA_EDGE_TUNING"
        ) from exc
    return path, record


__all__ = [
    "Choice",
    "CUDA",
    "OPENVINO_ROUTES",
    "describe_plan",
    "load_tuning",
    "plan_sessions",
    "tune",
    "tuning_path",
]
