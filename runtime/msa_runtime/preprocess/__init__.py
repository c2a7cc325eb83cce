"""Preprocessing: the one implementation shared by serving, training and export.

Frames (H x W x 3 uint8 RGB) become normalised ``[N, 3, S, S]`` float32 tensors (centre or face
crop, :func:`vision_squares`), audio becomes a normalised ``[1, samples]`` waveform, text becomes
token ids and a mask. numpy, PyAV, tokenizers and (for face crops) onnxruntime only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np

from msa_runtime.errors import InputError, PackError
from msa_runtime.face.cascade import FaceDetector
from msa_runtime.face.track import FaceTrack, TrackOptions, face_squares
from msa_runtime.limits import MAX_CHARS_PER_TOKEN
from msa_runtime.media.timeline import reformatter
from msa_runtime.pack import AudioPrep, TextPrep, VisionPrep

FACE_CROP_SIZE = 256
"""Side of the face crop before the encoder's resize (Ando et al.: MTCNN ``image_size=256``)."""
FACE_MARGIN = 0
"""Margin of the face crop, in pixels of the 256 px crop (Ando et al.: ``margin=0``)."""


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic resize of an RGB uint8 image with FFmpeg's swscale (through PyAV)."""
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    out = reformatter().reformat(frame, width=width, height=height, interpolation="BICUBIC")
    return out.to_ndarray()


def center_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to ``size`` (keeping the aspect ratio), then crop the centre."""
    h, w = rgb.shape[:2]
    if h < 1 or w < 1:
        raise InputError(f"empty frame of shape {rgb.shape}")
    scale = size / min(h, w)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    resized = resize_rgb(rgb, nw, nh)
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top : top + size, left : left + size]


def normalize_images(squares: np.ndarray, prep: VisionPrep) -> np.ndarray:
    """``[N, S, S, 3]`` uint8 -> ``[N, 3, S, S]`` float32, scaled to [0, 1] and standardised."""
    x: np.ndarray = squares.astype(np.float32) / 255.0
    x = (x - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def vision_batch(frames: np.ndarray | list[np.ndarray], prep: VisionPrep) -> np.ndarray:
    """Frames -> encoder input with the **centre** crop, whatever ``prep.crop`` says (encoder
    benchmarks and parity checks); scoring and training go through :func:`vision_squares`,
    which honours the face crop."""
    if len(frames) == 0:
        return np.zeros((0, 3, prep.image_size, prep.image_size), np.float32)
    squares = np.stack([center_square(np.asarray(f), prep.image_size) for f in frames])
    return normalize_images(squares, prep)


def vision_squares(
    frames: np.ndarray | Sequence[np.ndarray],
    prep: VisionPrep,
    detector: FaceDetector | None = None,
    track: FaceTrack | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Frames -> ``[N, S, S, 3]`` uint8 squares (``S = prep.image_size``), the crop of the pack.

    The one crop used by serving (:class:`msa_runtime.Analyzer`, streams) and training (the
    feature cache), so both see the same pixels. ``prep.crop == "center"``: the centre square.
    ``"face"``: the speaker's face is found (the ``detector`` on the first frame and every
    ``prep.face_redetect`` frames, followed with its last stage in between, see
    :mod:`msa_runtime.face.track`; the largest face, or the one overlapping ``track.previous``),
    cropped square to :data:`FACE_CROP_SIZE` px and resized like a centre crop; a frame without
    a face gets the centre crop. Returns the squares
    and, for the face crop, a bool per frame (face found) - ``None`` for the centre crop.
    A frame too small for the detector raises :class:`InputError`.
    """
    size = prep.image_size
    n = len(frames)
    if prep.crop != "face":
        if n == 0:
            return np.zeros((0, size, size, 3), np.uint8), None
        return np.stack([center_square(np.asarray(f), size) for f in frames]), None
    if detector is None:
        raise PackError(
            "the vision preprocessing says crop = 'face' but no face detector was "
            "given (a face-crop pack carries face_pnet/rnet/onet.onnx)"
        )
    track = track if track is not None else FaceTrack()
    options = TrackOptions(redetect=prep.face_redetect)
    return face_squares(
        frames,
        size,
        detector,
        track,
        center_square,
        crop_size=FACE_CROP_SIZE,
        margin=FACE_MARGIN,
        options=options,
        max_side=prep.face_max_side,
    )


def face_note(found: np.ndarray | None) -> str | None:
    """The note of a prediction whose frames had no face in some frames (None: nothing to say)."""
    if found is None or len(found) == 0 or bool(np.all(found)):
        return None
    missing = int(len(found) - np.count_nonzero(found))
    return f"face not found in {missing} of {len(found)} frames: centre crop used"


def split_face_time(timings: dict[str, float], face_ms: float) -> None:
    """Report face detection and cropping as ``face``, apart from the vision encoder's time."""
    if "vision" in timings:
        timings["vision"] = max(0.0, timings["vision"] - face_ms)
    timings["face"] = face_ms


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
            self.tokenizer = (
                Tokenizer.from_str(json_text) if json_text is not None else Tokenizer.from_file(str(path))
            )
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise PackError(f"cannot read tokenizer {path}: {exc}; rebuild the pack") from exc
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.prep = prep

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids [1, T], attention_mask [1, T])`` as int64.

        Long text is never tokenized whole: a prefix of ``max_tokens * MAX_CHARS_PER_TOKEN``
        characters, cut at a space, is tokenized first and doubled until it yields more than
        ``max_tokens`` tokens (or is the whole text), so a 10 MB transcript costs about as much
        as the tokens kept. Whole words stay whole, so the tokens kept are those of the full text.
        """
        limit = self.prep.max_tokens
        ids, whole = self._prefix_ids(text, limit)
        if len(ids) > limit:
            counted = f"{len(ids)} tokens" if whole else f"more than {limit} tokens"
            warnings.warn(
                f"text has {counted}; cut to the pack's limit of {limit}", UserWarning, stacklevel=3
            )
            ids = ids[: limit - 1] + ids[-1:]  # keep the closing [SEP]
        arr = np.asarray([ids], np.int64)
        return arr, np.ones_like(arr)

    def _prefix_ids(self, text: str, limit: int) -> tuple[list[int], bool]:
        """Token ids of the shortest word-aligned prefix with more than ``limit`` tokens (the
        closing special token stays last), and whether that prefix is the whole text."""
        chars = max(64, limit * MAX_CHARS_PER_TOKEN)
        while True:
            if chars >= len(text):
                return list(self.tokenizer.encode(text).ids), True
            cut = chars
            while cut > chars // 2 and not text[cut].isspace():  # back up to a word boundary
                cut -= 1
            if cut == chars // 2:  # no space in the second half: cut inside a very long "word"
                cut = chars
            ids = list(self.tokenizer.encode(text[:cut]).ids)
            if len(ids) > limit + 1:
                return ids, False
            chars *= 2
