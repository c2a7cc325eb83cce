"""Accuracy-aware int8 (msa_export.convert.int8_search): real ONNX files, dynamic quantization, gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from msa_export.convert import onnx_file as convert
from msa_export.convert.int8_search import accuracy_aware_int8, sensitivity, weight_matmuls
from msa_export.errors import ValidationError
from msa_export.gate import checks as gate_checks
from msa_export.gate.checks import Gate
from msa_export.gate.inputs import Case, make_gate


class _Outlier(nn.Module):
    """Three Linear layers; the input of the middle one has one huge channel (as MiniLM's FFN
    activations do), which per-tensor uint8 activations cannot resolve."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Linear(32, 64), nn.Linear(64, 64), nn.Linear(64, 32)
        scale = torch.ones(64)
        scale[5] = 400.0
        self.register_buffer("scale", scale)
        with torch.no_grad():
            self.b.weight[:, 5] /= 400.0  # the outlier channel carries little of the output

    scale: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.b(torch.relu(self.a(x)) * self.scale)))


@pytest.fixture(scope="module")
def outlier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    folder = tmp_path_factory.mktemp("int8")
    model = _Outlier().eval()
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(2, n, 32, generator=g) for n in (3, 9, 17)]
    fp32 = convert.export_onnx(
        model,
        (xs[0],),
        folder / "m.fp32.onnx",
        input_names=["x"],
        output_names=["hidden"],
        dynamic_axes={"x": {0: "b", 1: "t"}},
    )
    with torch.no_grad():
        cases = [Case(inputs=(x,), reference=model(x).numpy(), length=x.shape[1]) for x in xs]
    return fp32, cases


def _gate(cases: list[Case]):  # type: ignore[no-untyped-def]
    run = make_gate("audio", "int8", ["x"], "hidden", cases, None)
    return lambda p: run(p)[0]


def _kept_fp32(path: Path) -> set[str]:
    return {n.name for n in onnx.load(str(path)).graph.node if n.op_type == "MatMul"}


def test_all_int8_fails_and_the_search_keeps_only_the_outlier_matmul(
    outlier: tuple[Path, list[Case]], tmp_path: Path
) -> None:
    fp32, cases = outlier
    nodes = weight_matmuls(onnx.load(str(fp32)))
    assert len(nodes) == 3
    dst = tmp_path / "m.int8.onnx"
    convert.quantize_int8(fp32, dst)
    assert not _gate(cases)(dst).passed, "the fixture must fail the gate in plain int8"
    outcome = accuracy_aware_int8(  # smoothing off: the search itself (tests/test_int8_smooth.py)
        fp32, dst, evaluate=_gate(cases), inputs=[{"x": c.inputs[0].numpy()} for c in cases], smooth=0.0
    )
    assert outcome.kept == ["/b/MatMul"] and outcome.quantized == 2
    assert _kept_fp32(dst) == {"/b/MatMul"}  # the file on disk is the chosen one
    assert outcome.gate is not None and outcome.gate.passed
    assert outcome.trials[0].kept == 0 and not outcome.trials[0].passed
    entry = outcome.to_manifest()
    assert entry["kept_fp32"][0]["node"] == "/b/MatMul"
    assert entry["kept_fp32"][0]["reason"].startswith("sensitivity")
    assert entry["gate"]["passed"] and entry["int8_matmuls"] == 2
    assert "1 kept fp32 by sensitivity: b" in outcome.summary()


def test_sensitivity_ranks_the_outlier_matmul_first(outlier: tuple[Path, list[Case]]) -> None:
    fp32, cases = outlier
    nodes = weight_matmuls(onnx.load(str(fp32)))
    sens = sensitivity(fp32, [{"x": c.inputs[0].numpy()} for c in cases], nodes)
    assert set(sens) == set(nodes)
    assert max(sens, key=lambda n: sens[n]) == "/b/MatMul"
    assert sens["/b/MatMul"] > 10 * max(sens["/a/MatMul"], sens["/c/MatMul"])


def test_override_is_kept_and_search_adds_nothing_when_it_suffices(
    outlier: tuple[Path, list[Case]], tmp_path: Path
) -> None:
    fp32, cases = outlier
    dst = tmp_path / "m.int8.onnx"
    outcome = accuracy_aware_int8(fp32, dst, evaluate=_gate(cases), inputs=[], keep_fp32=[r"/b/"])
    assert outcome.override == ["/b/MatMul"] and outcome.kept == [] and len(outcome.trials) == 1
    assert outcome.to_manifest()["kept_fp32"] == [
        {"node": "/b/MatMul", "reason": "int8_keep_fp32 (preset card)"}
    ]


def test_failure_says_what_was_tried(
    outlier: tuple[Path, list[Case]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fp32, cases = outlier
    monkeypatch.setattr(gate_checks, "MIN_COSINE", 1.5)  # nothing can pass
    dst = tmp_path / "m.int8.onnx"
    with pytest.raises(ValidationError) as info:
        accuracy_aware_int8(
            fp32, dst, evaluate=_gate(cases), inputs=[{"x": c.inputs[0].numpy()} for c in cases]
        )
    msg = str(info.value)
    assert "even with all 3 MatMuls kept in fp32" in msg and "tried 0 kept:" in msg
    assert "no pack was written" in msg and "\n" not in msg


def test_gate_scores_through_the_head(outlier: tuple[Path, list[Case]], tmp_path: Path) -> None:
    """With a scorer, every case gets a score check that fails above MAX_SCORE_DIFF."""
    fp32, cases = outlier
    dst = convert.quantize_int8(fp32, tmp_path / "m.int8.onnx")

    class Scorer:
        def __call__(self, modality: str, feats: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
            return feats.reshape(feats.shape[0], -1).mean(-1) * 50.0

    gate, outs = make_gate("audio", "int8", ["x"], "hidden", cases, Scorer())(dst)  # type: ignore[arg-type]
    scores = [c for c in gate.checks if c.output == "score"]
    assert len(scores) == len(cases) == len(outs)
    assert all(c.score_diff is not None for c in scores)
    assert any(not c.passed() for c in scores) == (
        max(c.score_diff or 0 for c in scores) > gate_checks.MAX_SCORE_DIFF
    )


def test_a_stricter_search_target_keeps_more_in_fp32(
    outlier: tuple[Path, list[Case]], tmp_path: Path
) -> None:
    """Gate.score_limit: the search aims below the gate's score bound (headroom for unseen inputs);
    a file the plain gate accepts is refused by the stricter target, and the search then keeps
    more MatMuls in fp32 until the target holds."""
    fp32, cases = outlier

    class Scorer:
        def __call__(self, modality: str, feats: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
            return feats.reshape(feats.shape[0], -1).mean(-1) * 20.0

    run = make_gate("audio", "int8", ["x"], "hidden", cases, Scorer())  # type: ignore[arg-type]
    plain = accuracy_aware_int8(
        fp32,
        tmp_path / "a.int8.onnx",
        evaluate=lambda p: run(p)[0],
        inputs=[{"x": c.inputs[0].numpy()} for c in cases],
        smooth=0.0,
    )
    worst = max(c.score_diff or 0.0 for c in plain.gate.checks) if plain.gate else 0.0
    assert plain.gate is not None and plain.gate.passed and worst > 0
    strict = Gate(plain.gate.checks, score_limit=worst / 2)
    assert not strict.passed and "max " in strict.describe()
    tight = accuracy_aware_int8(
        fp32,
        tmp_path / "b.int8.onnx",
        evaluate=lambda p: Gate(run(p)[0].checks, score_limit=worst / 2),
        inputs=[{"x": c.inputs[0].numpy()} for c in cases],
        smooth=0.0,
    )
    assert tight.gate is not None and tight.gate.passed
    assert max(c.score_diff or 0.0 for c in tight.gate.checks) <= worst / 2
    assert len(tight.kept) > len(plain.kept)
