"""Preprocessing: the one implementation shared by serving, training and export.

Frames (H x W x 3 uint8 RGB) become normalised ``[N, 3, S, S]`` float32 tensors (centre or face
crop, :func:`vision_squares`), audio becomes a normalised ``[1, samples]`` waveform, text becomes
token ids and a mask. numpy, PyAV, tokenizers and (for face crops) onnxruntime only.
"""

from msa_runtime.face.track import FaceTrack
from msa_runtime.preprocess.audio import audio_batch
from msa_runtime.preprocess.text import TextEncoder
from msa_runtime.preprocess.vision import (
    FACE_CROP_SIZE,
    FACE_MARGIN,
    center_square,
    face_note,
    normalize_images,
    resize_rgb,
    split_face_time,
    vision_batch,
    vision_squares,
)

__all__ = [
    "FACE_CROP_SIZE",
    "FACE_MARGIN",
    "FaceTrack",
    "TextEncoder",
    "audio_batch",
    "center_square",
    "face_note",
    "normalize_images",
    "resize_rgb",
    "split_face_time",
    "vision_batch",
    "vision_squares",
]
