"""Frames -> ``[N, 3, S, S]`` float32: the centre or face crop, resize and normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import av
import numpy as np

from msa_runtime.errors import InputError, PackError
from msa_runtime.face.cascade import FaceDetector
from msa_runtime.face.track import FaceTrack, TrackOptions, face_squares
from msa_runtime.media.timeline import SWSCALE_THREADS, reformatter
from msa_runtime.pack import VisionPrep

FACE_CROP_SIZE = 256
"""Side of the face crop before the encoder's resize (Ando et al.: MTCNN ``image_size=256``)."""
FACE_MARGIN = 0
"""Margin of the face crop, in pixels of the 256 px crop (Ando et al.: ``margin=0``)."""


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic resize of an RGB uint8 image with FFmpeg's swscale (through PyAV)."""
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    out = reformatter().reformat(
        frame, width=width, height=height, interpolation="BICUBIC", threads=SWSCALE_THREADS
    )
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
