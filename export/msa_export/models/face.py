"""Export facenet-pytorch's MTCNN face detector (P-, R- and O-net) to ONNX for the runtime.

The three stage networks come with their real pretrained weights inside the ``facenet-pytorch``
wheel (no download); facenet-pytorch's own modules are used when the package imports, otherwise
(no matching torchvision) the same weight files go into equivalent modules defined here. Each is
exported with ``torch.onnx.export``, checked with ``onnx.checker``
and validated against PyTorch on several input sizes. The numpy cascade around them (pyramid,
box regression, NMS, crops) lives in :mod:`msa_runtime.face.cascade`.

facenet-pytorch declares old torch/torchvision pins; install it without them:
``pip install --no-deps facenet-pytorch`` (it also imports ``requests`` and ``tqdm``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from msa_export.errors import FaceExportError
from msa_runtime.engine.sessions import make_session
from msa_runtime.face.cascade import (
    DEFAULT_FACTOR,
    DEFAULT_MIN_FACE_SIZE,
    DEFAULT_THRESHOLDS,
    FACE_FILES,
    FACE_INPUT_NAME,
    FACE_OUTPUT_NAMES,
    PIXEL_MEAN,
    PIXEL_SCALE,
    FaceNms,
)
from msa_runtime.pack import FaceDetectorEntry

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


class _PNet(nn.Module):
    """P-net, fully convolutional; parameter names follow facenet-pytorch's state dicts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box offsets

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


def _flatten_whc(x: torch.Tensor) -> torch.Tensor:
    # The original (Caffe) weights flatten feature maps in width, height, channel order.
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class _RNet(nn.Module):
    """R-net on 24x24 crops; parameter names follow facenet-pytorch's state dicts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu4(self.dense4(_flatten_whc(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class _ONet(nn.Module):
    """O-net on 48x48 crops; parameter names follow facenet-pytorch's state dicts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)  # five landmarks

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu5(self.dense5(_flatten_whc(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


_OWN_STAGES: dict[str, type[nn.Module]] = {"pnet": _PNet, "rnet": _RNet, "onet": _ONet}


def _facenet_data_dir() -> Path | None:
    """facenet-pytorch's weight folder, found without importing it (None: not installed)."""
    try:
        spec = importlib.util.find_spec("facenet_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _facenet_stages() -> dict[str, nn.Module]:
    """facenet-pytorch's own stage modules (needs its imports: torchvision, requests, tqdm)."""
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    return {"pnet": PNet(), "rnet": RNet(), "onet": ONet()}


def load_mtcnn_stages(*, prefer_facenet: bool = True) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """MTCNN's P-, R- and O-net with facenet-pytorch's pretrained weights, in eval mode.

    Uses facenet-pytorch's own modules when the package imports; when it is installed but does
    not import (its torchvision, requests or tqdm are missing or do not match torch), the same
    weight files are loaded into equivalent modules defined here, so exporting needs only
    ``pip install --no-deps facenet-pytorch``. Returns the modules and a description of the source.
    """
    data = _facenet_data_dir()
    if data is None:
        raise FaceExportError(
            "the face detector needs the MTCNN weights of facenet-pytorch, which is not installed: "
            "install it with pip install --no-deps facenet-pytorch"
        )
    try:
        version = importlib.metadata.version("facenet-pytorch")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    info = {"package": f"facenet-pytorch {version}"}
    stages: dict[str, nn.Module] | None = None
    if prefer_facenet:
        try:
            stages = _facenet_stages()
            info["modules"] = "facenet_pytorch.models.mtcnn"
        except (ImportError, RuntimeError, AttributeError, OSError, KeyError) as exc:
            # no torchvision / requests / tqdm; "operator torchvision::nms does not exist"; KeyError
            # from importlib when an earlier failed import left facenet_pytorch half registered
            info["modules"] = f"msa_export.models.face (facenet_pytorch did not import: {type(exc).__name__})"
    else:
        info["modules"] = "msa_export.models.face"
    if stages is None:
        stages = {}
        for stage, cls in _OWN_STAGES.items():
            path = data / f"{stage}.pt"
            net = cls()
            try:
                net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                raise FaceExportError(
                    f"cannot load MTCNN weights {path} ({exc}); reinstall them with "
                    "pip install --force-reinstall --no-deps facenet-pytorch"
                ) from exc
            stages[stage] = net
    for net in stages.values():
        net.eval()
    return stages, info


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
    session = make_session(path, ["CPUExecutionProvider"], threads=1)
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


def export_face_detector(out_dir: Path, *, tolerance: float = TOLERANCE) -> FaceDetectorEntry:
    """Export MTCNN's P-, R- and O-net into ``out_dir`` and validate them against PyTorch.

    Writes ``face_pnet.onnx`` (dynamic batch, height, width), ``face_rnet.onnx`` and
    ``face_onet.onnx`` (dynamic batch). Returns the pack's typed manifest entry: file names, input
    and output names and shapes, the cascade parameters (facenet-pytorch's defaults, which the
    runtime then reads from it), the validation report and tool versions.
    """
    out_dir = Path(out_dir)
    stages, source = load_mtcnn_stages()
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

    return FaceDetectorEntry(
        kind="mtcnn",
        source=source,
        stages=files,
        min_face_size=DEFAULT_MIN_FACE_SIZE,
        factor=DEFAULT_FACTOR,
        thresholds=DEFAULT_THRESHOLDS,
        pixel_mean=PIXEL_MEAN,
        pixel_scale=PIXEL_SCALE,
        nms=FaceNms(),
        validation={
            "tolerance": tolerance,
            "max_abs_diff": report,
            "sizes": {k: [list(s) for s in v] for k, v in VALIDATION_SIZES.items()},
        },
        versions={
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "opset": OPSET,
        },
    )
