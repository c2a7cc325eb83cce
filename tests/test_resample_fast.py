"""The face crop's fast paths give exactly what their straightforward versions give.

Area resampling by window matrices, NMS over a precomputed overlap matrix, the column pass of
``resize_image`` and the cached swscale context are speed-ups only: each is checked here against
the direct computation, bit for bit, on random inputs.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from msa_runtime.face import boxes as face_boxes
from msa_runtime.face.area import _taps, area_crops, area_window, integral_image, resize_image
from msa_runtime.face.boxes import nms
from msa_runtime.preprocess import resize_rgb


def _crop_of_whole(image: np.ndarray, side: int) -> np.ndarray:
    zero = np.zeros(1, np.int64)
    height, width = image.shape[:2]
    return area_crops(integral_image(image), zero, zero + height, zero, zero + width, side)[0]


@pytest.mark.parametrize("side", [48, 24])
def test_area_window_is_the_summed_area_table_crop(side: int) -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        height, width = (int(v) for v in rng.integers(3, 300, 2))
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        np.testing.assert_array_equal(area_window(image, side), _crop_of_whole(image, side))
    white = np.full((290, 130, 3), 255, np.uint8)  # the largest sums
    np.testing.assert_array_equal(area_window(white, side), _crop_of_whole(white, side))


def test_area_window_falls_back_for_huge_windows() -> None:
    image = np.full((300, 280, 3), 255, np.uint8)  # one output cell: sums beyond float32's 2**24
    out = area_window(image, 1)
    np.testing.assert_array_equal(out, _crop_of_whole(image, 1))
    assert out[0, 0, 0] == 255.0


def test_nms_matrix_path_equals_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    cases = []
    for t in range(60):
        n = int(rng.integers(1, 200))
        corner = rng.uniform(-50, 600, (n, 2)).astype(np.float32)
        size = rng.uniform(-5, 200, (n, 2)).astype(np.float32)  # some empty boxes (NaN overlaps)
        scores = rng.integers(0, 4, n).astype(np.float32) if t % 2 else rng.random(n).astype(np.float32)
        cases.append((np.concatenate([corner, corner + size], 1), scores))
    settings = [(m, p, th) for m in ("union", "min") for p in (False, True) for th in (0.3, 0.7)]
    with np.errstate(invalid="ignore", divide="ignore"):
        fast = [nms(b, s, th, mode=m, plus_one=p) for b, s in cases for m, p, th in settings]  # type: ignore[arg-type]
        monkeypatch.setattr(face_boxes, "_NMS_MATRIX_MAX", 0)
        loop = [nms(b, s, th, mode=m, plus_one=p) for b, s in cases for m, p, th in settings]  # type: ignore[arg-type]
    assert all(np.array_equal(a, b) for a, b in zip(fast, loop))


def _resize_direct(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """resize_image written plainly: per axis, a float32 sum over taps in tap order."""
    rows, row_w = _taps(image.shape[0], height)
    cols, col_w = _taps(image.shape[1], width)
    pixels = image.astype(np.float32)
    tall = np.zeros((height, image.shape[1], image.shape[2]), np.float32)
    for k in range(rows.shape[1]):
        tall += row_w[:, k, None, None] * np.take(pixels, rows[:, k], axis=0)
    out = np.zeros((height, width, image.shape[2]), np.float32)
    for k in range(cols.shape[1]):
        out += col_w[None, :, k, None] * np.take(tall, cols[:, k], axis=1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def test_resize_image_equals_the_direct_sum() -> None:
    rng = np.random.default_rng(2)
    for _ in range(30):
        height, width = (int(v) for v in rng.integers(2, 400, 2))
        channels = int(rng.choice([1, 3]))
        image = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        out_h, out_w = (int(v) for v in rng.integers(1, 300, 2))
        np.testing.assert_array_equal(resize_image(image, out_h, out_w), _resize_direct(image, out_h, out_w))
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    window = frame[100:217, 300:388]  # a face window: a strided view of the frame
    np.testing.assert_array_equal(resize_image(window, 256, 256), _resize_direct(window, 256, 256))


def test_cached_scaler_equals_a_fresh_one_across_size_changes() -> None:
    rng = np.random.default_rng(3)
    for shape, size in [((256, 256), (224, 224)), ((480, 640), (298, 224)), ((256, 256), (224, 224))] * 2:
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        fresh = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
            width=size[0], height=size[1], interpolation="BICUBIC"
        )
        np.testing.assert_array_equal(resize_rgb(image, size[0], size[1]), fresh.to_ndarray())
