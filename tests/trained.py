"""A tiny pack whose fusion head is trained, so that scores mean something in tests.

The ``tiny`` preset's encoders (seeded random weights) turn samples of the synthetic task of
:mod:`msa_export.data.synthetic` into features: the label is ``text + audio + video`` where
each modality's factor in ``{-1, 0, +1}`` is carried by the adjectives, the pitch and the
background colour. A gated head trained on those features (a few seconds) gives scores that
follow each modality, so tests can assert that a score moves the right way when one modality
changes, and that a broken preprocessing step (which changes what the encoders see) moves it.

Features for training are computed here with ONNX Runtime sessions on the pack's fp32 files and
the runtime's public preprocessing functions, not through :class:`msa_runtime.Analyzer`: a
bug in the Analyzer's own path then shows as a score that does not follow the factors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 16000
FPS = 3  # the tiny preset's frame rate
DURATION = 2.0
LAYERS = {"text": 2, "audio": 1, "vision": 2}  # the tiny preset's blocks (msa_export/presets/cards/tiny.toml)


@dataclass(frozen=True)
class Sample:
    """One synthetic clip as decoded arrays: text, 16 kHz mono audio, frames at 3 fps."""

    factors: tuple[int, int, int]  # text, audio, video
    text: str
    audio: np.ndarray
    frames: list[np.ndarray]

    @property
    def label(self) -> float:
        return float(sum(self.factors))


def make_sample(text: int, audio: int, video: int, seed: int, *, rate: int = RATE) -> Sample:
    """A synthetic sample with the given factors; ``seed`` varies words, pitch, colour, motion."""
    from msa_export.data.synthetic import make_audio, make_frames, make_text

    rng = np.random.default_rng([seed, text + 1, audio + 1, video + 1])
    words = make_text(text, rng)
    wave = make_audio(audio, rng, duration=DURATION, sample_rate=rate)
    frames = make_frames(video, rng, duration=DURATION, fps=FPS, size=96)
    return Sample((text, audio, video), words, wave, frames)


def all_factor_samples(seed: int) -> list[Sample]:
    """One sample of each of the 27 factor combinations."""
    f = (-1, 0, 1)
    return [
        make_sample(t, a, v, seed * 1000 + i)
        for i, (t, a, v) in enumerate((t, a, v) for t in f for a in f for v in f)
    ]


class Features:
    """Encoder features of samples, from the pack's fp32 files through the public preprocessing."""

    def __init__(self, pack: Path) -> None:
        import onnxruntime as ort

        from msa_runtime.pack import load_manifest
        from msa_runtime.preprocess import TextEncoder

        self.manifest = load_manifest(pack)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.sessions = {
            m: ort.InferenceSession(str(pack / e.files["fp32"]), opts, providers=["CPUExecutionProvider"])
            for m, e in self.manifest.encoders.items()
        }
        text = self.manifest.encoders["text"].prep
        self.tokens = TextEncoder(pack / text.tokenizer, text)

    def __call__(self, s: Sample) -> dict[str, np.ndarray]:
        from msa_runtime.preprocess import audio_batch, normalize_images, vision_squares

        enc = self.manifest.encoders
        ids, mask = self.tokens(s.text)
        text = self.sessions["text"].run(["hidden"], {"input_ids": ids, "attention_mask": mask})[0]
        wave = audio_batch(s.audio, enc["audio"].prep)
        audio = self.sessions["audio"].run(["hidden"], {"waveform": wave})[0]
        squares, _ = vision_squares(s.frames, enc["vision"].prep)
        pixels = normalize_images(squares, enc["vision"].prep)
        vision = self.sessions["vision"].run(["hidden"], {"pixel_values": pixels})[0]
        return {"text": text[0], "audio": audio[0], "vision": vision}


def train_head_checkpoint(pack: Path, out: Path, *, epochs: int = 80) -> Path:
    """Train a gated head on synthetic features of ``pack``'s encoders; write ``out`` (head.pt)."""
    from msa_export.models.heads import HeadConfig, save_checkpoint
    from msa_export.training.trainer import Split, TrainOptions, train_head

    feats = Features(pack)

    def split(seeds: range) -> Split:
        samples = [s for seed in seeds for s in all_factor_samples(seed)]
        rows = [feats(s) for s in samples]
        return Split(
            feats={m: [r[m] for r in rows] for m in ("text", "audio", "vision")},
            labels=np.array([s.label for s in samples], np.float32),
            ids=[str(i) for i in range(len(samples))],
        )

    train, dev = split(range(8)), split(range(100, 102))
    dims = {m: feats.manifest.encoders[m].hidden_size for m in ("text", "audio", "vision")}
    cfg = HeadConfig(kind="gated", dims=dims, hidden=32, embed=16, heads=4, dropout=0.0)
    result = train_head(cfg, train, dev, seed=0, opts=TrainOptions(epochs=epochs, lr=3e-3))
    save_checkpoint(
        out,
        result.head,
        cfg,
        layers=dict(LAYERS),
        encoders={m: {"kind": e.kind} for m, e in feats.manifest.encoders.items()},
        preset="tiny",
        metrics={"dev_mae": result.dev_loss},
    )
    return out


def write_clip(path: Path, samples: list[Sample], *, video_fps: int = 15) -> Path:
    """Concatenate samples into one clip: FFV1 video (lossless) at ``video_fps`` (each 3 fps
    frame held for ``video_fps / 3`` frames) and 16-bit PCM audio at 16 kHz, in Matroska, with
    audio and video interleaved in time order (as a recorder writes them)."""
    import av

    repeat = video_fps // FPS
    frames = [f for s in samples for f in s.frames for _ in range(repeat)]
    wave = np.concatenate([s.audio for s in samples])
    pcm = np.clip(np.round(wave * 32767), -32768, 32767).astype(np.int16)
    with av.open(str(path), "w", format="matroska") as out:
        vs = out.add_stream("ffv1", rate=video_fps)
        vs.width, vs.height, vs.pix_fmt = frames[0].shape[1], frames[0].shape[0], "bgr0"
        aud = out.add_stream("pcm_s16le", rate=RATE, layout="mono")
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="bgr0")
            frame.pts = i
            out.mux(vs.encode(frame))
            a, b = round(i * RATE / video_fps), round((i + 1) * RATE / video_fps)
            if i == len(frames) - 1:
                b = len(pcm)
            if b > a:
                chunk = av.AudioFrame.from_ndarray(pcm[None, a:b], format="s16", layout="mono")
                chunk.sample_rate, chunk.pts = RATE, a
                out.mux(aud.encode(chunk))
        out.mux(vs.encode(None))
        out.mux(aud.encode(None))
    return path
