"""msa-train --finetune: the last K kept blocks trained with the head, cached states, export.

Tiny preset (seeded random encoders of all three kinds) on a small synthetic dataset: no real
gains are measurable with random encoders; these tests check the machinery (what trains, what
stays frozen, that the cached-state path is the encoder's own forward, that the pack scores as
the fine-tuned PyTorch model does, and bad input). MOSI text figures: benchmarks/finetune.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from msa_export.cli import main as export_main
from msa_export.data.datasets import load_dataset
from msa_export.models import encoders as enc
from msa_export.models.heads import load_checkpoint
from msa_export.models.tuned import Tail, apply_tuned, capture_state, tuned_blocks
from msa_export.pack.build import build_pack
from msa_export.presets.registry import get_preset
from msa_export.training import features as fc
from msa_export.training import states as st
from msa_export.training.cli import main as train_main
from msa_export.training.finetune import FineTuneOptions
from msa_export.training.run import train
from msa_runtime import Analyzer

TUNED = {"text": 1, "audio": 1, "vision": 2}


def _model(mod: str) -> tuple[Any, Any]:
    card = get_preset("tiny").encoders[mod]
    return card, enc.SPECS[card.kind].build(card, None)


def _inputs(card: Any, model: Any, length_index: int, seed: int) -> tuple[torch.Tensor, ...]:
    spec = enc.SPECS[card.kind]
    cfg = enc.config_dict(model)
    x = spec.make_inputs(card, cfg, spec.lengths(card, cfg)[length_index], seed)
    return (x[0][:1], x[1][:1]) if card.modality == "text" else x


@pytest.mark.parametrize("mod", ["text", "audio", "vision"])
def test_cached_state_path_is_the_encoders_own_forward(mod: str) -> None:
    """The tail run from the state entering its first block gives the cut encoder's feature
    (exactly, fp32), for every K; texts of other lengths batched (padded) give the same."""
    card, model = _model(mod)
    cut = enc.cut(_model(mod)[1], card.blocks)
    xs = [_inputs(card, model, i, i) for i in (0, 1)]
    refs = [enc.reference_output(card, model, x) for x in xs]
    for k in range(1, card.blocks + 1):
        start = card.blocks - k
        tail = Tail(card, cut, k).eval()
        states = [capture_state(card, cut, x, start) for x in xs]
        with torch.no_grad():
            outs = tail(states)
        for out, ref in zip(outs, refs):
            want = ref if mod == "vision" else ref[0]
            assert out.shape == want.shape
            np.testing.assert_allclose(out.numpy(), want, atol=2e-5, err_msg=f"{mod} K={k}")
    if mod == "text":  # the feature cache holds the text states (fp16): within its rounding
        states = torch.from_numpy(np.asarray(enc.all_states(card, model, xs[1]).numpy(), np.float16))
        with torch.no_grad():
            out = Tail(card, cut, 2).eval()([states[card.blocks - 2].float()])[0]
        np.testing.assert_allclose(out.numpy(), refs[1][0], atol=2e-2)


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A synthetic dataset, every modality's top blocks fine-tuned (1 seed, a few epochs)."""
    from msa_export.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("finetune")
    manifest = make_synthetic_dataset(
        root / "data", n_train=27, n_dev=9, n_test=9, duration=1.0, fps=3, size=48
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny encoders: a second thread only waits on a busy machine
    try:
        metrics = train(
            manifest,
            get_preset("tiny"),
            root / "run",
            seeds=1,
            epochs=1,  # the frozen unimodal baselines of the report
            cache_dir=root / "cache",
            finetune=TUNED,
            finetune_opts=FineTuneOptions(epochs=3, patience=3, lr=1e-3),
        )
    finally:
        torch.set_num_threads(threads)
    return root, metrics


def test_tuned_blocks_change_and_frozen_ones_do_not(tuned_run: tuple[Path, dict[str, Any]]) -> None:
    root, metrics = tuned_run
    ckpt = load_checkpoint(root / "run" / "head.pt")
    assert set(ckpt.tuned) == set(TUNED) and metrics["finetune"]["vision"]["blocks"] == 2
    for mod, k in TUNED.items():
        card, pretrained = _model(mod)
        tuned = ckpt.tuned[mod]
        assert tuned["blocks"] == k and tuned["layer"] == card.layer
        prefix = enc.block_prefix(pretrained)
        assert tuned_blocks(tuned["state"], prefix) == list(range(card.blocks - k, card.blocks))
        before = pretrained.state_dict()
        changed = [n for n, v in tuned["state"].items() if not torch.equal(v, before[n])]
        assert changed, f"{mod}: no tuned weight moved"
        after = apply_tuned(_model(mod)[1], tuned["state"], mod).state_dict()
        for name, value in before.items():
            if name not in tuned["state"]:  # every frozen weight (blocks below, embeddings) kept
                assert torch.equal(after[name], value), name


def test_audio_and_vision_states_are_cached_unsliced(tuned_run: tuple[Path, dict[str, Any]]) -> None:
    root, _ = tuned_run
    preset = get_preset("tiny")
    ds = load_dataset(root / "data" / "manifest.csv")
    for mod in ("audio", "vision"):
        card = preset.encoders[mod]
        folder = st.state_folder(root / "cache", card, TUNED[mod])
        assert folder.name == f"states-in{card.blocks - TUNED[mod]}"
        states = st.load_states(folder, ds.samples, card, TUNED[mod])
        feats, _ = fc.load_layer(root / "cache" / fc.cache_key(card), ds.samples, card.layer, mod)
        state, feat = next((s, f) for s, f in zip(states, feats) if s is not None)
        assert state.dtype == torch.float32 and feat is not None
        if mod == "audio":  # every frame, where the head sees every stride-th
            assert state.shape[0] > feat.shape[0] and state.shape[0] // card.frame_stride <= feat.shape[0]
        else:  # every patch of each frame, where the head sees the CLS token
            assert state.ndim == 3 and state.shape[0] == feat.shape[0] and state.shape[1] > 1


def test_export_of_a_tuned_head_scores_like_the_tuned_model(
    tuned_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """The pack carries the tuned blocks: its fp32 scores equal the fine-tuned PyTorch model's
    test predictions (from cached states), and they differ from the pretrained encoders'."""
    root, metrics = tuned_run
    pack = tmp_path / "pack"
    report = build_pack(get_preset("tiny"), pack, head=root / "run" / "head.pt", precisions=("fp32",))
    assert report.trained_head and report.checks
    ds = load_dataset(root / "data" / "manifest.csv")
    want = metrics["test_predictions"]
    with Analyzer(pack, precision="fp32") as analyzer:
        got = {s.id: analyzer.predict(s.media, text=s.text).score for s in ds.split("test")}
    diffs = [abs(got[i] - want[i]) for i in want]
    assert max(diffs) < 0.02, diffs
    # each encoder file is the tuned encoder, not the pretrained one
    import onnxruntime as ort

    ckpt = load_checkpoint(root / "run" / "head.pt")
    for mod in TUNED:
        card, pretrained = _model(mod)
        tuned = apply_tuned(_model(mod)[1], ckpt.tuned[mod]["state"], mod)
        x = _inputs(card, pretrained, 1, 7)
        session = ort.InferenceSession(str(pack / f"{mod}.fp32.onnx"), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        out = session.run(None, {n: t.numpy() for n, t in zip(names, x)})[0]
        np.testing.assert_allclose(out, enc.reference_output(card, tuned, x), atol=1e-4)
        assert np.abs(out - enc.reference_output(card, pretrained, x)).max() > 1e-3, mod


def _bad(args: list[str]) -> str:
    run = CliRunner().invoke(train_main, args)
    assert run.exit_code == 2, run.output
    assert "Traceback" not in run.output and len(run.output.strip().splitlines()) == 1, run.output
    return run.output


def test_bad_finetune_arguments_are_one_line_before_any_work(tmp_path: Path) -> None:
    labels = tmp_path / "label.csv"
    labels.write_text("id,text,label,mode\na_1,good,1.0,train\na_2,bad,-1,dev\na_3,ok,0,test\n")
    cache = tmp_path / "cache"
    base = ["--dataset", str(labels), "--preset", "tiny", "--out", str(tmp_path / "o"), "--cache", str(cache)]
    assert "the head does not use audio" in _bad([*base, "--finetune", "audio=1"])
    assert "keeps only 3 blocks" in _bad([*base, "--finetune", "text=4"])
    assert "use MODALITY=K" in _bad([*base, "--finetune", "text=two"])
    assert "needs one cut layer" in _bad([*base, "--finetune", "text=1", "--layers", "weighted"])
    assert "keeps only 2 blocks" in _bad([*base, "--finetune", "text=3", "--layers", "text=1"])
    assert "--finetune-decay" in _bad([*base, "--finetune", "text=1", "--finetune-decay", "0"])
    assert not cache.exists()  # nothing was encoded


def _tuned_checkpoint(tmp_path: Path) -> Path:
    """A head.pt holding the top text block of the tiny preset (no training needed)."""
    from msa_export.models.heads import HeadConfig, build_head, save_checkpoint
    from msa_export.training.finetune import tuned_state

    card, model = _model("text")
    tail = Tail(card, enc.cut(model, card.blocks), 1)
    with torch.no_grad():
        next(tail.parameters()).add_(0.01)
    cfg = HeadConfig(kind="gated", dims={"text": 32}, hidden=32, embed=16)
    path = tmp_path / "head.pt"
    save_checkpoint(
        path,
        build_head(cfg),
        cfg,
        layers={"text": card.layer},
        encoders={"text": {"kind": card.kind, "source": card.source, "hidden_size": 32}},
        preset="tiny",
        tuned=tuned_state({"text": tail}),
    )
    return path


def test_tuned_checkpoint_with_another_preset_or_layer_is_refused(tmp_path: Path) -> None:
    head = _tuned_checkpoint(tmp_path)
    card = tmp_path / "other.toml"
    tiny = Path(enc.__file__).parents[1] / "presets" / "cards" / "tiny.toml"
    card.write_text(tiny.read_text().replace('name = "tiny"', 'name = "other"'))
    out = tmp_path / "pack"
    cases = [
        (["--preset", str(card)], "export with --preset tiny"),
        (["--preset", "tiny", "--layer", "text=1"], "contradicts the checkpoint"),
    ]
    for extra, message in cases:
        run = CliRunner().invoke(export_main, ["--head", str(head), "--out", str(out), *extra])
        assert run.exit_code == 2 and message in run.output and "Traceback" not in run.output, run.output
        assert not out.exists()
    shutil.rmtree(tmp_path / "pack", ignore_errors=True)
