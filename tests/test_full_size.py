"""Full-size presets with seeded random weights (slow: minutes and several GB of memory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from msa_export.pack.build import build_pack
from msa_export.presets.registry import get_preset
from msa_runtime.pack import load_manifest


@pytest.mark.slow
@pytest.mark.parametrize("name", ["edge", "ando2022-mosi"])
def test_full_size_preset_exports_and_validates(name: str, tmp_path: Path) -> None:
    preset = get_preset(name).with_random_weights()
    report = build_pack(preset, tmp_path / name, precisions=["int8"])
    m = load_manifest(report.out)
    for mod, card in preset.encoders.items():
        entry = m.encoders[mod]
        assert entry.layer == card.layer and entry.num_layers == card.config["num_hidden_layers"]
    int8 = [c for c in report.checks if c.precision == "int8" and c.score_diff is None]
    assert int8 and min(c.cosine for c in int8) >= 0.999
