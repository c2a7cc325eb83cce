"""Audio given as arrays at another rate: FFmpeg's resampler, the one decoding uses."""

from __future__ import annotations

import numpy as np


def resample_audio(samples: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Resample mono float audio with FFmpeg's resampler (the same one decoding uses)."""
    import av

    frame = av.AudioFrame.from_ndarray(np.asarray(samples, np.float32)[None], format="flt", layout="mono")
    frame.sample_rate = src
    resampler = av.AudioResampler(format="flt", layout="mono", rate=dst)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)
