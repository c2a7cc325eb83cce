"""Face boxes for the MTCNN cascade and the face crop: the pyramid, NMS, squaring, regression, crop windows,
IoU, the choice of the speaker's face, and the crop itself (numpy only).

Conventions follow facenet-pytorch's ``detect_face`` and ``extract_face`` (see
:mod:`msa_runtime.face.cascade`): boxes are float32 ``(x1, y1, x2, y2)`` in pixels.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from msa_runtime.errors import InputError
from msa_runtime.face.area import resize_image
from msa_runtime.pack.face import DEFAULT_FACTOR, DEFAULT_MIN_FACE_SIZE

DEFAULT_CROP_SIZE = 256
DEFAULT_MARGIN = 0
"""facenet-pytorch's default margin (pixels of the output crop, see :func:`crop_face`)."""

Method = Literal["largest", "probability"]

CELL = 12  # P-net's receptive field
STRIDE = 2
_NMS_MATRIX_MAX = 1024  # up to this many boxes, NMS computes all pairwise overlaps at once (4 MB)


def pyramid_scales(
    height: int,
    width: int,
    min_face_size: float = DEFAULT_MIN_FACE_SIZE,
    factor: float = DEFAULT_FACTOR,
) -> list[float]:
    """The scales of MTCNN's image pyramid for a frame; :class:`InputError` if there is none.

    The first scale maps the minimum face size to P-net's 12 px window; each next one is
    ``factor`` times smaller, while the frame's shorter side stays at least 12 px.
    """
    m = CELL / min_face_size
    shorter = min(height, width) * m
    if shorter < CELL:
        raise InputError(
            f"frame {width}x{height} is too small for face detection: its shorter side must be at "
            f"least the minimum face size ({min_face_size:g} px); use larger frames or a smaller "
            "min_face_size"
        )
    scales = []
    scale = m
    while shorter >= CELL:
        scales.append(scale)
        scale = scale * factor
        shorter = shorter * factor
    return scales


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    *,
    mode: Literal["union", "min"] = "union",
    plus_one: bool = False,
) -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, best score first.

    A box is dropped when its overlap with a kept, better box exceeds ``threshold``. ``mode``
    "union" divides the intersection by the union (IoU), "min" by the smaller area. With
    ``plus_one`` widths are ``x2 - x1 + 1`` (the pixel-inclusive convention of MTCNN's last
    stage); without it ``x2 - x1`` (torchvision's ``nms``, used by the first two stages).
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    one = np.float32(1.0 if plus_one else 0.0)
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    area = (x2 - x1 + one) * (y2 - y1 + one)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    if len(boxes) <= _NMS_MATRIX_MAX:
        # All pairwise overlaps at once (the same float32 arithmetic as the loop below, pair by
        # pair), then the greedy pass only looks them up.
        w = np.maximum(
            np.float32(0.0), np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :]) + one
        )
        h = np.maximum(
            np.float32(0.0), np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :]) + one
        )
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):  # empty boxes: NaN, kept below
            if mode == "min":
                overlap = inter / np.minimum(area[:, None], area[None, :])
            else:
                overlap = inter / (area[:, None] + area[None, :] - inter)
        suppress = overlap > threshold  # NaN (empty boxes) keeps, like the reference
        while order.size > 0:
            i = int(order[0])
            keep.append(i)
            rest = order[1:]
            order = rest[~suppress[i, rest]]
        return np.asarray(keep, dtype=np.int64)
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(np.float32(0.0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + one)
        h = np.maximum(np.float32(0.0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + one)
        inter = w * h
        if mode == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / (area[i] + area[rest] - inter)
        order = rest[~(overlap > threshold)]  # NaN (empty boxes) keeps, like the reference
    return np.asarray(keep, dtype=np.int64)


def square_boxes(boxes: np.ndarray) -> np.ndarray:
    """Grow boxes (columns x1, y1, x2, y2) to squares around their centres (float32, in place)."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    half = np.float32(0.5)
    boxes[:, 0] = boxes[:, 0] + w * half - side * half
    boxes[:, 1] = boxes[:, 1] + h * half - side * half
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def regress_boxes(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply R-/O-net box regression (offsets relative to pixel-inclusive width and height)."""
    one = np.float32(1.0)
    w = boxes[:, 2] - boxes[:, 0] + one
    h = boxes[:, 3] - boxes[:, 1] + one
    out = boxes.copy()
    out[:, 0] = boxes[:, 0] + reg[:, 0] * w
    out[:, 1] = boxes[:, 1] + reg[:, 1] * h
    out[:, 2] = boxes[:, 2] + reg[:, 2] * w
    out[:, 3] = boxes[:, 3] + reg[:, 3] * h
    return out


def crop_windows(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, ...]:
    """Integer crop windows ``[y0:y1, x0:x1]`` of boxes, clipped to the frame (no padding)."""
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x0 = np.maximum(b[:, 0], 1) - 1
    y0 = np.maximum(b[:, 1], 1) - 1
    x1 = np.minimum(b[:, 2], width)
    y1 = np.minimum(b[:, 3], height)
    return y0, y1, x0, x1


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box ``(4,)`` with each of ``boxes`` ``(N, 4)`` (x1, y1, x2, y2)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    box = np.asarray(box, dtype=np.float64).reshape(4)
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0.0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0.0, None)
    inter = w * h
    area = max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def check_frame(rgb: Any) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise InputError(f"a frame must be a numpy array (H, W, 3) uint8 RGB, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(
            f"a frame must be RGB with shape (H, W, 3), got {rgb.shape}; convert grayscale with "
            "np.repeat(gray[..., None], 3, axis=2)"
        )
    if rgb.dtype != np.uint8:
        raise InputError(
            f"a frame must be uint8 RGB (0-255), got {rgb.dtype}; convert with "
            "np.clip(frame, 0, 255).astype(np.uint8)"
        )
    return rgb


def choose_face(
    boxes: np.ndarray,
    probs: np.ndarray,
    previous: np.ndarray | None = None,
    *,
    method: Method = "largest",
    min_iou: float = 0.3,
) -> int | None:
    """Index of the speaker's face among ``boxes`` (``None`` when there is none).

    Stable across frames: when ``previous`` (the box chosen in the previous frame) is given and
    some box overlaps it with IoU >= ``min_iou``, the box overlapping it most is kept. Otherwise
    ``method`` decides: "largest" area (facenet-pytorch's default) or highest "probability".
    """
    if method not in ("largest", "probability"):
        raise InputError(f"unknown face selection method {method!r}; use 'largest' or 'probability'")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    if len(boxes) != len(probs):
        raise InputError(f"{len(boxes)} boxes but {len(probs)} probabilities")
    if len(boxes) == 0:
        return None
    if previous is not None:
        iou = box_iou(np.asarray(previous, dtype=np.float64), boxes)
        best = int(np.argmax(iou))
        if iou[best] >= min_iou:
            return best
    if method == "probability":
        return int(np.argmax(probs))
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    return int(np.argmax(area))


def margin_box(
    box: np.ndarray,
    frame_width: int,
    frame_height: int,
    size: int = DEFAULT_CROP_SIZE,
    margin: float = DEFAULT_MARGIN,
) -> tuple[int, int, int, int]:
    """The integer crop window (x1, y1, x2, y2) of a face box with margin, clipped to the frame.

    facenet-pytorch's ``extract_face`` convention: ``margin`` is in pixels of the final
    ``size`` x ``size`` crop, so the box grows by ``margin * box_width / (size - margin)``
    horizontally (and likewise vertically), half on each side.
    """
    if not 0 <= margin < size:
        raise InputError(f"margin must be in [0, size) = [0, {size}), got {margin}")
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise InputError(f"face box {box} is not finite")
    mx = margin * (x2 - x1) / (size - margin)
    my = margin * (y2 - y1) / (size - margin)
    return (
        int(max(x1 - mx / 2, 0)),
        int(max(y1 - my / 2, 0)),
        int(min(x2 + mx / 2, frame_width)),
        int(min(y2 + my / 2, frame_height)),
    )


def crop_face(
    rgb: np.ndarray, box: np.ndarray, size: int = DEFAULT_CROP_SIZE, margin: float = DEFAULT_MARGIN
) -> np.ndarray:
    """The face crop ``(size, size, 3)`` uint8 of a box, with ``margin`` as in :func:`margin_box`.

    The window is clipped to the frame and resized to a square (area average when shrinking,
    bilinear when enlarging), as facenet-pytorch's ``extract_face`` does on numpy frames.
    """
    rgb = check_frame(rgb)
    if size < 1:
        raise InputError(f"crop size must be at least 1 px, got {size}")
    height, width = rgb.shape[:2]
    x1, y1, x2, y2 = margin_box(box, width, height, size, margin)
    if x2 <= x1 or y2 <= y1:
        raise InputError(
            f"face box {np.asarray(box).tolist()} lies outside the {width}x{height} frame; "
            "pass a box from detect() on this frame"
        )
    return resize_image(rgb[y1:y2, x1:x2], size, size)
