"""Export facenet-pytorch's MTCNN face detector (P-, R- and O-net) to ONNX for the runtime.

The three stage networks come with their real pretrained weights inside the ``facenet-pytorch``
wheel (no download). Each is exported with ``torch.onnx.export``, checked with ``onnx.checker``
and validated against PyTorch on several input sizes. The numpy cascade around them (pyramid,
box regression, NMS, crops) lives in :mod:`msa_runtime.face`.

facenet-pytorch declares old torch/torchvision pins; install it without them:
``pip install --no-deps facenet-pytorch`` (it also imports ``requests`` and ``tqdm``).
"""

from __future__ import annotations

import importlib.metadata
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from msa_runtime.errors import MsaError
from msa_runtime.face import (
    DEFAULT_FACTOR,
    DEFAULT_MIN_FACE_SIZE,
    DEFAULT_THRESHOLDS,
    FACE_FILES,
    FACE_INPUT_NAME,
    FACE_OUTPUT_NAMES,
    PIXEL_MEAN,
    PIXEL_SCALE,
)
from torch import nn

TOLERANCE = 1e-4
"""Largest absolute difference allowed between an ONNX stage and PyTorch (fp32)."""

OPSET = 18

# Input sizes (batch, height, width) on which each exported stage is compared with PyTorch.
# P-net runs on every level of the image pyramid, so it is checked on odd and large sizes too.
VALIDATION_SIZES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "pnet": ((1, 12, 12), (1, 13, 17), (2, 37, 53), (1, 12, 240), (1, 289, 385)),
    "rnet": ((1, 24, 24), (3, 24, 24), (17, 24, 24)),
    "onet": ((1, 48, 48), (2, 48, 48), (9, 48, 48)),
}
EXAMPLE_SIZES = {"pnet": (2, 40, 50), "rnet": (2, 24, 24), "onet": (2, 48, 48)}


class FaceExportError(MsaError):
    """The face detector cannot be loaded, exported or validated."""


def _load_stages() -> tuple[dict[str, nn.Module], str]:
    """facenet-pytorch's three stage networks with their pretrained weights, and its version."""
    try:
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
    except ImportError as exc:
        missing = (getattr(exc, "name", None) or "facenet_pytorch").split(".")[0]
        if missing == "facenet_pytorch":
            hint = "install it with pip install --no-deps facenet-pytorch"
        elif missing in ("requests", "tqdm", "torchvision", "PIL"):
            hint = (f"facenet-pytorch needs {missing}: pip install {missing if missing != 'PIL' else 'pillow'}"
                    " (torchvision must match torch, e.g. torch==2.14.1 torchvision==0.29.1)")
        else:
            hint = f"import failed ({exc})"
        raise FaceExportError(
            f"the face detector needs facenet-pytorch, which cannot be imported: {hint}"
        ) from exc
    except Exception as exc:  # e.g. torchvision built for another torch: operator ... does not exist
        raise FaceExportError(
            f"facenet-pytorch failed to import ({type(exc).__name__}: {exc}); install a torchvision "
            "that matches torch (e.g. torch==2.14.1 torchvision==0.29.1)"
        ) from exc
    try:
        stages: dict[str, nn.Module] = {"pnet": PNet(), "rnet": RNet(), "onet": ONet()}
    except Exception as exc:
        raise FaceExportError(
            f"cannot load MTCNN weights from the facenet-pytorch package ({exc}); reinstall it with "
            "pip install --force-reinstall --no-deps facenet-pytorch"
        ) from exc
    for net in stages.values():
        net.eval()
    try:
        version = importlib.metadata.version("facenet-pytorch")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return stages, version


def _dynamic_shapes(stage: str) -> dict[str, dict[int, Any]]:
    dim = torch.export.Dim.DYNAMIC
    if stage == "pnet":
        return {"x": {0: dim, 2: dim, 3: dim}}
    return {"x": {0: dim}}


def _export_stage(stage: str, net: nn.Module, path: Path) -> None:
    batch, height, width = EXAMPLE_SIZES[stage]
    example = torch.zeros(batch, 3, height, width)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (example,),
                str(path),
                input_names=[FACE_INPUT_NAME],
                output_names=list(FACE_OUTPUT_NAMES[stage]),
                dynamic_shapes=_dynamic_shapes(stage),
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:
        raise FaceExportError(
            f"exporting {path.name} failed ({type(exc).__name__}: {exc}); "
            "check the torch and onnxscript versions"
        ) from exc
    try:
        import onnx

        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except Exception as exc:
        raise FaceExportError(f"{path.name} is not a valid ONNX model: {exc}") from exc


def validate_stage(
    stage: str, net: nn.Module, path: Path, *, tolerance: float = TOLERANCE, seed: int = 0
) -> float:
    """Compare the ONNX file of a stage with PyTorch on :data:`VALIDATION_SIZES`.

    Returns the worst absolute difference over all outputs and sizes; raises
    :class:`FaceExportError` naming the file, output, input size and difference when it exceeds
    ``tolerance``.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = FACE_OUTPUT_NAMES[stage]
    rng = np.random.default_rng(seed)
    worst = 0.0
    for batch, height, width in VALIDATION_SIZES[stage]:
        # Inputs in the range the cascade feeds: (pixel - 127.5) / 128.
        pixels = rng.integers(0, 256, size=(batch, 3, height, width)).astype(np.float32)
        x = (pixels - np.float32(PIXEL_MEAN)) * np.float32(PIXEL_SCALE)
        with torch.no_grad():
            expected = net(torch.from_numpy(x))
        got = session.run(list(names), {FACE_INPUT_NAME: x})
        for name, want, have in zip(names, expected, got):
            want_np = want.numpy()
            if want_np.shape != have.shape:
                raise FaceExportError(
                    f"{path.name}: output {name} has shape {have.shape}, PyTorch gives "
                    f"{want_np.shape} on input {(batch, 3, height, width)}; re-export it"
                )
            diff = float(np.max(np.abs(want_np - have))) if have.size else 0.0
            if not np.isfinite(diff) or diff > tolerance:
                raise FaceExportError(
                    f"{path.name}: output {name} differs from PyTorch by {diff:.3g} "
                    f"(> {tolerance:g}) on input {(batch, 3, height, width)}; re-export it"
                )
            worst = max(worst, diff)
    return worst


def export_face_detector(out_dir: Path, *, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Export MTCNN's P-, R- and O-net into ``out_dir`` and validate them against PyTorch.

    Writes ``face_pnet.onnx`` (dynamic batch, height, width), ``face_rnet.onnx`` and
    ``face_onet.onnx`` (dynamic batch). Returns a manifest entry: file names, input and output
    names and shapes, the cascade parameters (facenet-pytorch's defaults), the validation report
    and tool versions.
    """
    out_dir = Path(out_dir)
    stages, facenet_version = _load_stages()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FaceExportError(f"cannot create output folder {out_dir}: {exc}") from exc
    files: dict[str, Any] = {}
    report: dict[str, float] = {}
    for stage, net in stages.items():
        path = out_dir / FACE_FILES[stage]
        _export_stage(stage, net, path)
        report[FACE_FILES[stage]] = validate_stage(stage, net, path, tolerance=tolerance)
        side = EXAMPLE_SIZES[stage][1]
        files[stage] = {
            "file": FACE_FILES[stage],
            "input": FACE_INPUT_NAME,
            "input_shape": ["batch", 3, "height", "width"] if stage == "pnet" else ["batch", 3, side, side],
            "outputs": list(FACE_OUTPUT_NAMES[stage]),
        }
    import onnx
    import onnxruntime as ort

    return {
        "kind": "mtcnn",
        "source": f"facenet-pytorch {facenet_version}",
        "stages": files,
        "min_face_size": DEFAULT_MIN_FACE_SIZE,
        "factor": DEFAULT_FACTOR,
        "thresholds": list(DEFAULT_THRESHOLDS),
        "pixel_mean": PIXEL_MEAN,
        "pixel_scale": PIXEL_SCALE,
        "nms": {"pnet_scale": 0.5, "pnet": 0.7, "rnet": 0.7, "onet_min": 0.7},
        "validation": {"tolerance": tolerance, "max_abs_diff": report, "sizes": {
            k: [list(s) for s in v] for k, v in VALIDATION_SIZES.items()}},
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": ort.__version__, "opset": OPSET},
    }
