"""Loading a pack for scoring (the work of :class:`msa_runtime.Analyzer`'s constructor): the
checked manifest, the sessions of the head and of each encoder (the file the plan of
:mod:`msa_runtime.loading.tuning` picks, hashed before it is loaded, each session checked against the
manifest by :mod:`msa_runtime.pack.contract`), the face detector and the tokenizer."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from msa_runtime import checks
from msa_runtime.engine.interface import Session
from msa_runtime.engine.sessions import (
    CPU,
    CUDA,
    OPENVINO_ROUTES,
    describe_auto,
    make_session,
    resolve_providers,
    split_device,
)
from msa_runtime.errors import PackError
from msa_runtime.face.cascade import FaceDetector
from msa_runtime.loading.tuning import Choice, describe_plan, load_tuning, plan_sessions, tuning_inputs
from msa_runtime.pack import Manifest, load_manifest, verify_files
from msa_runtime.pack.contract import check_encoder, check_head
from msa_runtime.preprocess import TextEncoder

__all__ = ["LoadedPack", "SessionFactory", "load_face_detector", "load_pack", "warm_up"]

SessionFactory = Callable[[Path, list[str], "int | None"], Session]
"""Builds the :class:`~msa_runtime.engine.Session` that runs one ONNX file of a pack:
``(path, providers, threads) -> session``. The default builds a local session on the chosen
engine; :mod:`msa_runtime.serve` routes the files to models of a Triton server instead."""


def _local_session(path: Path, providers: list[str], threads: int | None) -> Session:
    return make_session(path, providers, threads=threads)


def load_face_detector(manifest: Manifest, folder: Path, threads: int | None) -> FaceDetector | None:
    """The pack's face detector when its vision encoder expects face crops (else None).

    It runs on CPU whatever the encoders use: the same ONNX Runtime provider as the training
    feature cache, so serving and training crop the same pixels.
    """
    if "vision" not in manifest.encoders or manifest.vision_prep().crop != "face":
        return None
    if manifest.face_detector is None:
        raise PackError(
            f"pack {folder}: its vision encoder expects face crops (vision "
            "preprocess crop = 'face') but the pack has no face detector; re-export "
            "it with msa-export (pip install --no-deps facenet-pytorch first)"
        )
    return FaceDetector.from_folder(
        folder, manifest.face_detector, threads=threads, providers=["CPUExecutionProvider"]
    )


@dataclass
class LoadedPack:
    """A pack ready to score: what :func:`load_pack` built (the Analyzer's attributes of the
    same names)."""

    manifest: Manifest
    providers: list[str]
    auto: bool
    head: Session
    plan: dict[str, Choice]
    precision: str
    sessions: dict[str, Session]
    choice: str
    head_inputs: list[str]
    face_detector: FaceDetector | None
    text_encoder: TextEncoder | None


def load_pack(
    folder: Path,
    providers: str | Sequence[str] | None,
    threads: int | None,
    precision: str | None,
    *,
    verify: bool,
    digest: str | None,
    tuning: str | os.PathLike[str] | bool | None,
    session_factory: SessionFactory | None,
) -> LoadedPack:
    """Load the pack in ``folder`` with the Analyzer's arguments (see
    :class:`msa_runtime.Analyzer`; ``threads`` already checked)."""
    make = session_factory or _local_session
    # each encoder's file is hashed once the plan has picked it (not its unused variants)
    manifest = load_manifest(folder, verify=verify, digest=checks.pinned_digest(digest), encoder_files=False)
    requested = providers if providers is not None else (os.environ.get("MSA_EDGE_PROVIDERS") or "auto")
    auto = isinstance(requested, str) and requested.strip().lower() == "auto"
    resolved = resolve_providers(providers)  # None: it reads (and names) MSA_EDGE_PROVIDERS
    first = split_device(resolved[0])[0]
    # the head is tiny and fp32: on OpenVINO's machines it stays on the CPU EP (exact fp32)
    head = make(
        folder / manifest.head.file,
        [CPU] if first in OPENVINO_ROUTES else resolved,
        threads,
    )
    if first == CUDA and CUDA not in head.get_providers():
        # CUDA fell back to CPU (warned once by make_session): the encoders follow, at the
        # CPU precision, instead of each failing over with its own warning.
        resolved = list(head.get_providers())
    record, tuning_note = load_tuning(folder, tuning)
    plan = plan_sessions(manifest, resolved, precision, record, auto)
    kinds = sorted({c.precision for c in plan.values()})
    if session_factory is None:  # Triton's sessions are checked by their model configs
        check_head(head, f"pack {folder}: {manifest.head.file}", manifest.head, manifest.encoders)
    if verify:
        verify_files(folder, manifest, sorted({c.file for c in plan.values()}))
    sessions: dict[str, Session] = {}
    for mod, c in plan.items():
        sessions[mod] = make(folder / c.file, list(c.providers), threads)
        if session_factory is None:  # Triton's sessions are checked by their model configs
            check_encoder(sessions[mod], f"pack {folder}: {c.file}", manifest.encoders[mod])
    notes = [describe_auto(resolved)] if auto else []
    notes.append(describe_plan(plan))
    if tuning_note:
        notes.append(tuning_note)
    head_inputs = [i.name for i in head.get_inputs()]
    face_detector = load_face_detector(manifest, folder, threads)
    text_encoder = None
    if "text" in manifest.encoders:
        prep = manifest.text_prep()
        text_encoder = TextEncoder(folder / prep.tokenizer, prep)
    return LoadedPack(
        manifest=manifest,
        providers=resolved,
        auto=auto,
        head=head,
        plan=plan,
        precision=kinds[0] if len(kinds) == 1 else "+".join(kinds),
        sessions=sessions,
        choice="; ".join(notes),
        head_inputs=head_inputs,
        face_detector=face_detector,
        text_encoder=text_encoder,
    )


def warm_up(
    manifest: Manifest,
    folder: Path,
    plan: Mapping[str, Choice],
    sessions: Mapping[str, Session],
    providers: Sequence[str],
) -> dict[str, float]:
    """Run each encoder whose session is on one of ``providers`` once on a small input (a
    sentence, 1 s of audio, 1 frame: :func:`msa_runtime.loading.tuning.tuning_inputs`); returns the ms
    per modality.

    OpenVINO sets an encoder up on its first call (measured for ando2022-mosi here: ~1 s per
    encoder, on top of the call's own time, whatever the input's shape), so without this the
    first clip or stream window pays for all of it; ONNX Runtime's CPU EP has no such cost.
    """
    mods = [m for m, c in plan.items() if split_device(c.providers[0])[0] in providers]
    if not mods:
        return {}
    feeds = tuning_inputs(manifest, folder, seconds=1.0, frames=1)
    ms: dict[str, float] = {}
    for mod in mods:
        t0 = time.perf_counter()
        sessions[mod].run(["hidden"], feeds[mod])
        ms[mod] = (time.perf_counter() - t0) * 1e3
    return ms
