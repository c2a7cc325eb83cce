"""The benchmark's media: the 5 s clip every contender sees, and the long stream clip."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

TEXT = "Honestly I thought the movie would be boring, but the ending completely won me over."


def clip_inputs(
    frames: int = 15,
    seconds: float = 5.0,
    rate: int = 16000,
    height: int = 480,
    width: int = 640,
    seed: int = 0,
) -> dict[str, Any]:
    """A deterministic 5 s clip: RGB frames (a lit background with a person: scikit-image's
    astronaut portrait drifting a few pixels per frame, so face-crop presets find a face; a
    moving ellipse without scikit-image; sensor noise) and a voiced-sounding waveform
    (harmonics on a gliding pitch, syllable envelope, noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([60 + 80 * xx / width, 70 + 60 * yy / height, 90 + 40 * (xx + yy) / (width + height)], -1)
    portrait = _portrait(height, width)
    person = portrait.astype(np.float32) if portrait is not None else None
    out = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):
        img = base.copy()
        if person is not None:
            ph, pw = person.shape[:2]
            top, left = 20 + 2 * (i % 5), (width - pw) // 2 + 3 * i - 20
            img[top : top + ph, left : left + pw] = person
        else:
            cx, cy = width * (0.4 + 0.02 * i), height * (0.45 + 0.01 * math.sin(i))
            inside = ((xx - cx) / (0.18 * width)) ** 2 + ((yy - cy) / (0.3 * height)) ** 2 < 1.0
            img[inside] = (200, 160, 140)
        img += rng.normal(0, 4, img.shape).astype(np.float32)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.4 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    audio = (0.1 * voice * envelope + 0.01 * rng.normal(size=n)).astype(np.float32)
    return {"frames": out, "audio": audio, "sample_rate": rate, "text": TEXT}


def _srt_time(s: float) -> str:
    ms = int(round(s * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def _portrait(height: int, width: int) -> np.ndarray | None:
    """scikit-image's astronaut portrait cut to ``height - 40`` px (shrunk, nearest pixel, when
    wider than 70% of ``width``); None without scikit-image."""
    try:
        from skimage.data import astronaut
    except ImportError:
        return None
    person = np.asarray(astronaut()[: height - 40, 40:440])
    ph, pw = person.shape[:2]
    if pw > 0.7 * width:
        scale = 0.7 * width / pw
        rows = np.arange(max(1, int(ph * scale))) * ph // max(1, int(ph * scale))
        cols = np.arange(max(1, int(pw * scale))) * pw // max(1, int(pw * scale))
        person = person[rows][:, cols]
    return person


def _encode_video(out: Any, vs: Any, person: np.ndarray | None, fps: int, frames: int, rng: Any) -> None:
    """``frames`` frames into ``vs``: the speaker swaying (or a block wandering) in front of a
    gradient, with a noisy band on top (so no two frames encode alike)."""
    import av

    w, h = vs.width, vs.height
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([60 + 80 * xx / w, 70 + 60 * yy / h, np.full((h, w), 110.0)], -1).astype(np.uint8)
    for i in range(frames):
        img = base.copy()
        if person is not None:
            ph, pw = person.shape[:2]
            left = (w - pw) // 2 + int(min(40, (w - pw) // 2) * math.sin(0.5 * i / fps))
            top = h - ph + int(8 * math.sin(1.3 * i / fps))
            img[top : top + ph, left : left + pw] = person[: h - top]
        else:
            cx = int(w * (0.5 + 0.2 * math.sin(i / fps)))
            cy = int(h * (0.5 + 0.1 * math.cos(0.7 * i / fps)))
            img[max(0, cy - 120) : cy + 120, max(0, cx - 80) : cx + 80] = (200, 160, 140)
        img[:8, :] = rng.integers(0, 255, (8, w, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        for packet in vs.encode(frame):
            out.mux(packet)
    for packet in vs.encode():
        out.mux(packet)


def _encode_audio(out: Any, aus: Any, seconds: float, rate: int, rng: Any) -> None:
    """A voiced-sounding wave (two harmonics on a gliding pitch, syllable envelope, noise) into
    ``aus`` in chunks of 1024 samples."""
    import av

    chunk = 1024
    total = int(seconds * rate)
    t = np.arange(total) / rate
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.2 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = (
        0.1 * (np.sin(phase) + 0.5 * np.sin(2 * phase)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2)
        + 0.005 * rng.standard_normal(total)
    ).astype(np.float32)
    for pos in range(0, total, chunk):
        part = wave[pos : pos + chunk]
        aframe = av.AudioFrame.from_ndarray(part[None], format="flt", layout="mono")
        aframe.sample_rate = rate
        aframe.pts = pos
        for packet in aus.encode(aframe):
            out.mux(packet)
    for packet in aus.encode():
        out.mux(packet)


WORDS = (
    "i really liked how calm and clear the speaker was today but the ending felt rushed "
    "and a little disappointing overall it was fine"
).split()


def _transcript(seconds: float, rng: Any) -> str:
    """An .srt of ``seconds``: a cue of 8 random words every 2.5 s."""
    lines = []
    cue, start = 1, 0.0
    while start < seconds:
        end = min(seconds, start + 2.5)
        text = " ".join(rng.choice(WORDS, size=8))
        lines += [str(cue), f"{_srt_time(start)} --> {_srt_time(end)}", text, ""]
        cue, start = cue + 1, end
    return "\n".join(lines)


def make_stream_clip(
    folder: Path,
    seconds: float,
    fps: int = 25,
    size: tuple[int, int] = (640, 480),
    rate: int = 48000,
    face: bool = True,
) -> tuple[Path, Path]:
    """An H.264/AAC mp4 (webcam-like 640x480 at 25 fps, 48 kHz audio) and an .srt transcript
    with a cue every 2.5 s. Deterministic. ``face``: a speaker (scikit-image's astronaut
    portrait, swaying slowly like a person at a webcam) in front of the background, so face-crop
    presets follow a face as in real use; else a skin-coloured block wanders about, and a
    face-crop preset runs the full detector on every frame (its worst case)."""
    import av

    person = _portrait(size[1], size[0]) if face else None
    folder.mkdir(parents=True, exist_ok=True)
    kind = "_face" if person is not None else ""
    media = folder / f"stream_{int(seconds)}s_{size[0]}x{size[1]}_{fps}fps{kind}.mp4"
    srt = media.with_suffix(".srt")
    if media.is_file() and srt.is_file():
        return media, srt
    tmp = media.with_suffix(".partial.mp4")
    w, h = size
    # one generator for the frames, then the audio, then the transcript: that order is the clip
    rng = np.random.default_rng(0)
    with av.open(str(tmp), "w") as out:
        vs = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "28"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aus = out.add_stream("aac", rate=rate, layout="mono")
        _encode_video(out, vs, person, fps, int(seconds * fps), rng)
        _encode_audio(out, aus, seconds, rate, rng)
    tmp.rename(media)
    srt.write_text(_transcript(seconds, rng), encoding="utf-8")
    return media, srt
