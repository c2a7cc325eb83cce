"""Speech-like audio and clips for the ASR tests, made here (no data needed).

:func:`vowel_speech` is a formant synthesiser: a glottal pulse train (pitch 100-150 Hz, moving)
through three resonators set to a vowel per 0.25 s syllable, with a syllabic envelope. Silero VAD
takes it for speech; a random-weight Whisper decodes words from it like from any speech.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

RATE = 16000
_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


def _resonate(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    r = np.exp(-np.pi * bandwidth / RATE)
    b1, b2 = 2 * r * np.cos(2 * np.pi * freq / RATE), -r * r
    y = np.empty_like(x)
    z1 = z2 = 0.0
    for i, v in enumerate(x.tolist()):
        out = v + b1 * z1 + b2 * z2
        z2, z1 = z1, out
        y[i] = out
    return y / max(float(np.abs(y).max()), 1e-9)


def vowel_speech(seconds: float, seed: int = 0) -> np.ndarray:
    """``seconds`` of speech-like mono float audio at 16 kHz (peak 0.3)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 3.1 * t)
    pulses = (np.diff(np.floor(np.cumsum(f0 / RATE)), prepend=0) > 0).astype(np.float32)
    out = np.zeros(n, np.float32)
    syllable = RATE // 4
    for a in range(0, n, syllable):
        seg = pulses[a : a + syllable]
        formants = _VOWELS[rng.integers(len(_VOWELS))]
        y = sum(_resonate(seg, f, bw) for f, bw in zip(formants, (80, 100, 120)))
        out[a : a + syllable] = y * np.sin(np.linspace(0, np.pi, len(seg))) ** 0.5
    out += 0.003 * rng.standard_normal(n).astype(np.float32)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def write_clip(
    path: str | os.PathLike[str], audio: np.ndarray | None, *, video_seconds: float = 0, fps: int = 10
) -> Path:
    """A ``.wav`` (audio only) or ``.mkv`` clip: 16-bit PCM ``audio`` at 16 kHz and, for .mkv,
    ``video_seconds`` of a grey 64x48 MPEG-4 picture."""
    path = Path(path)
    fmt = "wav" if path.suffix == ".wav" else "matroska"
    with av.open(str(path), "w", format=fmt) as out:
        vs = None
        if video_seconds and fmt != "wav":
            vs = out.add_stream("mpeg4", rate=Fraction(fps))
            vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        if audio is not None:
            stream = out.add_stream("pcm_s16le", rate=RATE, layout="mono")
            pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None]
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = RATE
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                out.mux(packet)
        if vs is not None:
            grey = np.full((48, 64, 3), 128, np.uint8)
            for i in range(round(video_seconds * fps)):
                vf = av.VideoFrame.from_ndarray(grey, format="rgb24")
                vf.pts = i
                for packet in vs.encode(vf):
                    out.mux(packet)
            for packet in vs.encode(None):
                out.mux(packet)
    return path
