"""SmoothQuant-style smoothing before dynamic int8 (msa_export.convert.smooth): it keeps the fp32
function, it lets an outlier MatMul be int8, and on the real all-MiniLM-L6-v2 (cut at block 3,
the minilm-text preset) it shrinks the int8 error on MOSI utterances it was not calibrated on."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import shared_path
from test_int8_search import _gate, _kept_fp32, outlier  # noqa: F401  (the fixture)

from msa_export.convert import onnx_file as convert
from msa_export.convert import smooth
from msa_export.convert.int8_search import accuracy_aware_int8, weight_matmuls
from msa_export.errors import ExportError
from msa_export.gate.checks import cosines
from msa_export.gate.inputs import Case
from msa_export.models import encoders as enc
from msa_export.presets.registry import get_preset
from msa_runtime.engine.sessions import make_session
from msa_runtime.preprocess import TextEncoder


def _feeds(cases: list[Case]) -> list[dict[str, np.ndarray]]:
    return [{"x": c.inputs[0].numpy()} for c in cases]


def test_smoothing_keeps_the_function_and_flattens_the_outlier(
    outlier: tuple[Path, list[Case]],  # noqa: F811
    tmp_path: Path,
) -> None:
    fp32, cases = outlier
    nodes = weight_matmuls(onnx.load(str(fp32)))
    dst = tmp_path / "s.onnx"
    report = smooth.smooth_matmuls(fp32, dst, _feeds(cases), nodes)
    assert "/b/MatMul" in report.matmuls
    entry = report.activations[onnx_input(fp32, "/b/MatMul")]
    assert entry["alpha"] is not None and entry["after"] < entry["before"] / 4
    muls = [n for n in onnx.load(str(dst)).graph.node if n.name.startswith("/smooth/")]
    assert len(muls) == len(report.smoothed) >= 1
    a, b = make_session(fp32, "cpu"), make_session(dst, "cpu")
    for feed in _feeds(cases):
        ref, got = a.run(None, feed)[0], b.run(None, feed)[0]
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    # strength 0 is a plain copy: no Mul, same weights
    off = smooth.smooth_matmuls(fp32, tmp_path / "o.onnx", _feeds(cases), nodes, alpha=0.0)
    assert off.matmuls == [] and not any(
        n.name.startswith("/smooth/") for n in onnx.load(str(tmp_path / "o.onnx")).graph.node
    )


def onnx_input(path: Path, node: str) -> str:
    return next(n.input[0] for n in onnx.load(str(path)).graph.node if n.name == node)


def test_smoothing_lets_the_outlier_matmul_be_int8(
    outlier: tuple[Path, list[Case]],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Without smoothing the search must keep the outlier MatMul in fp32; with it (the default)
    every MatMul is int8 and the gate passes; the manifest says what was done."""
    fp32, cases = outlier
    plain = accuracy_aware_int8(
        fp32, tmp_path / "p.int8.onnx", evaluate=_gate(cases), inputs=_feeds(cases), smooth=0.0
    )
    assert plain.kept == ["/b/MatMul"]
    dst = tmp_path / "s.int8.onnx"
    smoothed = accuracy_aware_int8(fp32, dst, evaluate=_gate(cases), inputs=_feeds(cases))
    assert smoothed.kept == [] and smoothed.quantized == 3
    assert smoothed.gate is not None and smoothed.gate.passed
    assert _kept_fp32(dst) == set()  # every weight MatMul of the file is int8
    entry = smoothed.to_manifest()["smoothing"]
    assert entry["alpha"] == "auto" and entry["activations_smoothed"] >= 1
    assert entry["max_int8_error_after"] < entry["max_int8_error_before"]
    assert "smoothed" in smoothed.summary()


def test_strength_argument_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSA_EDGE_INT8_SMOOTH", raising=False)
    assert smooth.smooth_alpha() == "auto"
    monkeypatch.setenv("MSA_EDGE_INT8_SMOOTH", "0.7")
    assert smooth.smooth_alpha() == 0.7 and smooth.smooth_alpha(0.0) == 0.0
    for bad in ("1.5", "strong", "-0.1"):
        monkeypatch.setenv("MSA_EDGE_INT8_SMOOTH", bad)
        with pytest.raises(ExportError, match="MSA_EDGE_INT8_SMOOTH") as info:
            smooth.smooth_alpha()
        assert "\n" not in str(info.value)
    with pytest.raises(ExportError, match="alpha"):
        smooth.smooth_alpha(2.0)


@pytest.fixture(scope="module")
def minilm_block3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TextEncoder]:
    """The real all-MiniLM-L6-v2 cut at block 3 (the minilm-text preset), as an fp32 ONNX file."""
    card = get_preset("minilm-text").encoders["text"]
    spec = enc.SPECS[card.kind]
    model = spec.build(card, True)
    wrapped = enc.wrap(card, enc.cut(model, card.blocks))
    config = enc.config_dict(model)
    path = tmp_path_factory.mktemp("minilm") / "text.fp32.onnx"
    example = spec.make_inputs(card, config, 16, 0)
    convert.export_onnx(
        wrapped,
        example,
        path,
        input_names=spec.input_names,
        output_names=spec.output_names,
        dynamic_axes=spec.dynamic_axes,
    )
    from msa_export.pack.encoder import tokenizer_json

    prep = card.prep
    tok = TextEncoder("tokenizer.json", prep, json_text=tokenizer_json(card, True))  # type: ignore[arg-type]
    return path, tok


def _mean_cosine_loss(int8: Path, fp32: Path, feeds: list[dict[str, np.ndarray]]) -> float:
    a, b = make_session(fp32, "cpu"), make_session(int8, "cpu")
    return float(np.mean([1.0 - cosines(b.run(None, f)[0], a.run(None, f)[0]).mean() for f in feeds]))


def test_smoothing_shrinks_int8_error_of_real_minilm_on_unseen_mosi(
    minilm_block3: tuple[Path, TextEncoder], tmp_path: Path
) -> None:
    """Calibrated on 16 MOSI dev utterances, measured on 32 test utterances: every MatMul int8,
    the features of the smoothed file are at least twice as close to fp32 (1 - mean cosine)."""
    fp32, tok = minilm_block3
    rows = list(csv.DictReader(shared_path("mosi", "label.csv").open(encoding="utf-8")))

    def feeds(mode: str, n: int) -> list[dict[str, np.ndarray]]:
        texts = [r["text"] for r in rows if r["mode"] == mode and r["text"].strip()]
        return [dict(zip(("input_ids", "attention_mask"), tok(t))) for t in texts[:: len(texts) // n][:n]]

    calib, unseen = feeds("dev", 16), feeds("test", 32)
    nodes = weight_matmuls(onnx.load(str(fp32)))
    assert len(nodes) == 24
    smoothed = tmp_path / "s.onnx"
    report = smooth.smooth_matmuls(fp32, smoothed, calib, nodes)
    assert len(report.smoothed) >= 8  # the LayerNorm outputs entering Q/K/V and the FFN at least
    plain_q = convert.quantize_int8(fp32, tmp_path / "p.int8.onnx")
    smooth_q = convert.quantize_int8(smoothed, tmp_path / "s.int8.onnx")
    plain, fixed = _mean_cosine_loss(plain_q, fp32, unseen), _mean_cosine_loss(smooth_q, fp32, unseen)
    assert fixed < plain / 2, f"1 - mean cosine: plain int8 {plain:.5f}, smoothed {fixed:.5f}"
    with torch.no_grad():
        same = _mean_cosine_loss(smoothed, fp32, unseen[:8])
    assert same < 1e-6  # the smoothed fp32 file is the same function


def test_the_search_aims_at_half_the_gates_score_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default headroom: on MOSI, unseen utterances moved up to twice the gate's own maximum."""
    from msa_export.gate.checks import MAX_SCORE_DIFF
    from msa_export.pack.encoder import search_score_target

    monkeypatch.delenv("MSA_EDGE_INT8_SEARCH_SCORE", raising=False)
    assert search_score_target() == MAX_SCORE_DIFF / 2 == 0.01
