"""Image resampling for the face detector, in numpy: the exact equivalent of torch's
``interpolate(mode="area")`` (an adaptive average pool, via a summed-area table) that
facenet-pytorch uses for its image pyramid, and the bilinear resize of its crops."""

from __future__ import annotations

import functools

import numpy as np

from msa_runtime.errors import InputError

_ROW_LOOP_MIN = 1536
"""Row width (columns x channels) from which :func:`integral_image` sums row by row."""


def _window_bounds(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each output cell's input window in an adaptive average pool."""
    i = np.arange(size_out, dtype=np.int64)
    start = (i * size_in) // size_out
    end = -((-(i + 1) * size_in) // size_out)  # ceil((i + 1) * size_in / size_out)
    return start, end


def integral_image(image: np.ndarray) -> np.ndarray:
    """Summed-area table ``(C, H + 1, W + 1)`` of an ``(H, W, C)`` uint8 image (exact integers)."""
    height, width, channels = image.shape
    dtype = np.int32 if 255 * height * width < 2**31 else np.int64
    table = np.zeros((channels, height + 1, width + 1), dtype=dtype)
    inner = table[:, 1:, 1:]
    inner[...] = image.transpose(2, 0, 1)
    np.cumsum(inner, axis=2, out=inner)
    if width * channels < _ROW_LOOP_MIN:  # small windows (the face tracker's): one call
        np.cumsum(inner, axis=1, out=inner)
    else:  # row by row: much faster than numpy's strided cumsum on wide images
        for row in range(2, height + 1):
            np.add(table[:, row], table[:, row - 1], out=table[:, row])
    return table


def _mean(sums: np.ndarray, rows_in: np.ndarray, cols_in: np.ndarray) -> np.ndarray:
    # Divide by the window height, then its width, in float32: PyTorch's order, bit for bit.
    out = sums.astype(np.float32)
    out /= rows_in.astype(np.float32)
    out /= cols_in.astype(np.float32)
    return out


def area_grid(table: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area resize of a whole image from its summed-area table: ``(C, height, width)`` float32."""
    y0, y1 = _window_bounds(table.shape[1] - 1, height)
    x0, x1 = _window_bounds(table.shape[2] - 1, width)
    band = table[:, y1, :]
    band -= table[:, y0, :]
    sums = band[:, :, x1]
    sums -= band[:, :, x0]
    return _mean(sums, (y1 - y0)[None, :, None], (x1 - x0)[None, None, :])


def area_crops(
    table: np.ndarray,
    top: np.ndarray,
    bottom: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    side: int,
) -> np.ndarray:
    """Area resize of windows ``[top:bottom, left:right]`` to ``side`` x ``side``: (N, C, s, s)."""
    i = np.arange(side, dtype=np.int64)[None, :]
    rows, cols = (bottom - top)[:, None], (right - left)[:, None]
    y0 = top[:, None] + (i * rows) // side
    y1 = top[:, None] - ((-(i + 1) * rows) // side)
    x0 = left[:, None] + (i * cols) // side
    x1 = left[:, None] - ((-(i + 1) * cols) // side)
    # corners as flat offsets into each channel's plane: one take per corner (fastest gather)
    stride = table.shape[2]
    flat = table.reshape(table.shape[0], -1)
    ya, yb = (y0 * stride)[:, :, None], (y1 * stride)[:, :, None]
    xa, xb = x0[:, None, :], x1[:, None, :]
    sums = np.take(flat, yb + xb, axis=1)
    sums -= np.take(flat, ya + xb, axis=1)
    sums -= np.take(flat, yb + xa, axis=1)
    sums += np.take(flat, ya + xa, axis=1)
    out = _mean(sums, (y1 - y0)[None, :, :, None], (x1 - x0)[None, :, None, :])
    return out.transpose(1, 0, 2, 3)


@functools.lru_cache(maxsize=256)
def _members(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """0/1 float32 matrix ``(size_out, size_in)`` of each output cell's window, and the window
    sizes as float32 (cached per size pair: a tracked face's window sizes repeat; read-only)."""
    start, end = _window_bounds(size_in, size_out)
    i = np.arange(size_in)[None, :]
    matrix = ((i >= start[:, None]) & (i < end[:, None])).astype(np.float32)
    sizes = (end - start).astype(np.float32)
    matrix.flags.writeable = False
    sizes.flags.writeable = False
    return matrix, sizes


def area_window(image: np.ndarray, side: int) -> np.ndarray:
    """Area resize of a whole ``(H, W, C)`` uint8 image to ``side`` x ``side``: ``(C, s, s)`` float32,
    bit-identical to :func:`area_crops` of its summed-area table (one crop: the face tracker's).

    The window sums are two products with 0/1 window matrices in float32: every partial sum is an
    integer below 2**24, so exact whatever order BLAS adds in, and the division is the same.
    Falls back to the summed-area table when a window is too large for that."""
    height, width, channels = image.shape
    if 255 * (height // side + 2) * (width // side + 2) >= 2**24:
        table = integral_image(image)
        zero = np.zeros(1, np.int64)
        return area_crops(table, zero, zero + height, zero, zero + width, side)[0]
    down, rows = _members(height, side)
    across, cols = _members(width, side)
    band = down @ image.astype(np.float32).reshape(height, width * channels)  # (s, W * C)
    sums = band.reshape(side, width, channels).transpose(2, 0, 1) @ across.T  # (C, s, s)
    sums /= rows[None, :, None]
    sums /= cols[None, None, :]
    return sums


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an ``(H, W, C)`` uint8 image to ``(height, width, C)`` float32 by area averaging.

    Output cell ``(i, j)`` is the mean of input rows ``floor(i*H/height) .. ceil((i+1)*H/height)``
    and the matching columns: PyTorch's ``interpolate(mode="area")`` (adaptive average pooling),
    which facenet-pytorch uses for its pyramid and its stage crops. Window sums are exact integers
    (a summed-area table of uint8), and the division follows PyTorch's, so the result is
    bit-identical.
    """
    if image.dtype != np.uint8 or image.ndim != 3:
        raise InputError(f"area_resize needs an (H, W, C) uint8 image, got {image.dtype} {image.shape}")
    if height < 1 or width < 1 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"cannot resize a {image.shape[1]}x{image.shape[0]} image to {width}x{height}")
    return area_grid(integral_image(image), height, width).transpose(1, 2, 0)


def _resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``(size_out, size_in)`` weights: area average when shrinking, linear when enlarging."""
    scale = size_in / size_out
    if scale >= 1.0:
        lo = np.arange(size_out)[:, None] * scale
        hi = lo + scale
        j = np.arange(size_in)[None, :]
        overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
        weights = overlap / scale
    else:
        src = np.clip((np.arange(size_out) + 0.5) * scale - 0.5, 0.0, size_in - 1)
        left = np.floor(src).astype(np.int64)
        right = np.minimum(left + 1, size_in - 1)
        frac = src - left
        weights = np.zeros((size_out, size_in))
        rows = np.arange(size_out)
        np.add.at(weights, (rows, left), 1.0 - frac)
        np.add.at(weights, (rows, right), frac)
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=256)
def _taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero weights of :func:`_resize_matrix` per output: indices and weights (out, K).

    Cached per size pair (a face crop's sizes repeat from frame to frame); read-only arrays."""
    matrix = _resize_matrix(size_in, size_out)
    nonzero = matrix > 0
    k = max(int(nonzero.sum(axis=1).max()), 1)
    # the first K input positions of each row's window (windows are contiguous)
    first = np.argmax(nonzero, axis=1)
    index = np.minimum(first[:, None] + np.arange(k)[None, :], size_in - 1)
    weight = np.take_along_axis(matrix, index, axis=1)
    weight[first[:, None] + np.arange(k)[None, :] > size_in - 1] = 0.0
    index.flags.writeable = False
    weight.flags.writeable = False
    return index, weight


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an ``(H, W, C)`` uint8 image: area average when shrinking, bilinear when enlarging.

    The convention of OpenCV's ``INTER_AREA``, which facenet-pytorch's ``extract_face`` uses on
    numpy frames; each axis is treated separately (a few weighted taps per output pixel, no BLAS,
    so the result does not depend on thread counts). Returns uint8.
    """
    rows, row_w = _taps(image.shape[0], height)
    cols, col_w = _taps(image.shape[1], width)
    _, in_w, channels = image.shape
    # Rows first, then columns, each a sum over taps in tap order (float32). The row pass gathers
    # whole rows; the column pass gathers whole pixels (all channels as one item), so every numpy
    # call works on long runs of memory.
    pixels = image.astype(np.float32).reshape(image.shape[0], in_w * channels)
    tall = row_w[:, 0, None] * pixels[rows[:, 0]]
    for k in range(1, rows.shape[1]):
        tall += row_w[:, k, None] * pixels[rows[:, k]]
    cells = tall.view(np.dtype((np.void, tall.itemsize * channels)))  # (height, in_w) pixels
    out = np.take(cells, cols[:, 0], axis=1).view(np.float32)
    out *= np.repeat(col_w[:, 0], channels)
    for k in range(1, cols.shape[1]):
        part = np.take(cells, cols[:, k], axis=1).view(np.float32)
        part *= np.repeat(col_w[:, k], channels)
        out += part
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8).reshape(height, width, channels)
