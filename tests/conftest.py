"""Shared fixtures: packs exported once per test session, paths to the shared reference data."""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))
# The tests pin the CPU execution provider (runtime default: auto, which takes OpenVINO when its
# plugin is installed): scores and precisions stay those of the CPU EP in every environment.
# tests/test_openvino.py asks for OpenVINO (and auto) explicitly. Subprocesses inherit this.
os.environ.setdefault("MSA_EDGE_PROVIDERS", "cpu")


@pytest.fixture(scope="session", autouse=True)
def openvino_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """OpenVINO's compile cache in a temporary folder, not the user's ~/.cache (subprocesses
    inherit it)."""
    folder = tmp_path_factory.mktemp("openvino-cache")
    before = os.environ.get("MSA_EDGE_OPENVINO_CACHE")
    os.environ["MSA_EDGE_OPENVINO_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("MSA_EDGE_OPENVINO_CACHE", None)
    else:
        os.environ["MSA_EDGE_OPENVINO_CACHE"] = before


def shared_path(*parts: str) -> Path:
    """A file under ../shared/data, or a skip saying why it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (it lives in ../shared beside the project)")
    return path


@pytest.fixture(scope="session")
def tiny_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset exported at all precisions, with its untrained head. Environments without
    torch (the serve extra's .venv-serve in CI) take a pack built elsewhere: MSA_EDGE_TINY_PACK."""
    prebuilt = os.environ.get("MSA_EDGE_TINY_PACK")
    if prebuilt:
        return Path(prebuilt)
    pytest.importorskip("torch")
    from msa_export.pack.build import build_pack
    from msa_export.presets.registry import get_preset

    out = tmp_path_factory.mktemp("packs") / "tiny"
    build_pack(get_preset("tiny"), out)
    return out


@pytest.fixture(scope="module")
def an(tiny_pack: Path) -> Iterator[Any]:
    """An :class:`msa_runtime.Analyzer` on the tiny pack (its untrained-head warning silenced);
    test modules that need another pack define their own ``an``."""
    from msa_runtime import Analyzer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analyzer = Analyzer(tiny_pack)
    yield analyzer
    analyzer.close()


@pytest.fixture(scope="session")
def trained_pack(tiny_pack: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset (int8 + fp32) with a gated head trained on the synthetic task (about
    20 s): scores follow each modality's factor, test MAE about 0.2 (see ``trained.py``)."""
    pytest.importorskip("torch")
    from trained import train_head_checkpoint

    from msa_export.pack.build import build_pack
    from msa_export.presets.registry import get_preset

    root = tmp_path_factory.mktemp("trained")
    head = train_head_checkpoint(tiny_pack, root / "head.pt")
    out = root / "pack"
    build_pack(get_preset("tiny"), out, head=head, precisions=["int8", "fp32"])
    return out


@pytest.fixture(scope="session")
def face_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The MTCNN face detector exported once (weights from the facenet-pytorch wheel)."""
    if importlib.util.find_spec("facenet_pytorch") is None:
        pytest.skip(
            "facenet-pytorch (the MTCNN weights) not installed: pip install --no-deps facenet-pytorch"
        )
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch not installed (the export side)")
    from msa_export.models.face import export_face_detector

    folder = tmp_path_factory.mktemp("face")
    manifest = export_face_detector(folder)
    return folder, manifest


@pytest.fixture(scope="session")
def detector(face_export: tuple[Path, dict[str, Any]]) -> Any:
    """A :class:`msa_runtime.face.cascade.FaceDetector` on the exported stages, 2 threads."""
    from msa_runtime.face.cascade import FaceDetector

    folder, manifest = face_export
    return FaceDetector.from_folder(folder, manifest, threads=2)


@pytest.fixture(scope="session")
def whisper_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CTranslate2 Whisper model folder (2 layers, width 64, seeded random weights, Whisper's
    multilingual vocabulary and special-token ids), converted offline by CTranslate2's own
    converter: it decodes real words with word timestamps at a tiny cost, recognising nothing."""
    pytest.importorskip(
        "faster_whisper", reason="the asr extra is not installed: pip install 'msa-edge[asr]'"
    )
    pytest.importorskip("torch")
    from msa_export.models.asr import build_random_whisper

    return build_random_whisper(tmp_path_factory.mktemp("asr") / "whisper-micro", "micro")


@pytest.fixture(scope="session")
def asr_pack(tmp_path_factory: pytest.TempPathFactory, whisper_model: Path) -> Path:
    """The tiny preset (int8) with the random Whisper model copied in (``msa-export --asr``)."""
    from msa_export.pack.build import build_pack
    from msa_export.presets.registry import get_preset

    out = tmp_path_factory.mktemp("packs") / "tiny-asr"
    build_pack(get_preset("tiny"), out, precisions=["int8"], asr=whisper_model)
    return out
