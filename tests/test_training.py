"""msa-train: feature cache, heads, sweep, report, and train -> export -> run on synthetic clips."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared_path

from msa_export.data.datasets import load_dataset
from msa_export.errors import DatasetError as _SweepError
from msa_export.pack.build import build_pack
from msa_export.presets.registry import get_preset
from msa_export.tour import run_tour
from msa_export.training import features as fc
from msa_export.training.cli import main as train_main
from msa_export.training.run import train
from msa_export.training.sweep import assign_folds, choose_layer, group_of, paired_difference
from msa_runtime import Analyzer
from msa_runtime.pack import load_manifest


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("tour")
    return out, run_tour(out, epochs=60, progress=lambda m: None)


def test_multimodal_head_beats_every_unimodal_head(tour: tuple[Path, dict[str, Any]]) -> None:
    _, summary = tour
    assert set(summary["unimodal_test_mae"]) == {"text", "audio", "vision"}
    for mod, mae in summary["unimodal_test_mae"].items():
        assert summary["multimodal_test_mae"] < mae, mod


def test_pack_reproduces_trained_predictions(tour: tuple[Path, dict[str, Any]]) -> None:
    out, summary = tour
    assert summary["max_diff_pack_vs_trained"] <= 0.05
    m = load_manifest(out / "pack")
    assert m.head.trained and m.modalities == ("text", "audio", "vision")
    report = (out / "run" / "report.md").read_text()
    assert "text only" in report and "(mean ± std over seeds)" in report


def test_cache_is_resumable_and_atomic(tour: tuple[Path, dict[str, Any]]) -> None:
    out, _ = tour
    ds = load_dataset(out / "data" / "manifest.csv")
    preset = get_preset("tiny")
    folder = out / "cache" / fc.cache_key(preset.encoders["audio"])
    victim = sorted(folder.glob("*.npy"))[0]
    before = np.load(victim)
    victim.unlink()
    report = fc.extract_features(ds.samples, preset, out / "cache", modalities=["audio"])
    assert report.extracted == 1 and report.reused == len(ds.samples) - 1
    np.testing.assert_array_equal(np.load(victim), before)
    assert before.dtype == np.float16 and before.shape[0] == 4  # embeddings + 3 blocks
    assert not list(folder.glob(".*tmp*"))


@pytest.mark.parametrize("head,layers", [("cms", "best"), ("gated", "weighted")])
def test_other_heads_train_and_export(
    tour: tuple[Path, dict[str, Any]], tmp_path: Path, head: str, layers: str
) -> None:
    out, _ = tour
    metrics = train(
        out / "data" / "manifest.csv",
        get_preset("tiny"),
        tmp_path / "run",
        head=head,
        layers=layers,
        seeds=2,
        epochs=8,
        lr=1e-3,
        cache_dir=out / "cache",
    )
    assert len(metrics["runs"]) == 2 and np.isfinite(metrics["summary"]["mae"]["mean"])
    pack = build_pack(
        get_preset("tiny"), tmp_path / "pack", head=tmp_path / "run" / "head.pt", precisions=["fp32"]
    ).out
    m = load_manifest(pack)
    assert m.head.kind == head
    if layers == "weighted":
        weights = m.encoders["text"].layer_weights
        assert weights is not None and len(weights) == 5 and abs(sum(weights) - 1) < 1e-5
    ds = load_dataset(out / "data" / "manifest.csv")
    sample = ds.split("test")[0]
    with Analyzer(pack, providers="cpu") as an:
        score = an.predict(sample.media, text=sample.text).score
    assert abs(score - metrics["test_predictions"][sample.id]) <= 0.05


def _mosi_subset(tmp_path: Path, per_split: dict[str, int]) -> Path:
    rows = list(csv.DictReader(shared_path("mosi", "label.csv").open(encoding="utf-8")))
    keep, seen = [], dict.fromkeys(per_split, 0)
    for r in rows:
        if seen[r["mode"]] < per_split[r["mode"]]:
            keep.append(r)
            seen[r["mode"]] += 1
    path = tmp_path / "label.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    return path


def test_layer_sweep_on_real_mosi_text(tmp_path: Path) -> None:
    labels = _mosi_subset(tmp_path, {"train": 150, "dev": 60, "test": 40})
    result = CliRunner().invoke(
        train_main,
        [
            "--dataset",
            str(labels),
            "--preset",
            "minilm-text",
            "--out",
            str(tmp_path / "run"),
            "--layers",
            "sweep",
            "--seeds",
            "1",
            "--sweep-folds",
            "3",
            "--epochs",
            "4",
            "--lr",
            "1e-3",
            "--cache",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    sweep = metrics["sweep"]["text"]
    assert [r["layer"] for r in sweep] == list(range(6))
    assert all(np.isfinite(r["ridge_test"]["mae"]) for r in sweep)
    # cross-validated over train+dev: 3 held-out MAEs per layer, one per fold
    assert all(r["criterion"] == "cv" and r["folds"] == 3 and len(r["select_runs"]) == 3 for r in sweep)
    assert all(r["select"]["mae"] == pytest.approx(np.mean(r["select_runs"])) for r in sweep)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "ridge test MAE" in report and "**(chosen)**" in report and "3-fold CV over train+dev" in report
    assert "vs layer 3 (paired)" in report and "(preset)" in report
    assert (tmp_path / "run" / "sweep.png").stat().st_size > 1000
    assert metrics["preset_layers"] == {"text": 3}
    assert metrics["layers"] == {"text": choose_layer(sweep, 3)}


def _row(layer: int, runs: list[float]) -> dict[str, object]:
    return {
        "layer": layer,
        "select": {"mae": float(np.mean(runs))},
        "select_std": {"mae": float(np.std(runs, ddof=1))},
        "select_runs": runs,
    }


def test_layer_choice_keeps_the_presets_layer_unless_another_is_clearly_better() -> None:
    base = [0.86, 0.80, 0.90, 0.84, 0.88]  # fold-to-fold spread much larger than layer effects
    rows = [_row(i, [b + d for b in base]) for i, d in enumerate([0.08, 0.03, 0.01, 0.0, -0.01, -0.012])]
    rows[5]["select_runs"] = [b - 0.012 + e for b, e in zip(base, [0.03, -0.03, 0.02, -0.02, 0.0])]
    # layer 4 is better on every fold by 0.01 (paired SE 0): clearly better than preset layer 3
    assert paired_difference(rows, 3, 4) == pytest.approx((0.01, 0.0))
    assert choose_layer(rows[:5], prefer=3) == 4
    # layer 5 has the lowest mean, but its paired advantage (0.012) is within 2 SE (0.0112 each)
    d, se = paired_difference(rows, 3, 5)
    assert d == pytest.approx(0.012) and d < 2 * se
    assert choose_layer([rows[i] for i in (0, 1, 2, 3, 5)], prefer=3) == 3
    # unpaired, layer 4's 0.01 would be lost in the folds' spread (std 0.04)
    assert rows[4]["select_std"]["mae"] > 0.03
    # no preferred layer, or none in the rows, or a single replicate: the lowest mean
    assert choose_layer(rows[:5], prefer=None) == 4
    assert choose_layer(rows[:3], prefer=3) == 2
    one = [_row(0, [0.9, 0.9]), _row(1, [0.8, 0.8])]
    for r in one:
        r["select_runs"] = r["select_runs"][:1]
    assert choose_layer(one, prefer=0) == 1


def test_folds_keep_whole_videos_and_are_balanced_and_deterministic() -> None:
    ids = [f"vid{v}_{c}" for v in range(12) for c in range(1 + v % 4)] + ["5W7Z1C_fDaE_3", "5W7Z1C_fDaE_4"]
    folds = assign_folds(ids, 4)
    assert group_of("5W7Z1C_fDaE_24") == "5W7Z1C_fDaE" and group_of("line7") == "line7"
    by_video: dict[str, set[int]] = {}
    for sid, k in zip(ids, folds):
        by_video.setdefault(group_of(sid), set()).add(int(k))
    assert all(len(v) == 1 for v in by_video.values())
    sizes = np.bincount(folds, minlength=4)
    assert sizes.min() > 0 and sizes.max() - sizes.min() <= 2
    assert (assign_folds(ids, 4) == folds).all()
    with pytest.raises(_SweepError, match="only 13 videos; use fewer folds or --sweep-folds 0"):
        assign_folds(ids, 20)


def test_undecodable_clips_are_skipped_and_counted(tmp_path: Path) -> None:
    from media_factory import make_clip

    media = tmp_path / "m"
    media.mkdir()
    rows = []
    for i, split in enumerate(["train"] * 4 + ["dev"] * 2 + ["test"] * 2):
        path = media / f"c{i}.wav"
        make_clip(path, duration=1.0, video_codec=None)
        rows.append({"media": f"m/c{i}.wav", "text": "good", "label": (i % 3) - 1, "split": split})
    (media / "c1.wav").write_bytes(b"this is not audio at all" * 10)
    manifest = tmp_path / "data.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["media", "text", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    messages: list[str] = []
    metrics = train(
        manifest,
        get_preset("tiny"),
        tmp_path / "run",
        modalities=["audio"],
        seeds=1,
        epochs=1,
        cache_dir=tmp_path / "cache",
        progress=messages.append,
    )
    assert metrics["counts"]["train"] == 3 and len(metrics["failed_clips"]) == 1
    assert any("1 clips failed to decode and were skipped" in m for m in messages)


def test_cli_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    run = CliRunner().invoke(
        train_main, ["--dataset", str(bad), "--preset", "tiny", "--out", str(tmp_path / "o")]
    )
    assert run.exit_code == 2 and "lacks column" in run.output and "Traceback" not in run.output
    labels = tmp_path / "label.csv"
    labels.write_text("id,text,label,mode\na_1,good,5.0,train\n")
    run = CliRunner().invoke(
        train_main, ["--dataset", str(labels), "--preset", "tiny", "--out", str(tmp_path / "o")]
    )
    assert run.exit_code == 2 and "[-3, 3]" in run.output
    labels.write_text("id,text,label,mode\na_1,good,1.0,train\na_2,bad,-1,dev\n")
    run = CliRunner().invoke(
        train_main, ["--dataset", str(labels), "--preset", "tiny", "--out", str(tmp_path / "o")]
    )
    assert run.exit_code == 2 and "split(s) test have no samples" in run.output
    labels.write_text("id,text,label,mode\na_1,good,1.0,train\na_2,bad,-1,dev\na_3,ok,0,test\n")
    run = CliRunner().invoke(
        train_main,
        ["--dataset", str(labels), "--preset", "tiny", "--out", str(tmp_path / "o"), "--modalities", "audio"],
    )
    assert run.exit_code == 2 and "needs media files" in run.output


def test_tour_command_line(tour: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """``python -m msa_export.tour``: reuses the dataset and feature cache of an earlier run,
    trains, exports and scores, and prints the summary (a copy of the fixture's folder)."""
    out, _ = tour
    again = tmp_path / "tour"
    again.mkdir()
    shutil.copytree(out / "data", again / "data")
    shutil.copytree(out / "cache", again / "cache")
    proc = subprocess.run(
        [sys.executable, "-m", "msa_export.tour", "--out", str(again), "--epochs", "4"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1/4 reusing the dataset" in proc.stderr
    assert "test MAE, multimodal head:" in proc.stdout and "pack (int8, ONNX Runtime) on 54" in proc.stdout
    summary = json.loads((again / "tour.json").read_text())
    assert summary["clips"] == 54 and summary["max_diff_pack_vs_trained"] <= 0.05
    assert load_manifest(again / "pack").head.trained


def test_sweep_fold_settings_are_checked_before_any_work(tmp_path: Path) -> None:
    labels = tmp_path / "label.csv"
    labels.write_text(
        "id,text,label,mode\nvidA_1,good,1.0,train\nvidA_2,bad,-1.0,dev\nvidB_1,fine,0.5,test\n",
        encoding="utf-8",
    )
    base = ["--dataset", str(labels), "--preset", "minilm-text", "--out", str(tmp_path / "run")]
    base += ["--layers", "sweep", "--cache", str(tmp_path / "cache")]
    for extra, message in (
        (["--sweep-folds", "2"], "--sweep-folds must be 0 (the dev split) or >= 3"),
        ([], "train + dev hold only 1 videos; use fewer folds or --sweep-folds 0"),
    ):
        result = CliRunner().invoke(train_main, base + extra)
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "cache").exists()
