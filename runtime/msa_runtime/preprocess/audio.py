"""Audio -> the encoder's ``[1, samples]`` waveform: padded and, when the pack says so, normalised."""

from __future__ import annotations

import numpy as np

from msa_runtime.errors import InputError
from msa_runtime.pack import AudioPrep


def audio_batch(samples: np.ndarray, prep: AudioPrep) -> np.ndarray:
    """Mono float32 samples -> ``[1, n]`` waveform; padded with silence to ``min_seconds`` and,
    when the pack asks for it, normalised to zero mean and unit variance."""
    x = np.asarray(samples, np.float32).reshape(-1)
    if not np.isfinite(x).all():
        raise InputError("audio contains NaN or infinite samples")
    minimum = int(prep.min_seconds * prep.sample_rate)
    if x.size < minimum:
        x = np.pad(x, (0, minimum - x.size))
    if prep.normalize:
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    return x[None].astype(np.float32)
