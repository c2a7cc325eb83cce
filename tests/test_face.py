"""Face detector: ONNX export parity, the numpy cascade against facenet-pytorch, crops, selection.

Tests that need the real MTCNN weights export them (from the installed facenet-pytorch wheel) into
a session-scoped temporary folder; the comparisons with facenet-pytorch's own MTCNN also need the
package to import (a torchvision matching torch). Each skips, saying why, where that is missing.
Portraits come from scikit-image's public-domain sample data, read at test time.
"""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from msa_runtime.errors import InputError, PackError
from msa_runtime.face.area import area_resize, resize_image
from msa_runtime.face.cascade import (
    FACE_FILES,
    FACE_INPUT_NAME,
    FACE_OUTPUT_NAMES,
    FaceDetector,
    box_iou,
    choose_face,
    crop_face,
    margin_box,
    nms,
    pyramid_scales,
)


def _facenet_unavailable() -> str | None:
    try:
        import facenet_pytorch  # noqa: F401
        import torchvision  # noqa: F401
    except (
        ImportError,
        RuntimeError,
        OSError,
    ) as exc:  # RuntimeError: torchvision for another torch
        return (
            f"facenet-pytorch/torchvision not importable ({type(exc).__name__}: {exc}); needs "
            "torch==2.14.1 torchvision==0.29.1 and pip install --no-deps facenet-pytorch"
        )
    return None


def _weights_unavailable() -> str | None:
    if importlib.util.find_spec("facenet_pytorch") is None:
        return "facenet-pytorch (the MTCNN weights) not installed: pip install --no-deps facenet-pytorch"
    if importlib.util.find_spec("torch") is None:
        return "torch not installed (the export side)"
    return None


FACENET_MISSING = _facenet_unavailable()
WEIGHTS_MISSING = _weights_unavailable()
needs_facenet = pytest.mark.skipif(FACENET_MISSING is not None, reason=FACENET_MISSING or "")
needs_weights = pytest.mark.skipif(WEIGHTS_MISSING is not None, reason=WEIGHTS_MISSING or "")


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def reference() -> Any:
    if FACENET_MISSING is not None:
        pytest.skip(FACENET_MISSING)
    from facenet_pytorch import MTCNN

    return MTCNN()  # facenet-pytorch's defaults, as in the paper's code


def _portraits() -> Iterator[tuple[str, np.ndarray]]:
    """Frames with human faces built from scikit-image's public-domain portraits."""
    data = pytest.importorskip("skimage.data", reason="scikit-image not installed")
    astronaut = data.astronaut()  # Eileen Collins, NASA portrait, 512x512
    yield "astronaut", astronaut
    yield "astronaut_mirrored", np.ascontiguousarray(astronaut[:, ::-1])
    camera = data.camera()  # the cameraman, grayscale
    yield "cameraman", np.ascontiguousarray(np.repeat(camera[..., None], 3, axis=2))
    canvas = np.full((480, 640, 3), 90, dtype=np.uint8)
    canvas[:, 64:576] = astronaut[16:496]
    yield "astronaut_640x480", canvas
    two = canvas.copy()
    small = np.ascontiguousarray(astronaut[::3, ::3])  # a second, smaller face
    two[300 : 300 + small.shape[0], : small.shape[1]] = small
    yield "two_faces", two
    yield "astronaut_224", np.ascontiguousarray(astronaut[::2, ::2][16:240, 16:240])


def _reference_boxes(reference: Any, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes, probs = reference.detect(rgb)
    if boxes is None:
        return np.zeros((0, 4)), np.zeros(0)
    return (
        np.asarray(boxes.tolist(), dtype=np.float64),
        np.asarray(np.asarray(probs).tolist(), dtype=np.float64),
    )


class StubSession:
    """Stands in for an onnxruntime session of a stage: the right names, no face anywhere."""

    def __init__(self, stage: str, inputs: tuple[str, ...] = (FACE_INPUT_NAME,)) -> None:
        self.stage = stage
        self.inputs = inputs
        self.calls = 0

    class _Arg:
        def __init__(self, name: str) -> None:
            self.name = name

    def get_inputs(self) -> list[Any]:
        return [self._Arg(n) for n in self.inputs]

    def get_outputs(self) -> list[Any]:
        return [self._Arg(n) for n in FACE_OUTPUT_NAMES[self.stage]]

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        x = feeds[FACE_INPUT_NAME]
        n, _, h, w = x.shape
        oh, ow = (h - 3) // 2 - 3, (w - 3) // 2 - 3
        return [np.zeros((n, 4, oh, ow), np.float32), np.zeros((n, 2, oh, ow), np.float32)]


def _stub_detector() -> FaceDetector:
    return FaceDetector(StubSession("pnet"), StubSession("rnet"), StubSession("onet"))


# --------------------------------------------------------------------------------------------
# (a) export parity


@needs_weights
def test_export_writes_three_validated_stages(face_export: tuple[Path, dict[str, Any]]) -> None:
    folder, manifest = face_export
    assert sorted(p.name for p in folder.iterdir()) == sorted(FACE_FILES.values())
    assert manifest["thresholds"] == [0.6, 0.7, 0.7]
    assert manifest["min_face_size"] == 20 and manifest["factor"] == 0.709
    report = manifest["validation"]["max_abs_diff"]
    assert set(report) == set(FACE_FILES.values())
    assert all(diff <= 1e-4 for diff in report.values()), report


@needs_weights
def test_onnx_stages_match_pytorch_on_other_sizes(face_export: tuple[Path, dict[str, Any]]) -> None:
    import onnxruntime as ort
    import torch

    from msa_export.models.face import load_mtcnn_stages

    folder, _ = face_export
    nets, _ = load_mtcnn_stages()
    rng = np.random.default_rng(7)
    cases = {
        "pnet": [(1, 3, 20, 31), (2, 3, 64, 48)],
        "rnet": [(5, 3, 24, 24)],
        "onet": [(4, 3, 48, 48)],
    }
    for stage, shapes in cases.items():
        session = ort.InferenceSession(str(folder / FACE_FILES[stage]), providers=["CPUExecutionProvider"])
        for shape in shapes:
            x = rng.uniform(-1, 1, size=shape).astype(np.float32)
            with torch.no_grad():
                want = [t.numpy() for t in nets[stage](torch.from_numpy(x))]
            got = session.run(list(FACE_OUTPUT_NAMES[stage]), {FACE_INPUT_NAME: x})
            for w, g in zip(want, got):
                assert w.shape == g.shape
                assert np.max(np.abs(w - g)) < 1e-4


@needs_facenet
def test_own_stage_modules_equal_facenet_modules() -> None:
    """Without a matching torchvision the weights go into msa_export's modules: same outputs."""
    import torch

    from msa_export.models.face import _facenet_stages, load_mtcnn_stages

    ours, info = load_mtcnn_stages(prefer_facenet=False)
    assert info["modules"] == "msa_export.models.face"
    theirs = _facenet_stages()
    rng = np.random.default_rng(11)
    for stage, shape in {
        "pnet": (2, 3, 31, 40),
        "rnet": (3, 3, 24, 24),
        "onet": (3, 3, 48, 48),
    }.items():
        x = torch.from_numpy(rng.uniform(-1, 1, size=shape).astype(np.float32))
        with torch.no_grad():
            for a, b in zip(ours[stage].eval()(x), theirs[stage].eval()(x)):
                torch.testing.assert_close(a, b, rtol=0, atol=0)


@needs_weights
def test_validation_failure_names_file_and_output(face_export: tuple[Path, dict[str, Any]]) -> None:
    import torch

    from msa_export.models.face import FaceExportError, load_mtcnn_stages, validate_stage

    folder, _ = face_export
    net = load_mtcnn_stages()[0]["rnet"]
    with torch.no_grad():
        net.dense5_2.bias += 0.01  # the regression output drifts
    with pytest.raises(FaceExportError, match=r"face_rnet\.onnx: output reg differs"):
        validate_stage("rnet", net, folder / FACE_FILES["rnet"])


def test_export_without_facenet_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch", reason="the export side needs torch")
    from msa_export.models.face import FaceExportError, export_face_detector

    for name in [m for m in sys.modules if m.startswith("facenet_pytorch")] + ["facenet_pytorch"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    with pytest.raises(FaceExportError, match="pip install --no-deps facenet-pytorch"):
        export_face_detector(Path("unused"))


def test_area_resize_is_torch_area_interpolation() -> None:
    torch = pytest.importorskip("torch", reason="torch not installed")
    rng = np.random.default_rng(3)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 120, 2))
        oh, ow = (int(v) for v in rng.integers(1, 90, 2))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        # facenet-pytorch's layout: HWC uint8 -> permuted NCHW float32
        t = torch.as_tensor(image.copy())[None].permute(0, 3, 1, 2).type(torch.float32)
        want = torch.nn.functional.interpolate(t, size=(oh, ow), mode="area")[0].permute(1, 2, 0)
        np.testing.assert_array_equal(area_resize(image, oh, ow), want.numpy())


# --------------------------------------------------------------------------------------------
# (b) the cascade against facenet-pytorch


@needs_facenet
def test_boxes_match_facenet_pytorch(detector: FaceDetector, reference: Any) -> None:
    worst = 0.0
    for name, rgb in _portraits():
        want_boxes, want_probs = _reference_boxes(reference, rgb)
        boxes, probs = detector.detect(rgb)
        assert boxes.shape == (len(probs), 4) and boxes.dtype == np.float32
        assert len(want_boxes) >= 1, f"facenet-pytorch finds no face in {name}"
        assert len(boxes) == len(want_boxes), f"{name}: {boxes} vs {want_boxes}"
        diff = float(np.max(np.abs(boxes - want_boxes)))
        assert diff <= 1.0, f"{name}: boxes differ by {diff:.3f} px"
        np.testing.assert_allclose(probs, want_probs, atol=1e-3)
        # the 256 px crop window (with margin, extract_face's convention) agrees too
        for margin in (0, 32):
            ours = margin_box(boxes[0], rgb.shape[1], rgb.shape[0], 256, margin)
            theirs = margin_box(want_boxes[0], rgb.shape[1], rgb.shape[0], 256, margin)
            assert max(abs(a - b) for a, b in zip(ours, theirs)) <= 1
        worst = max(worst, diff)
    print(f"worst box difference to facenet-pytorch: {worst:.2e} px")


def test_astronaut_box_without_reference(detector: FaceDetector) -> None:
    """Where facenet-pytorch cannot import: the box it gives on the astronaut (2.6.0, defaults)."""
    data = pytest.importorskip("skimage.data", reason="scikit-image not installed")
    boxes, probs = detector.detect(data.astronaut())
    assert boxes.shape == (1, 4) and probs[0] > 0.99
    np.testing.assert_allclose(boxes[0], [181.05, 62.16, 267.75, 172.05], atol=0.5)


def test_max_side_shrinks_large_frames(face_export: tuple[Path, dict[str, Any]]) -> None:
    data = pytest.importorskip("skimage.data", reason="scikit-image not installed")
    folder, manifest = face_export
    face = data.astronaut()
    doubled = np.ascontiguousarray(np.repeat(np.repeat(face, 2, axis=0), 2, axis=1))  # 1024x1024
    fast = FaceDetector.from_folder(folder, manifest, max_side=512)
    exact = FaceDetector.from_folder(folder, manifest)
    # shrinking the doubled frame by area gives the original back: boxes are twice its boxes
    want, _ = exact.detect(face)
    got, _ = fast.detect(doubled)
    np.testing.assert_allclose(got, 2 * want, atol=1e-3)
    with pytest.raises(InputError, match="max_side"):
        FaceDetector.from_folder(folder, manifest, max_side=8)


@needs_facenet
def test_crop_matches_extract_face(detector: FaceDetector) -> None:
    import torch
    from facenet_pytorch.models.utils.detect_face import extract_face

    data = pytest.importorskip("skimage.data", reason="scikit-image not installed")
    rgb = data.astronaut()
    boxes, _ = detector.detect(rgb)
    for margin in (0, 40):
        ours = crop_face(rgb, boxes[0], 256, margin)
        assert ours.shape == (256, 256, 3) and ours.dtype == np.uint8
        # facenet-pytorch on a tensor frame: same window, area-resampled (ours: area/bilinear)
        theirs = extract_face(torch.as_tensor(rgb), boxes[0], 256, margin).permute(1, 2, 0).numpy()
        assert np.mean(np.abs(ours.astype(np.float32) - theirs)) < 4.0


@needs_facenet
def test_face_square_matches_the_papers_extraction(detector: FaceDetector) -> None:
    """vision_squares with crop = "face" at 256 px against the paper's extraction:
    facenet-pytorch MTCNN(image_size=256, margin=0, select_largest=True, post_process=False)
    on PIL frames (Ando et al.'s extract_video_embedding)."""
    from facenet_pytorch import MTCNN
    from PIL import Image

    from msa_runtime.pack import VisionPrep
    from msa_runtime.preprocess import FACE_CROP_SIZE, FaceTrack, vision_squares

    paper = MTCNN(
        image_size=FACE_CROP_SIZE,
        margin=0,
        select_largest=True,
        keep_all=False,
        post_process=False,
    )
    prep = VisionPrep(crop="face", image_size=FACE_CROP_SIZE)
    for name, rgb in _portraits():
        theirs = paper(Image.fromarray(rgb))
        assert theirs is not None, f"facenet-pytorch finds no face in {name}"
        squares, found = vision_squares([rgb], prep, detector, FaceTrack())
        assert found is not None and found.all()
        # same window; resampling differs (PIL bilinear vs area average): < 1 grey level mean
        diff = np.abs(squares[0].astype(np.float32) - theirs.permute(1, 2, 0).numpy())
        assert diff.mean() < 1.0, f"{name}: mean difference {diff.mean():.2f}"


# --------------------------------------------------------------------------------------------
# (c) no face, (d) bad input


def test_noise_and_flat_frames_find_no_face(detector: FaceDetector) -> None:
    rng = np.random.default_rng(0)
    for frame in (
        rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        np.full((240, 320, 3), 128, dtype=np.uint8),
    ):
        boxes, probs = detector.detect(frame)
        assert boxes.shape == (0, 4) and probs.shape == (0,)


def test_too_small_frame_raises_input_error(detector: FaceDetector) -> None:
    with pytest.raises(InputError, match="too small for face detection"):
        detector.detect(np.zeros((19, 640, 3), dtype=np.uint8))
    boxes, _ = detector.detect(np.zeros((20, 20, 3), dtype=np.uint8))  # the smallest allowed
    assert boxes.shape == (0, 4)


def test_pyramid_scales() -> None:
    scales = pyramid_scales(480, 640)
    assert scales[0] == pytest.approx(0.6) and len(scales) == 10
    assert all(b == pytest.approx(a * 0.709) for a, b in itertools.pairwise(scales))
    assert min(480, 640) * scales[-1] >= 12 > min(480, 640) * scales[-1] * 0.709
    assert pyramid_scales(20, 20) == [0.6]
    with pytest.raises(InputError, match=r"frame 12x11 is too small"):
        pyramid_scales(11, 12)
    with pytest.raises(InputError, match="minimum face size"):
        pyramid_scales(0, 0)


def test_frame_checks_with_stub_sessions() -> None:
    det = _stub_detector()
    with pytest.raises(InputError, match="too small"):
        det.detect(np.zeros((10, 10, 3), dtype=np.uint8))
    with pytest.raises(InputError, match=r"shape \(H, W, 3\)"):
        det.detect(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(InputError, match="uint8"):
        det.detect(np.zeros((64, 64, 3), dtype=np.float32))
    with pytest.raises(InputError, match="numpy array"):
        det.detect([[0, 0, 0]])
    boxes, probs = det.detect(np.zeros((64, 80, 3), dtype=np.uint8))
    assert boxes.shape == (0, 4) and probs.shape == (0,)
    with pytest.raises(InputError, match="thresholds"):
        FaceDetector(StubSession("pnet"), StubSession("rnet"), StubSession("onet"), thresholds=(0.6, 0.7))
    with pytest.raises(InputError, match="factor"):
        FaceDetector(StubSession("pnet"), StubSession("rnet"), StubSession("onet"), factor=1.2)


def test_missing_or_foreign_model_files(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="face_pnet.onnx is missing"):
        FaceDetector.from_folder(tmp_path)
    with pytest.raises(PackError, match="not an MTCNN rnet export"):
        FaceDetector(StubSession("pnet"), StubSession("rnet", inputs=("input_ids",)), StubSession("onet"))
    with pytest.raises(PackError, match="outside the pack folder"):
        FaceDetector.from_folder(tmp_path, {"stages": {"pnet": {"file": "../face_pnet.onnx"}}})


def test_runtime_face_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np; from msa_runtime.face.cascade import crop_face, choose_face; "
        "crop_face(np.zeros((40, 40, 3), np.uint8), np.array([5., 5., 30., 30.])); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------
# (e) choosing the speaker's face, crops


def test_choose_face_largest_probability_and_empty() -> None:
    boxes = np.array([[10, 10, 40, 40], [100, 100, 200, 200], [300, 50, 360, 110]], np.float32)
    probs = np.array([0.99, 0.90, 0.999], np.float32)
    assert choose_face(boxes, probs) == 1
    assert choose_face(boxes, probs, method="probability") == 2
    assert choose_face(np.zeros((0, 4)), np.zeros(0)) is None
    assert choose_face(np.zeros((0, 4)), np.zeros(0), previous=boxes[0]) is None
    with pytest.raises(InputError, match="selection method"):
        choose_face(boxes, probs, method="center")
    with pytest.raises(InputError, match="3 boxes but 2"):
        choose_face(boxes, probs[:2])


def test_choose_face_is_stable_across_frames() -> None:
    # The speaker (small face, left) moves slowly; a larger face enters on the right at frame 3.
    chosen = np.array([20.0, 40.0, 80.0, 100.0])
    picks = []
    for t in range(8):
        speaker = np.array([20.0 + 4 * t, 40.0, 80.0 + 4 * t, 100.0])
        boxes = [speaker]
        if t >= 3:
            boxes.insert(0, np.array([300.0, 20.0, 420.0, 140.0]))  # larger, more confident
        probs = np.full(len(boxes), 0.95)
        probs[0] = 0.999
        k = choose_face(np.array(boxes), probs, previous=chosen)
        assert k is not None
        chosen = np.array(boxes)[k]
        picks.append(tuple(chosen))
    assert all(p[0] < 100 for p in picks), picks  # never jumps to the other face
    # a face far from the previous one: back to the largest
    far = np.array([[300.0, 20.0, 420.0, 140.0], [500.0, 300.0, 520.0, 320.0]])
    assert choose_face(far, np.array([0.9, 0.99]), previous=np.array([0.0, 0.0, 50.0, 50.0])) == 0
    assert box_iou(np.array([0, 0, 10, 10]), np.array([[0, 0, 10, 10], [5, 0, 15, 10]])) == pytest.approx(
        [1.0, 1 / 3]
    )


def test_crop_face_margin_convention_and_errors() -> None:
    frame = np.zeros((200, 300, 3), dtype=np.uint8)
    frame[50:150, 100:200] = 200
    box = np.array([100.0, 50.0, 200.0, 150.0])
    # margin is in output pixels: a 100 px box with a 56 px margin on a 256 px crop grows by
    # 56 * 100 / (256 - 56) = 28 px, 14 on each side
    assert margin_box(box, 300, 200, 256, 56) == (86, 36, 214, 164)
    assert margin_box(box, 300, 200, 256, 0) == (100, 50, 200, 150)
    assert margin_box(np.array([-5.0, -5.0, 350.0, 250.0]), 300, 200) == (0, 0, 300, 200)
    crop = crop_face(frame, box, size=64)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert np.all(crop == 200)
    with_margin = crop_face(frame, box, size=64, margin=16)
    assert with_margin[0, 0, 0] == 0 and with_margin[32, 32, 0] == 200
    with pytest.raises(InputError, match="outside"):
        crop_face(frame, np.array([400.0, 10.0, 450.0, 60.0]))
    with pytest.raises(InputError, match="margin"):
        crop_face(frame, box, size=64, margin=64)
    with pytest.raises(InputError, match="not finite"):
        crop_face(frame, np.array([np.nan, 0.0, 10.0, 10.0]))


def test_resize_image_shrinks_by_area_and_enlarges_linearly() -> None:
    ramp = np.tile(np.arange(0, 240, 10, dtype=np.uint8)[None, :, None], (4, 1, 3))  # 4x24
    small = resize_image(ramp, 2, 12)
    np.testing.assert_array_equal(small[0, :, 0], np.arange(5, 240, 20))  # pair means
    big = resize_image(np.array([[[0], [100]]], dtype=np.uint8), 1, 4)
    np.testing.assert_array_equal(big[0, :, 0], [0, 25, 75, 100])


def test_nms_conventions() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 4, 4], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.9, 0.8, 0.95, 0.7], np.float32)
    # IoU(0, 1) = 90/110 > 0.7; the small box lies inside box 0 but IoU is only 0.16
    assert nms(boxes, scores, 0.7).tolist() == [2, 0, 3]
    # "min" divides by the smaller area: boxes containing the small, best box go
    assert nms(boxes, scores, 0.7, mode="min", plus_one=True).tolist() == [2, 3]
    assert nms(boxes[[0, 2]], np.array([0.9, 0.5], np.float32), 0.7, mode="min", plus_one=True).tolist() == [
        0
    ]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).size == 0


@needs_weights
def test_the_manifest_entry_is_what_runs(face_export: tuple[Path, Any]) -> None:
    """NMS overlaps and pixel scaling come from the pack's entry, not from constants (issue 14)."""
    import dataclasses

    data = pytest.importorskip("skimage.data", reason="scikit-image not installed")
    from msa_runtime.face.cascade import FaceNms
    from msa_runtime.pack import FaceDetectorEntry

    folder, entry = face_export
    assert isinstance(entry, FaceDetectorEntry) and FaceDetectorEntry.from_dict(entry.to_dict()) == entry
    tuned = dataclasses.replace(entry, nms=FaceNms(pnet=0.3), pixel_scale=entry.pixel_scale / 4)
    detector = FaceDetector.from_folder(folder, tuned)
    assert detector.nms.pnet == 0.3 and detector.pixel_scale == np.float32(entry.pixel_scale / 4)
    boxes, _ = FaceDetector.from_folder(folder, entry).detect(data.astronaut())
    assert len(boxes) == 1
    dim, _ = detector.detect(data.astronaut())  # a quarter of the contrast: the cascade sees it
    assert len(dim) != 1 or not np.allclose(dim, boxes, atol=0.5)
    with pytest.raises(PackError, match="unknown face_detector keys"):
        FaceDetector.from_folder(folder, {**entry.to_dict(), "nms_typo": 1})
