"""The media of the synthetic dataset (:mod:`msa_export.data.synthetic`): the audio and video
that carry a clip's factors, and their encoding into one container file with PyAV.

- audio: a harmonic tone whose pitch carries the factor (:data:`AUDIO_PITCH_HZ`), with a
  syllable-rate envelope, a random loudness and a little noise (:func:`make_audio`);
- video: frames whose background colour carries the factor (:data:`VIDEO_RGB`), with a moving
  skin-coloured disc that carries nothing (:func:`make_frames`);
- :func:`write_clip` encodes both with the first codec pair of :data:`CODEC_CHOICES` that the
  installed FFmpeg has (:func:`choose_codecs`), deterministically (zeroed plane padding, one thread).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
import numpy.typing as npt
from av.audio.stream import AudioStream
from av.video.reformatter import VideoReformatter
from av.video.stream import VideoStream

from msa_runtime.errors import InputError
from msa_runtime.media.timeline import SWSCALE_THREADS

AUDIO_PITCH_HZ: dict[int, float] = {-1: 200.0, 0: 500.0, 1: 1250.0}
VIDEO_RGB: dict[int, tuple[int, int, int]] = {
    -1: (40, 50, 150),  # dark blue
    0: (90, 150, 90),  # mid green
    1: (240, 170, 60),  # bright orange
}
DISC_RGB: tuple[int, int, int] = (205, 170, 150)

# (container, video codec, audio codec), in order of preference.
CODEC_CHOICES: tuple[tuple[str, str, str], ...] = (
    ("mp4", "h264", "aac"),
    ("mkv", "mpeg4", "mp2"),
    ("mkv", "mpeg4", "pcm_s16le"),
)

FloatArray = npt.NDArray[np.float64]
UInt8Array = npt.NDArray[np.uint8]


def _encoder_exists(name: str) -> bool:
    if name not in av.codecs_available:
        return False
    try:
        av.Codec(name, "w")
    except (av.FFmpegError, ValueError):  # UnknownCodecError is a ValueError in PyAV 18
        return False
    return True


def choose_codecs(available: Collection[str] | None = None) -> tuple[str, str, str]:
    """The first of :data:`CODEC_CHOICES` whose encoders exist: (container, video, audio).

    ``available`` overrides the set of usable encoder names (for tests); by default the
    encoders of the installed PyAV/FFmpeg are probed.
    """
    for choice in CODEC_CHOICES:
        _, vcodec, acodec = choice
        if available is not None:
            ok = vcodec in available and acodec in available
        else:
            ok = _encoder_exists(vcodec) and _encoder_exists(acodec)
        if ok:
            return choice
    wanted = ", ".join(f"{v}+{a}" for _, v, a in CODEC_CHOICES)
    raise InputError(
        f"PyAV has none of the encoder pairs {wanted}: install a PyAV wheel built with "
        "FFmpeg's standard encoders"
    )


def make_audio(
    factor: int, rng: np.random.Generator, *, duration: float, sample_rate: int
) -> npt.NDArray[np.float32]:
    """Mono waveform in ``[-1, 1]`` whose pitch carries ``factor``."""
    n = round(duration * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    f0 = AUDIO_PITCH_HZ[factor] * rng.uniform(0.95, 1.05)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    tone = (
        np.sin(2 * np.pi * f0 * t + phase)
        + 0.35 * np.sin(2 * np.pi * 2 * f0 * t + 2 * phase)
        + 0.15 * np.sin(2 * np.pi * 3 * f0 * t + 3 * phase)
    ) / 1.5
    rate = rng.uniform(3.0, 5.0)  # "syllables" per second
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * rate * t + rng.uniform(0.0, 2.0 * np.pi))
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.03) if n > 1 else np.ones(n)
    level = rng.uniform(0.25, 0.6)  # loudness: random, carries nothing
    wave = level * tone * envelope * fade + rng.normal(0.0, 0.005, n)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def make_frames(
    factor: int, rng: np.random.Generator, *, duration: float, fps: int, size: int
) -> list[UInt8Array]:
    """RGB frames (``size`` x ``size``) whose background colour carries ``factor``."""
    n = max(1, round(duration * fps))
    base = np.array(VIDEO_RGB[factor], dtype=np.float64) + rng.uniform(-12.0, 12.0, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    shade = 0.92 + 0.16 * (yy / max(size - 1, 1))  # gentle vertical gradient, same for all
    background = np.clip(base[None, None, :] * shade[:, :, None], 0, 255)
    disc = np.clip(np.array(DISC_RGB, dtype=np.float64) + rng.uniform(-10.0, 10.0, 3), 0, 255)
    radius = rng.uniform(0.14, 0.2) * size
    margin = radius + 2
    start = rng.uniform(margin, size - margin, 2)
    end = rng.uniform(margin, size - margin, 2)
    frames: list[UInt8Array] = []
    for i in range(n):
        w = i / max(n - 1, 1)
        cy, cx = (1 - w) * start + w * end
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        img = background.copy()
        img[mask] = disc
        frames.append(np.round(img).astype(np.uint8))
    return frames


def _yuv_frame(rgb: UInt8Array, reformatter: VideoReformatter) -> av.VideoFrame:
    rgb_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    frame = reformatter.reformat(rgb_frame, format="yuv420p", threads=SWSCALE_THREADS)
    # Zero the row padding of each plane: encoders may read it, and uninitialised bytes there
    # would make the output differ from run to run.
    for plane in frame.planes:
        buf = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)
        buf[:, plane.width :] = 0
    return frame


def write_clip(
    path: Path,
    frames: Sequence[UInt8Array],
    wave: npt.NDArray[np.float32],
    *,
    fps: int,
    sample_rate: int,
    codecs: tuple[str, str, str],
) -> None:
    """Encode ``frames`` (RGB) and the mono ``wave`` into the container file ``path`` with the
    (container, video codec, audio codec) triple ``codecs``."""
    _, vcodec, acodec = codecs
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        vstream = cast(VideoStream, container.add_stream(vcodec, rate=fps))
        vstream.width = width
        vstream.height = height
        vstream.pix_fmt = "yuv420p"
        vstream.time_base = Fraction(1, fps)
        if vcodec == "h264":
            vstream.options = {"preset": "veryfast", "crf": "18", "threads": "1"}
        else:
            vstream.bit_rate = 600_000
            vstream.options = {"threads": "1"}
        astream = cast(AudioStream, container.add_stream(acodec, rate=sample_rate))
        astream.layout = "mono"
        if acodec in {"aac", "mp2"}:
            astream.bit_rate = 64_000

        reformatter = VideoReformatter()  # reused: building a scaler per frame is slow
        for i, rgb in enumerate(frames):
            frame = _yuv_frame(rgb, reformatter)
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode(None):
            container.mux(packet)

        samples: npt.NDArray[Any]
        if acodec == "aac":  # FFmpeg's aac encoder takes planar float
            samples, fmt = wave, "fltp"
        else:  # mp2 and pcm_s16le take 16-bit integers
            samples, fmt = np.round(wave * 32767.0).astype(np.int16), "s16"
        chunk = 1024
        for offset in range(0, samples.shape[0], chunk):
            part = np.ascontiguousarray(samples[offset : offset + chunk][None, :])
            aframe = av.AudioFrame.from_ndarray(part, format=fmt, layout="mono")
            aframe.sample_rate = sample_rate
            aframe.pts = offset
            aframe.time_base = Fraction(1, sample_rate)
            for packet in astream.encode(aframe):
                container.mux(packet)
        for packet in astream.encode(None):
            container.mux(packet)
