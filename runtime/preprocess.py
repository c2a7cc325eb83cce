"""Preprocessing: the one implementation shared by serving, training and export.

Frames (H x W x 3 uint8 RGB) become normalised ``[N, 3, S, S]`` float32 tensors, audio becomes a
normalised ``[1, samples]`` waveform, text becomes token ids and a mask. numpy, PyAV and
tokenizers only.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import av
import numpy as np
from msa_runtime.errors import InputError, PackError
from msa_runtime.pack import AudioPrep, TextPrep, VisionPrep


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic resize of an RGB uint8 image with FFmpeg's swscale (through PyAV)."""
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=width, height=height, interpolation="BICUBIC").to_ndarray()


def center_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to ``size`` (keeping the aspect ratio), then crop the centre."""
    h, w = rgb.shape[:2]
    if h < 1 or w < 1:
        raise InputError(f"empty frame of shape {rgb.shape}")
    scale = size / min(h, w)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    resized = resize_rgb(rgb, nw, nh)
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top:top + size, left:left + size]


def normalize_images(squares: np.ndarray, prep: VisionPrep) -> np.ndarray:
    """``[N, S, S, 3]`` uint8 -> ``[N, 3, S, S]`` float32, scaled to [0, 1] and standardised."""
    x: np.ndarray = squares.astype(np.float32) / 255.0
    x = (x - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def vision_batch(frames: np.ndarray | list[np.ndarray], prep: VisionPrep) -> np.ndarray:
    """Frames -> encoder input with the centre crop (the face crop goes through
    :func:`normalize_images` after the detector)."""
    if len(frames) == 0:
        return np.zeros((0, 3, prep.image_size, prep.image_size), np.float32)
    squares = np.stack([center_square(np.asarray(f), prep.image_size) for f in frames])
    return normalize_images(squares, prep)


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


class TextEncoder:
    """Tokenisation with the pack's ``tokenizer.json``; cuts over-long text with a warning."""

    def __init__(self, path: str | Path, prep: TextPrep, *, json_text: str | None = None) -> None:
        from tokenizers import Tokenizer

        try:
            self.tokenizer = (Tokenizer.from_str(json_text) if json_text is not None
                              else Tokenizer.from_file(str(path)))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise PackError(f"cannot read tokenizer {path}: {exc}; rebuild the pack") from exc
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.prep = prep

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids [1, T], attention_mask [1, T])`` as int64."""
        ids = self.tokenizer.encode(text).ids
        limit = self.prep.max_tokens
        if len(ids) > limit:
            warnings.warn(f"text has {len(ids)} tokens; cut to the pack's limit of {limit}",
                          UserWarning, stacklevel=3)
            ids = ids[:limit - 1] + ids[-1:]  # keep the closing [SEP]
        arr = np.asarray([ids], np.int64)
        return arr, np.ones_like(arr)
