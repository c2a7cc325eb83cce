"""Micro benchmarks (pytest-benchmark): preprocessing, each encoder of the tiny pack, the head.

    pytest benchmarks/test_micro.py --benchmark-enable            # timings
    pytest benchmarks/test_micro.py                               # each case once, as a test

Preprocessing runs at real sizes (15 frames of 640x480 -> 224x224, 5 s of audio, one
sentence); the encoders are the tiny preset's (random weights), int8 and fp32, 2 threads,
thread spinning off, the way the Analyzer builds its sessions.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e.clips import clip_inputs
from e2e.common import THREADS
from e2e.pipelines import head_feeds
from msa_runtime.engine.sessions import make_session
from msa_runtime.pack import AudioPrep, VisionPrep, load_manifest
from msa_runtime.preprocess import TextEncoder, audio_batch, vision_batch


@pytest.fixture(scope="module")
def clip() -> dict[str, Any]:
    return clip_inputs()


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from msa_export.pack.build import build_pack
    from msa_export.presets.registry import get_preset

    out = tmp_path_factory.mktemp("micro") / "tiny"
    build_pack(get_preset("tiny"), out, precisions=("int8", "fp32"))
    return out


@pytest.fixture(scope="module")
def tiny_inputs(tiny_pack: Path, clip: dict[str, Any]) -> dict[str, Any]:
    manifest = load_manifest(tiny_pack)
    prep = manifest.encoders["text"].prep
    tok = TextEncoder(tiny_pack / prep.tokenizer, prep)
    return {
        "manifest": manifest,
        "text": tok(clip["text"]),
        "audio": (audio_batch(clip["audio"], manifest.encoders["audio"].prep),),
        "vision": (vision_batch(list(clip["frames"]), manifest.encoders["vision"].prep),),
    }


def test_vision_batch_15_frames_640x480(benchmark: Any, clip: dict[str, Any]) -> None:
    out = benchmark(vision_batch, list(clip["frames"]), VisionPrep())
    assert out.shape == (15, 3, 224, 224) and out.dtype == np.float32


def test_audio_batch_5s(benchmark: Any, clip: dict[str, Any]) -> None:
    out = benchmark(audio_batch, clip["audio"], AudioPrep())
    assert out.shape == (1, 80000)


def test_tokenizer(benchmark: Any, tiny_pack: Path, clip: dict[str, Any]) -> None:
    manifest = load_manifest(tiny_pack)
    prep = manifest.encoders["text"].prep
    tok = TextEncoder(tiny_pack / prep.tokenizer, prep)
    ids, mask = benchmark(tok, clip["text"])
    assert ids.shape == mask.shape and 10 <= ids.shape[1] <= 30


@pytest.mark.parametrize("precision", ["int8", "fp32"])
@pytest.mark.parametrize("modality", ["text", "audio", "vision"])
def test_encoder(
    benchmark: Any, tiny_pack: Path, tiny_inputs: dict[str, Any], modality: str, precision: str
) -> None:
    entry = tiny_inputs["manifest"].encoders[modality]
    session = make_session(tiny_pack / entry.files[precision], "cpu", threads=THREADS)
    feeds = dict(zip([i.name for i in session.get_inputs()], tiny_inputs[modality]))
    session.run(["hidden"], feeds)
    hidden = benchmark(session.run, ["hidden"], feeds)[0]
    assert hidden.shape[-1] == entry.hidden_size and np.isfinite(hidden).all()


def test_head(benchmark: Any, tiny_pack: Path, tiny_inputs: dict[str, Any]) -> None:
    manifest = tiny_inputs["manifest"]
    feats = {}
    for mod, entry in manifest.encoders.items():
        session = make_session(tiny_pack / entry.files["int8"], "cpu", threads=THREADS)
        feeds = dict(zip([i.name for i in session.get_inputs()], tiny_inputs[mod]))
        feats[mod] = session.run(["hidden"], feeds)[0]
    head = make_session(tiny_pack / manifest.head.file, "cpu", threads=THREADS)
    feeds = head_feeds([i.name for i in head.get_inputs()], feats, tiny_inputs)
    score = benchmark(head.run, ["score"], feeds)[0]
    assert score.shape == (1,) and -3.0 <= float(score[0]) <= 3.0
