"""Shared fixtures: packs exported once per test session, paths to the shared reference data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def shared_path(*parts: str) -> Path:
    """A file under ../shared/data, or a skip saying why it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (it lives in ../shared beside the project)")
    return path


@pytest.fixture(scope="session")
def tiny_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset exported at all precisions, with its untrained head."""
    pytest.importorskip("torch")
    from msa_export.build import build_pack
    from msa_export.presets import get_preset

    out = tmp_path_factory.mktemp("packs") / "tiny"
    build_pack(get_preset("tiny"), out)
    return out


@pytest.fixture(scope="session")
def whisper_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CTranslate2 Whisper model folder (2 layers, width 64, seeded random weights, Whisper's
    multilingual vocabulary and special-token ids), converted offline by CTranslate2's own
    converter: it decodes real words with word timestamps at a tiny cost, recognising nothing."""
    pytest.importorskip("faster_whisper", reason="the asr extra is not installed: "
                        "pip install 'msa-edge[asr]'")
    pytest.importorskip("torch")
    from msa_export.asr import build_random_whisper

    return build_random_whisper(tmp_path_factory.mktemp("asr") / "whisper-micro", "micro")


@pytest.fixture(scope="session")
def asr_pack(tmp_path_factory: pytest.TempPathFactory, whisper_model: Path) -> Path:
    """The tiny preset (int8) with the random Whisper model copied in (``msa-export --asr``)."""
    from msa_export.build import build_pack
    from msa_export.presets import get_preset

    out = tmp_path_factory.mktemp("packs") / "tiny-asr"
    build_pack(get_preset("tiny"), out, precisions=["int8"], asr=whisper_model)
    return out
