"""Fine-tuning's cache: per clip the hidden state entering the first trainable block.

``msa-train --finetune MODALITY=K`` trains the last K kept blocks; the blocks below are frozen,
so what enters the first trainable block (block ``layer-K+1``) is the same in every epoch and
every seed, and is read from a cache instead of re-encoding the frozen blocks:

- text: the feature cache itself. It holds every hidden state of every token (fp16), and the
  state entering block ``s`` is hidden state ``s`` (the embedding output for ``s = 0``).
- audio and vision: the feature cache holds sliced features (every stride-th audio frame, the
  CLS token of each video frame), but the trainable blocks attend over every frame and patch. So
  the unsliced state is computed once per clip, by the same runtime preprocessing and torch
  encoder as the feature cache (:class:`msa_export.training.features.Extractor`), and stored as
  one fp32 ``.npy`` per clip (``[T, D]``; vision ``[frames, T, D]``) in
  ``<feature cache>/<encoder key>/states-in<block>/``, named like the feature cache's items (a
  changed media file gets its own state), written atomically (an interrupted run resumes).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from msa_export.data.datasets import Sample
from msa_export.models import encoders as enc
from msa_export.models.tuned import capture_state, first_tuned
from msa_export.presets.registry import EncoderCard
from msa_export.training import features as fc
from msa_runtime import media
from msa_runtime.atomic import atomic_write, atomic_write_bytes
from msa_runtime.errors import MsaError
from msa_runtime.pack import AudioPrep, VisionPrep

Progress = Callable[[str], None]


def in_feature_cache(card: EncoderCard) -> bool:
    """Whether the feature cache holds the whole hidden states of ``card``'s encoder (text: every
    token), so fine-tuning reads its states there."""
    return card.modality == "text" and enc.SPECS[card.kind].info.select is None


def state_folder(cache_dir: str | Path, card: EncoderCard, k: int) -> Path:
    """Where the states entering the first of ``k`` tuned blocks of ``card`` are cached (for
    text: the feature cache's folder)."""
    folder = Path(cache_dir) / fc.cache_key(card)
    return folder if in_feature_cache(card) else folder / f"states-in{first_tuned(card, k)}"


def extract_states(
    samples: Sequence[Sample],
    card: EncoderCard,
    k: int,
    cache_dir: str | Path,
    *,
    offline: bool | None = None,
    progress: Progress = lambda m: None,
) -> Path:
    """Cache the state entering the first of the last ``k`` kept blocks for every sample that
    lacks it; returns the folder. Clips that fail to decode are left without a state."""
    folder = state_folder(cache_dir, card, k)
    mod = card.modality
    if in_feature_cache(card):
        progress(f"fine-tuning: {mod} states entering block {first_tuned(card, k)} from the feature cache")
        return folder  # msa-train filled it before
    folder.mkdir(parents=True, exist_ok=True)
    todo = [
        s
        for s in samples
        if not (folder / fc.file_name(s, mod)).exists()
        and not (folder / (fc.file_name(s, mod) + ".none")).exists()
    ]
    if not todo:
        progress(f"fine-tuning: all {len(samples)} {mod} states cached in {folder}")
        return folder
    progress(
        f"fine-tuning: caching the {mod} state entering block {first_tuned(card, k)} of {len(todo)} clips"
    )
    ex = fc.Extractor(card, offline, face_dir=Path(cache_dir) / fc.FACE_FOLDER, progress=progress)
    enc.cut(ex.model, card.blocks)  # nothing above the kept blocks is needed
    fps = card.prep.fps if isinstance(card.prep, VisionPrep) else None
    rate = card.prep.sample_rate if isinstance(card.prep, AudioPrep) else None
    started = time.perf_counter()
    failed = 0
    for i, sample in enumerate(todo, 1):
        name = fc.file_name(sample, mod)
        try:
            clip = None
            if sample.media is not None and (fps or rate):
                clip = media.decode(
                    sample.media, fps=fps, sample_rate=rate, start=sample.start or 0.0, end=sample.end
                )
            inputs = ex.inputs(sample, clip)
        except MsaError:
            failed += 1  # the feature cache has already reported this clip
            continue
        if inputs is None:
            atomic_write_bytes(folder / (name + ".none"), b"")
            continue
        state = capture_state(card, ex.model, inputs, first_tuned(card, k)).numpy().astype(np.float32)
        _save(folder / name, state)
        if i == len(todo) or i % max(1, len(todo) // 10) == 0:
            per = (time.perf_counter() - started) / i
            progress(f"fine-tuning: {i}/{len(todo)} states, {per:.2f} s/clip")
    if failed:
        progress(f"fine-tuning: {failed} clips gave no {mod} state (they failed to decode)")
    return folder


def _save(path: Path, state: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, state))


def load_states(
    folder: Path, samples: Sequence[Sample], card: EncoderCard, k: int
) -> list[torch.Tensor | None]:
    """Per sample the cached state entering the first of ``k`` tuned blocks (None: none)."""
    modality = card.modality
    if in_feature_cache(card):  # hidden state s is the feature cache's layer s - 1
        feats, _ = fc.load_layer(folder, samples, first_tuned(card, k) - 1, modality)
        return [None if x is None else torch.from_numpy(x) for x in feats]
    out: list[torch.Tensor | None] = []
    for s in samples:
        path = folder / fc.file_name(s, modality)
        out.append(torch.from_numpy(np.load(path)) if path.is_file() else None)
    return out
