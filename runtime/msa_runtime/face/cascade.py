"""Face detection and face crops for the visual path (MTCNN cascade, numpy + ONNX Runtime).

Ando et al. encode the speaker's face, not the whole frame: MTCNN (facenet-pytorch) finds it in
each sampled frame, and the face is cropped and resized to 256 px. This module runs the same
cascade with the three MTCNN stage networks exported to ONNX by :mod:`msa_export.models.face`:

1. P-net over an image pyramid (scales ``12 / min_face_size * factor**k`` while the shorter side
   stays >= 12 px), candidate boxes from its score map, NMS per scale (IoU 0.5) and over all scales
   (IoU 0.7), box regression, squared boxes;
2. R-net on 24x24 crops of the candidates, threshold, NMS (IoU 0.7), regression, squared boxes;
3. O-net on 48x48 crops, threshold, regression, NMS over the smaller box (0.7).

Everything around the networks follows facenet-pytorch's ``detect_face`` step by step (same
float32 arithmetic, same box conventions, same clipping of crops to the frame), and its image
resampling, ``torch.nn.functional.interpolate(mode="area")``, which is an adaptive average pool,
is reproduced exactly in numpy (:func:`area_resize`), so the boxes agree with facenet-pytorch's
own ``MTCNN.detect`` up to ONNX Runtime's rounding.

The runtime never imports torch: numpy and onnxruntime only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from msa_runtime.engine.sessions import make_session
from msa_runtime.errors import InputError, PackError
from msa_runtime.face.area import area_crops, area_grid, area_window, integral_image
from msa_runtime.face.boxes import (  # noqa: F401  (re-exported: the public face API)
    CELL,
    DEFAULT_CROP_SIZE,
    DEFAULT_MARGIN,
    STRIDE,
    Method,
    box_iou,
    check_frame,
    choose_face,
    crop_face,
    crop_windows,
    margin_box,
    nms,
    pyramid_scales,
    regress_boxes,
    square_boxes,
)
from msa_runtime.pack.face import (  # noqa: F401  (re-exported: the public face API)
    DEFAULT_FACTOR,
    DEFAULT_MIN_FACE_SIZE,
    DEFAULT_THRESHOLDS,
    FACE_FILES,
    PIXEL_MEAN,
    PIXEL_SCALE,
    FaceNms,
)

if TYPE_CHECKING:
    from msa_runtime.pack import FaceDetectorEntry

FACE_INPUT_NAME = "image"
FACE_OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "pnet": ("reg", "prob"),
    "rnet": ("reg", "prob"),
    "onet": ("reg", "landmarks", "prob"),
}

_BATCH = 512  # crops per R-/O-net run (bounds memory on busy frames)

# --------------------------------------------------------------------------------------------
# Sessions


def _session(source: Any, stage: str, threads: int | None, providers: Sequence[str] | None) -> Any:
    if not isinstance(source, (str, os.PathLike)):
        session = source  # an onnxruntime.InferenceSession (or anything with run / get_inputs)
        where = f"the {stage} session"
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise PackError(
                f"face detector file {path} is missing; re-export the pack with msa-export "
                "(a face-crop preset needs face_pnet/rnet/onet.onnx)"
            )
        # Three small sessions alternate with numpy work: spinning is off (make_session).
        session = make_session(path, list(providers or ["CPUExecutionProvider"]), threads=threads)
    try:
        inputs = [i.name for i in session.get_inputs()]
        outputs = {o.name for o in session.get_outputs()}
    except AttributeError as exc:
        raise InputError(f"{stage} must be an ONNX file path or an onnxruntime session") from exc
    missing = set(FACE_OUTPUT_NAMES[stage]) - outputs
    if inputs != [FACE_INPUT_NAME] or missing:
        raise PackError(
            f"{where} is not an MTCNN {stage} export (inputs {inputs}, outputs {sorted(outputs)}); "
            "re-export the pack with msa-export"
        )
    return session


# --------------------------------------------------------------------------------------------
# Detector


class FaceDetector:
    """MTCNN face detector: three ONNX stages and the cascade around them in numpy.

    ``pnet``, ``rnet``, ``onet`` are ONNX file paths or onnxruntime sessions. Parameters default
    to facenet-pytorch's ``MTCNN()``: minimum face size 20 px, pyramid factor 0.709, thresholds
    (0.6, 0.7, 0.7). ``threads`` sets ONNX Runtime's intra-op threads (None: its default);
    :meth:`follow`'s one-crop O-net runs use a second, single-threaded O-net session.

    ``max_side`` (default None: off, facenet-pytorch's exact behaviour) shrinks frames whose longer
    side exceeds it before detection and scales the boxes back: P-net's cost grows with the pixel
    count (a 1080p frame costs about 15x a 640x480 one), while a speaker's face is large. Faces
    then need to be at least ``min_face_size`` px in the shrunk frame.
    """

    def __init__(
        self,
        pnet: Any,
        rnet: Any,
        onet: Any,
        *,
        min_face_size: float = DEFAULT_MIN_FACE_SIZE,
        factor: float = DEFAULT_FACTOR,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        max_side: int | None = None,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        nms: FaceNms | None = None,
        pixel_mean: float = PIXEL_MEAN,
        pixel_scale: float = PIXEL_SCALE,
    ) -> None:
        if max_side is not None and max_side < CELL:
            raise InputError(f"max_side must be at least {CELL} px, got {max_side}")
        if not min_face_size > 0:
            raise InputError(f"min_face_size must be positive, got {min_face_size}")
        if not 0.0 < factor < 1.0:
            raise InputError(f"the pyramid factor must be between 0 and 1 (exclusive), got {factor}")
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise InputError(f"thresholds must be three probabilities (P, R, O-net), got {thresholds}")
        if threads is not None and threads < 1:
            raise InputError(f"threads must be at least 1, got {threads}")
        self.max_side = max_side
        self.min_face_size = float(min_face_size)
        self.factor = float(factor)
        self.thresholds: tuple[float, float, float] = (thresholds[0], thresholds[1], thresholds[2])
        self.nms = nms if nms is not None else FaceNms()
        self.pixel_mean, self.pixel_scale = np.float32(pixel_mean), np.float32(pixel_scale)
        self._pnet = _session(pnet, "pnet", threads, providers)
        self._rnet = _session(rnet, "rnet", threads, providers)
        self._onet = _session(onet, "onet", threads, providers)
        # follow() runs O-net on one crop at a time: a single-threaded session is faster there
        # (no hand-off to a second thread for a ~0.5 ms run) and gives the same numbers.
        single = isinstance(onet, (str, os.PathLike)) and threads != 1
        self._onet_single = _session(onet, "onet", 1, providers) if single else self._onet

    @classmethod
    def from_folder(
        cls,
        folder: str | os.PathLike[str],
        params: FaceDetectorEntry | Mapping[str, Any] | None = None,
        *,
        max_side: int | None = None,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> FaceDetector:
        """The detector in a folder (a pack), with the parameters of its manifest entry.

        ``params`` is the pack's :class:`msa_runtime.pack.FaceDetectorEntry` (or its dict, as
        :func:`msa_export.models.face.export_face_detector` writes it): stage files, pyramid, thresholds,
        NMS overlaps and pixel scaling, all used as given; without it the standard files and
        facenet-pytorch's defaults.
        """
        from msa_runtime.pack import FaceDetectorEntry

        if max_side is not None and max_side < CELL:
            raise InputError(f"max_side must be at least {CELL} px, got {max_side}")
        root = Path(folder)
        try:
            entry = (
                params if isinstance(params, FaceDetectorEntry) else FaceDetectorEntry.from_dict(params or {})
            )
        except (TypeError, ValueError) as exc:
            raise PackError(f"bad face detector parameters in {root}: {exc}") from exc
        paths = []
        for name in entry.files().values():
            path = (root / name).resolve()
            if not path.is_relative_to(root.resolve()):
                raise PackError(f"face detector file {name!r} points outside the pack folder {root}")
            paths.append(path)
        try:
            return cls(
                *paths,
                min_face_size=float(entry.min_face_size),
                max_side=max_side,
                factor=entry.factor,
                thresholds=entry.thresholds,
                threads=threads,
                providers=providers,
                nms=entry.nms,
                pixel_mean=entry.pixel_mean,
                pixel_scale=entry.pixel_scale,
            )
        except InputError as exc:
            raise PackError(f"bad face detector parameters in {root}: {exc}") from exc

    # -- stages -----------------------------------------------------------------------------

    def _normalize(self, pixels: np.ndarray) -> np.ndarray:
        """``(pixels - pixel_mean) * pixel_scale`` in float32, as a new C-contiguous array."""
        out = np.empty(pixels.shape, np.float32)
        np.subtract(pixels, self.pixel_mean, out=out)
        out *= self.pixel_scale
        return out

    def _stage1(self, table: np.ndarray) -> np.ndarray:
        """P-net over the pyramid: squared candidate boxes (N, 5) x1, y1, x2, y2, score."""
        height, width = table.shape[1] - 1, table.shape[2] - 1
        scales = pyramid_scales(height, width, self.min_face_size, self.factor)
        found = []
        for scale in scales:
            level = area_grid(table, int(height * scale + 1), int(width * scale + 1))
            x = self._normalize(level)[None]
            reg, prob = self._pnet.run(list(FACE_OUTPUT_NAMES["pnet"]), {FACE_INPUT_NAME: x})
            ys, xs = np.nonzero(prob[0, 1] >= self.thresholds[0])
            if ys.size == 0:
                continue
            cell = np.stack([xs, ys], axis=1).astype(np.float32)
            q1 = np.floor((STRIDE * cell + np.float32(1)) / np.float32(scale))
            q2 = np.floor((STRIDE * cell + np.float32(CELL)) / np.float32(scale))
            score = prob[0, 1, ys, xs][:, None]
            offsets = reg[0][:, ys, xs].T
            boxes = np.concatenate([q1, q2, score, offsets], axis=1).astype(np.float32)
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], self.nms.pnet_scale)])
        if not found:
            return np.zeros((0, 5), dtype=np.float32)
        boxes = np.concatenate(found, axis=0)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], self.nms.pnet)]
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        out = np.stack(
            [
                boxes[:, 0] + boxes[:, 5] * w,
                boxes[:, 1] + boxes[:, 6] * h,
                boxes[:, 2] + boxes[:, 7] * w,
                boxes[:, 3] + boxes[:, 8] * h,
                boxes[:, 4],
            ],
            axis=1,
        )
        return square_boxes(out)

    def _run_on_crops(
        self, stage: str, table: np.ndarray, boxes: np.ndarray, side: int
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Run R- or O-net on ``side`` x ``side`` crops of the boxes that touch the frame.

        Boxes are truncated to integers and clipped to the frame (no padding), as in
        facenet-pytorch; boxes wholly outside it are dropped (``inside`` marks the others).
        Crops go through the network in batches of at most :data:`_BATCH`.
        """
        height, width = table.shape[1] - 1, table.shape[2] - 1
        y0, y1, x0, x1 = crop_windows(boxes, width, height)
        inside = (y1 > y0) & (x1 > x0)
        y0, y1, x0, x1 = y0[inside], y1[inside], x0[inside], x1[inside]
        session = self._rnet if stage == "rnet" else self._onet
        names = list(FACE_OUTPUT_NAMES[stage])
        parts: list[list[np.ndarray]] = []
        for at in range(0, len(y0), _BATCH):
            part = slice(at, at + _BATCH)
            x = self._normalize(area_crops(table, y0[part], y1[part], x0[part], x1[part], side))
            parts.append(session.run(names, {FACE_INPUT_NAME: x}))
        if not parts:
            return [np.zeros((0, 4), np.float32)] * len(names), inside
        return [np.concatenate(out, axis=0) for out in zip(*parts)], inside

    def _stage2(self, table: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        (reg, prob), inside = self._run_on_crops("rnet", table, boxes, 24)
        boxes = boxes[inside]
        if len(boxes) == 0:
            return boxes
        score = prob[:, 1]
        keep = score > self.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1).astype(np.float32)
        reg = reg[keep]
        pick = nms(boxes[:, :4], boxes[:, 4], self.nms.rnet)
        return square_boxes(regress_boxes(boxes[pick], reg[pick]))

    def _stage3(self, table: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """O-net: faces ``(N, 9)``: regressed box, score, and the squared box O-net looked at."""
        (reg, _landmarks, prob), inside = self._run_on_crops("onet", table, boxes, 48)
        boxes = boxes[inside]
        if len(boxes) == 0:
            return np.zeros((0, 9), dtype=np.float32)
        score = prob[:, 1]
        keep = score > self.thresholds[2]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], axis=1).astype(np.float32)
        out = np.concatenate([regress_boxes(boxes, reg[keep]), boxes[:, :4]], axis=1)
        pick = nms(out[:, :4], out[:, 4], self.nms.onet_min, mode="min", plus_one=True)
        return out[pick]

    # -- public -----------------------------------------------------------------------------

    def detect(self, rgb: np.ndarray, *, max_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Faces in an ``(H, W, 3)`` uint8 RGB frame.

        Returns boxes ``(N, 4)`` float32 (x1, y1, x2, y2 in pixels, may extend past the frame) and
        their probabilities ``(N,)``, largest box first (facenet-pytorch's order). No face gives
        empty arrays; a frame whose shorter side is below ``min_face_size`` raises
        :class:`InputError`. ``max_side`` overrides the detector's own for this call (0: off).
        """
        boxes, probs, _anchors = self.detect_anchored(rgb, max_side=max_side)
        return boxes, probs

    def detect_anchored(
        self, rgb: np.ndarray, *, max_side: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`detect` plus each face's anchor ``(N, 4)``: the squared box O-net looked at (in
        frame pixels), from which the face tracker re-runs O-net (:mod:`msa_runtime.face.track`).
        """
        none = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 4), np.float32))
        rgb = check_frame(rgb)
        height, width = rgb.shape[:2]
        pyramid_scales(height, width, self.min_face_size, self.factor)  # size check
        limit = self.max_side if max_side is None else (max_side or None)
        if limit is not None and limit < CELL:
            raise InputError(f"max_side must be at least {CELL} px, got {limit}")
        table = integral_image(rgb)
        scale_x = scale_y = 1.0
        if limit is not None and max(height, width) > limit:
            shrink = limit / max(height, width)
            small_h, small_w = max(1, round(height * shrink)), max(1, round(width * shrink))
            if min(small_h, small_w) < self.min_face_size:
                return none
            small = np.rint(area_grid(table, small_h, small_w)).astype(np.uint8)
            table = integral_image(np.ascontiguousarray(small.transpose(1, 2, 0)))
            scale_x, scale_y = width / small_w, height / small_h
        boxes = self._stage1(table)
        if len(boxes):
            boxes = self._stage2(table, boxes)
        boxes = self._stage3(table, boxes) if len(boxes) else np.zeros((0, 9), np.float32)
        if len(boxes) == 0:
            return none
        if scale_x != 1.0 or scale_y != 1.0:
            boxes[:, [0, 2, 5, 7]] *= np.float32(scale_x)
            boxes[:, [1, 3, 6, 8]] *= np.float32(scale_y)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        boxes = boxes[np.argsort(area)[::-1]]
        return (
            np.ascontiguousarray(boxes[:, :4]),
            np.ascontiguousarray(boxes[:, 4]),
            np.ascontiguousarray(boxes[:, 5:9]),
        )

    def follow(
        self, rgb: np.ndarray, box: np.ndarray, *, passes: int = 2, square: bool = True
    ) -> tuple[np.ndarray, float]:
        """Follow a face from the previous frame's ``box`` with the cascade's last stage only.

        O-net runs on the squared box (as on R-net's squared output in :meth:`detect`), its box
        regression moves the box onto the face in this frame, and that repeats ``passes`` times
        (a face that moved gets re-centred). Only the box's window of the frame is read, at full
        resolution. Returns the new box ``(4,)`` float32 and O-net's face probability (0.0 when
        the box left the frame); the caller decides whether to trust it
        (:mod:`msa_runtime.face.track`). ``square=False`` uses ``box`` as O-net's window as it is
        (an anchor from :meth:`detect_anchored` is square already).
        """
        rgb = check_frame(rgb)
        height, width = rgb.shape[:2]
        current = np.asarray(box, dtype=np.float32).reshape(1, 4)
        score = 0.0
        names = list(FACE_OUTPUT_NAMES["onet"])
        for _ in range(max(1, passes)):
            squared = square_boxes(current.copy()) if square else current
            y0, y1, x0, x1 = (int(v[0]) for v in crop_windows(squared, width, height))
            if y1 <= y0 or x1 <= x0:
                return current[0], 0.0
            x = self._normalize(area_window(rgb[y0:y1, x0:x1], 48)[None])
            reg, _landmarks, prob = self._onet_single.run(names, {FACE_INPUT_NAME: x})
            score = float(prob[0, 1])
            current = regress_boxes(squared, reg)
        return current[0].copy(), score
