"""Deterministic media generated with PyAV for the media tests.

Every video frame carries its own index as a row of black/white stripes in the top half of the
picture (bit 0 is the leftmost stripe), so a test can tell which source frame a decoder picked;
the bottom half is filled with a solid colour. Every audio channel carries the same sine tone.

Encoders depend on the FFmpeg build inside PyAV; :func:`pick_encoder` falls back to a close
alternative when a preferred one is missing (for example native ``vorbis`` for ``libvorbis``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

#: Number of index stripes drawn in every frame (frame indices up to 2**INDEX_BITS - 1).
INDEX_BITS = 10

AUTO = "auto"

# suffix -> (container format, default video encoders, default audio encoders); the first
# available encoder of each tuple is used.
_CONTAINERS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    ".mp4": ("mp4", ("libx264", "h264", "mpeg4"), ("aac",)),
    ".mov": ("mov", ("libx264", "h264", "mpeg4"), ("aac",)),
    ".webm": ("webm", ("libvpx-vp9", "libvpx"), ("libopus", "opus", "vorbis")),
    ".mkv": ("matroska", ("libx264", "h264", "mpeg4"), ("flac", "aac")),
    ".avi": ("avi", ("mpeg4",), ("libmp3lame", "pcm_s16le")),
    ".mpg": ("mpeg", ("mpeg1video",), ("mp2",)),
    ".wav": ("wav", (), ("pcm_s16le",)),
    ".flac": ("flac", (), ("flac",)),
    ".ogg": ("ogg", (), ("libvorbis", "vorbis", "libopus", "flac")),
    ".mp3": ("mp3", (), ("libmp3lame", "mp3")),
}

AUDIO_ONLY_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
AV_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mpg")

# Encoders that only exist as "experimental" in FFmpeg and need strict=-2.
_EXPERIMENTAL = {"vorbis", "opus"}


def encoder_available(name: str) -> bool:
    """True if this PyAV build can encode with ``name``."""
    try:
        av.codec.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def pick_encoder(candidates: Sequence[str]) -> str | None:
    """The first available encoder among ``candidates`` (None if none is)."""
    for name in candidates:
        if encoder_available(name):
            return name
    return None


def container_codecs(suffix: str) -> tuple[str | None, str | None]:
    """The (video, audio) encoders :func:`make_clip` uses by default for a file suffix."""
    _, video, audio = _CONTAINERS[suffix]
    return pick_encoder(video), pick_encoder(audio)


def index_pattern(index: int, size: tuple[int, int], color: tuple[int, int, int]) -> np.ndarray:
    """The RGB picture of frame ``index``: index stripes on top, ``color`` below."""
    width, height = size
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[height // 2 :] = np.array(color, dtype=np.uint8)
    stripe = width // INDEX_BITS
    top = img[: height // 2]
    top[:] = 0
    for bit in range(INDEX_BITS):
        if (index >> bit) & 1:
            top[:, bit * stripe : (bit + 1) * stripe] = 255
    return img


def read_index(rgb: np.ndarray) -> int:
    """Recover the frame index drawn by :func:`index_pattern` from a decoded RGB frame."""
    height, width = rgb.shape[:2]
    stripe = width // INDEX_BITS
    # Sample the centre of every stripe, away from edges blurred by chroma subsampling.
    band = rgb[height // 8 : height // 2 - height // 8].astype(np.float64).mean(axis=(0, 2))
    value = 0
    for bit in range(INDEX_BITS):
        lo = bit * stripe + stripe // 4
        hi = (bit + 1) * stripe - stripe // 4
        if band[lo:hi].mean() > 127:
            value |= 1 << bit
    return value


def _closest_rate(codec: str, wanted: int) -> int:
    rates = av.codec.Codec(codec, "w").audio_rates
    if not rates:
        return wanted
    return min(rates, key=lambda r: (abs(r - wanted), -r))


def _sine(start: int, count: int, rate: int, tone_hz: float, channels: int) -> np.ndarray:
    t = (np.arange(start, start + count, dtype=np.float64)) / rate
    mono = (0.5 * np.sin(2 * math.pi * tone_hz * t)).astype(np.float32)
    return np.repeat(mono[None, :], channels, axis=0)


def _add_audio(container: av.container.OutputContainer, codec: str, rate: int, channels: int):
    rate = _closest_rate(codec, rate)
    layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(channels, f"{channels}c")
    stream = container.add_stream(codec, rate=rate, layout=layout)
    if codec in _EXPERIMENTAL:
        stream.codec_context.options = {"strict": "experimental"}
    return stream


def _mux_audio(container, packet, fmt: str, shift: int | None) -> int:
    """Mux an audio packet; in AVI, shift encoder-delay (negative) timestamps to start at 0.

    AVI cannot store negative timestamps: FFmpeg would shift every stream instead, which moves
    the video frames off their ``i / fps`` grid (1/25 s ticks) and breaks frame-index checks.
    """
    if shift is None:
        shift = -packet.pts if (fmt == "avi" and packet.pts is not None and packet.pts < 0) else 0
    if shift and packet.pts is not None:
        packet.pts += shift
        packet.dts = packet.pts
    container.mux(packet)
    return shift


def make_clip(
    path: str | os.PathLike[str],
    *,
    duration: float = 2.0,
    fps: float = 25,
    size: tuple[int, int] = (160, 120),
    video_codec: str | None = AUTO,
    audio_codec: str | None = AUTO,
    sample_rate: int = 44100,
    channels: int = 2,
    tone_hz: float = 440.0,
    color: tuple[int, int, int] | None = None,
    frame_times: Sequence[float] | None = None,
) -> Path:
    """Write a synthetic clip to ``path``; the container is picked from the suffix.

    ``video_codec``/``audio_codec``: an encoder name, ``"auto"`` for the container's default (see
    ``_CONTAINERS``; audio-only suffixes get no video) or None to leave that stream out.
    ``size`` is (width, height). The audio rate is moved to the closest one the encoder supports
    (48 kHz for Opus). ``frame_times`` (seconds) gives variable-frame-rate timestamps instead of
    ``i / fps``; frame ``i`` still shows index ``i``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _CONTAINERS:
        raise ValueError(f"no container for suffix {suffix!r}; known: {sorted(_CONTAINERS)}")
    fmt, video_defaults, audio_defaults = _CONTAINERS[suffix]
    vcodec = pick_encoder(video_defaults) if video_codec == AUTO else video_codec
    acodec = pick_encoder(audio_defaults) if audio_codec == AUTO else audio_codec
    if vcodec is None and acodec is None:
        raise ValueError("make_clip needs at least one of video_codec and audio_codec")
    color = color if color is not None else (64, 128, 192)

    with av.open(str(path), mode="w", format=fmt) as container:
        vstream: Any = None
        astream: Any = None
        if vcodec is not None:
            rate = Fraction(fps).limit_denominator(1001)
            vstream = container.add_stream(vcodec, rate=rate)
            vstream.width, vstream.height = size
            vstream.pix_fmt = "yuv420p"
            if frame_times is not None:
                vstream.codec_context.time_base = Fraction(1, 1000)
            if vcodec in ("libx264",):
                vstream.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency"}
            elif vcodec.startswith("libvpx"):
                vstream.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
            else:
                vstream.codec_context.bit_rate = 800_000
        if acodec is not None:
            astream = _add_audio(container, acodec, sample_rate, channels)

        # Interleave: write audio and video in half-second slices.
        n_frames = len(frame_times) if frame_times is not None else round(duration * fps)
        total_samples = round(duration * astream.rate) if astream is not None else 0
        frame_i = 0
        sample_i = 0
        shift: int | None = None
        slice_s = 0.5
        t = 0.0
        while True:
            t += slice_s
            if vstream is not None:
                while frame_i < n_frames:
                    ft = frame_times[frame_i] if frame_times is not None else frame_i / fps
                    if ft >= t:
                        break
                    img = index_pattern(frame_i, size, color)
                    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                    if frame_times is not None:
                        frame.pts = round(ft * 1000)
                        frame.time_base = Fraction(1, 1000)
                    else:
                        frame.pts = frame_i
                    for packet in vstream.encode(frame):
                        container.mux(packet)
                    frame_i += 1
            if astream is not None:
                block = 1024
                stop = min(total_samples, round(t * astream.rate))
                while sample_i < stop:
                    count = min(block, stop - sample_i)
                    data = _sine(sample_i, count, astream.rate, tone_hz, astream.channels)
                    aframe = av.AudioFrame.from_ndarray(data, format="fltp", layout=astream.layout)
                    aframe.sample_rate = astream.rate
                    aframe.pts = sample_i
                    aframe.time_base = Fraction(1, astream.rate)
                    for packet in astream.encode(aframe):
                        shift = _mux_audio(container, packet, fmt, shift)
                    sample_i += count
            if frame_i >= (n_frames if vstream is not None else 0) and sample_i >= total_samples:
                break
        if vstream is not None:
            for packet in vstream.encode(None):
                container.mux(packet)
        if astream is not None:
            for packet in astream.encode(None):
                shift = _mux_audio(container, packet, fmt, shift)
    return path


def make_silent_video(path: str | os.PathLike[str], **kwargs: object) -> Path:
    """A clip with a video stream and no audio stream."""
    return make_clip(path, audio_codec=None, **kwargs)  # type: ignore[arg-type]


def make_truncated(src: str | os.PathLike[str], dst: str | os.PathLike[str], keep: float) -> Path:
    """Copy the first ``keep`` fraction (0..1) of the bytes of ``src`` to ``dst``."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def make_corrupt(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], at: float, length: int = 4096
) -> Path:
    """Copy ``src`` to ``dst`` with ``length`` bytes of garbage written at fraction ``at``."""
    data = bytearray(Path(src).read_bytes())
    pos = int(len(data) * at)
    rng = np.random.default_rng(1234)
    data[pos : pos + length] = (
        rng.integers(0, 256, size=min(length, len(data) - pos)).astype(np.uint8).tobytes()
    )
    dst = Path(dst)
    dst.write_bytes(bytes(data))
    return dst


def make_not_media(path: str | os.PathLike[str]) -> Path:
    """A file with a media suffix that holds plain text."""
    path = Path(path)
    path.write_text("this is not a video, just some text\n" * 50, encoding="utf-8")
    return path


def make_vfr_clip(path: str | os.PathLike[str], frame_times: Sequence[float], **kwargs: object):
    """A video-only clip whose frame ``i`` is shown from ``frame_times[i]`` (seconds)."""
    duration = float(frame_times[-1]) + 0.1
    return make_clip(
        path,
        audio_codec=None,
        frame_times=frame_times,
        duration=duration,
        **kwargs,  # type: ignore[arg-type]
    )


def make_empty(path: str | os.PathLike[str], codec: str = "pcm_s16le") -> Path:
    """A container with an audio stream header and no samples at all (zero duration)."""
    path = Path(path)
    fmt = _CONTAINERS[path.suffix.lower()][0]
    with av.open(str(path), mode="w", format=fmt) as container:
        container.add_stream(codec, rate=16000, layout="mono")
        container.start_encoding()
    return path


def portrait() -> np.ndarray:
    """scikit-image's public-domain astronaut portrait (512x512 RGB); needs scikit-image."""
    from skimage.data import astronaut

    return np.asarray(astronaut())


def moving_face_frames(
    count: int,
    *,
    size: tuple[int, int] = (640, 360),
    speed: float = 8.0,
    zoom: float = 0.15,
    scale: float = 0.75,
    image: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Frames of a speaker moving: a head-and-shoulders square of the portrait, scaled to ``scale``
    x the frame height (+- ``zoom`` over the clip; the face is then about a quarter of the frame
    height), travels along an ellipse around the frame centre at about ``speed`` px per frame,
    on a grey background. ``size`` is (width, height). Deterministic."""
    from msa_runtime.face.area import resize_image

    face = portrait()[10:330, 64:384] if image is None else image
    width, height = size
    frames = []
    radius_x, radius_y = width * 0.18, height * 0.08
    circumference = 2 * math.pi * math.sqrt((radius_x**2 + radius_y**2) / 2)
    step = 2 * math.pi * speed / max(circumference, 1e-6)
    for i in range(count):
        side = int(round(height * scale * (1.0 + zoom * math.sin(i * 0.37))))
        side = max(16, min(side, height))
        pic = resize_image(face, side, side)
        cx = width / 2 + radius_x * math.cos(i * step)
        cy = height / 2 + radius_y * math.sin(i * step)
        left = int(round(min(max(cx - side / 2, 0), width - side)))
        top = int(round(min(max(cy - side / 2, 0), height - side)))
        canvas = np.full((height, width, 3), 90, dtype=np.uint8)
        canvas[top : top + side, left : left + side] = pic
        frames.append(canvas)
    return frames
