"""The export's parity gate, forced to fail on every branch by really broken files.

Each test breaks one exported file the way a faulty exporter or quantizer could (a weight-like
offset that lowers the cosine, a scale that keeps the cosine at 1 but moves the head's score, a
tiny fp32 drift) and checks that :func:`msa_export.pack.build.build_pack` refuses the pack with one
error naming the file, the output and the worst value, and leaves nothing behind.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from msa_export.errors import ValidationError  # noqa: E402
from msa_export.gate import checks as gate  # noqa: E402
from msa_export.pack import build  # noqa: E402
from msa_export.pack import encoder as encoder_export  # noqa: E402
from msa_export.presets.registry import get_preset  # noqa: E402


def _wrap_output(path: Path, op: str, value: np.ndarray | float, output: str = "hidden") -> None:
    """Rewrite ``path`` so that its ``output`` becomes ``op(output, value)``."""
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    raw = f"{output}__raw"
    for node in graph.node:
        node.output[:] = [raw if o == output else o for o in node.output]
        node.input[:] = [raw if i == output else i for i in node.input]
    const = numpy_helper.from_array(np.asarray(value, np.float32), f"{output}__const")
    graph.initializer.append(const)
    graph.node.append(helper.make_node(op, [raw, const.name], [output], name=f"{output}__{op}"))
    onnx.save(model, str(path))


def _broken(real: Callable[..., Path], match: str, op: str, value: Any) -> Callable[..., Path]:
    """``real`` (an exporter/converter step), then ``op`` applied to files named ``match``."""

    def step(*args: Any, **kwargs: Any) -> Path:
        out = real(*args, **kwargs)
        if Path(out).name == match:
            _wrap_output(Path(out), op, value)
        return out

    return step


def _offset(dim: int) -> np.ndarray:
    return np.random.default_rng(0).normal(0.0, 0.5, dim).astype(np.float32)


def _assert_refused(out: Path, exc: pytest.ExceptionInfo[ValidationError], file: str, what: str) -> float:
    """The error names the file, the output and the measured value; nothing was written."""
    msg = str(exc.value)
    # int8 files go through the accuracy-aware search, whose error lists every attempt
    head = f"{file}: output " if ".int8." not in file else f"{file} fails parity with PyTorch even "
    assert "\n" not in msg and msg.startswith(head), msg
    assert "no pack was written" in msg
    found = re.search(rf"{what} (-?[0-9.]+(?:e-?\d+)?)", msg)
    assert found, msg
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    return float(found.group(1))


def test_int8_file_with_low_cosine_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mean cosine about 0.9: well under 0.999, well above what a loosened gate would accept."""
    monkeypatch.setattr(
        encoder_export,
        "quantize_int8",
        _broken(encoder_export.quantize_int8, "text.int8.onnx", "Add", _offset(32)),
    )
    out = tmp_path / "pack"
    with pytest.raises(ValidationError) as exc:
        build.build_pack(get_preset("tiny"), out, precisions=["int8"])
    value = _assert_refused(out, exc, "text.int8.onnx", "mean cosine")
    assert 0.6 < value < 0.99
    assert "hidden at input" in str(exc.value) and "worst vector" in str(exc.value)


def test_fp16_file_with_low_cosine_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        encoder_export,
        "convert_fp16",
        _broken(encoder_export.convert_fp16, "audio.fp16.onnx", "Add", _offset(32)),
    )
    out = tmp_path / "pack"
    with pytest.raises(ValidationError) as exc:
        build.build_pack(get_preset("tiny"), out, precisions=["fp16"])
    value = _assert_refused(out, exc, "audio.fp16.onnx", "mean cosine")
    assert 0.6 < value < 0.99


def test_fp32_drift_over_the_tolerance_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0.1 % scale: the cosine stays 1, the absolute difference exceeds 1e-4."""
    monkeypatch.setattr(
        encoder_export, "export_onnx", _broken(encoder_export.export_onnx, "vision.fp32.onnx", "Mul", 1.001)
    )
    out = tmp_path / "pack"
    with pytest.raises(ValidationError) as exc:
        build.build_pack(get_preset("tiny"), out, precisions=["fp32"])
    value = _assert_refused(out, exc, "vision.fp32.onnx", r"max \|diff\|")
    assert 1e-4 < value < 1e-1


def test_score_difference_is_checked_even_when_the_cosine_is_perfect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained_pack: Path
) -> None:
    """Text features scaled by 3 keep every cosine at 1.0, but the trained head's score moves:
    the score check (|diff| <= 0.02) must refuse the pack."""
    monkeypatch.setattr(
        encoder_export, "quantize_int8", _broken(encoder_export.quantize_int8, "text.int8.onnx", "Mul", 3.0)
    )
    head = trained_pack.parent / "head.pt"
    out = tmp_path / "pack"
    with pytest.raises(ValidationError) as exc:
        build.build_pack(get_preset("tiny"), out, head=head, precisions=["int8"])
    msg = str(exc.value)
    # the accuracy-aware int8 search keeps MatMuls in fp32, which cannot undo the breakage
    assert msg.startswith("text.int8.onnx fails parity with PyTorch even with all"), msg
    value = float(re.search(r"score at input \d+: diff ([0-9.]+)", msg).group(1))  # type: ignore[union-attr]
    assert value > 0.05 and "no pack was written" in msg
    assert not out.exists()


def test_an_unbroken_build_passes_the_same_gate(tmp_path: Path, trained_pack: Path) -> None:
    """The counterpart: the same build without the breakage is accepted, within the limits."""
    report = build.build_pack(
        get_preset("tiny"),
        tmp_path / "pack",
        head=trained_pack.parent / "head.pt",
        precisions=["int8", "fp32"],
    )
    checks = report.checks
    assert checks and all(c.passed() for c in checks)
    assert max(c.max_abs for c in checks if c.precision == "fp32" and c.output == "hidden") < 1e-4
    assert min(c.cosine for c in checks if c.precision == "int8") >= 0.999
    diffs = [c.score_diff for c in checks if c.score_diff is not None and c.precision == "int8"]
    assert diffs and max(diffs) <= 0.02


def test_the_worst_failure_is_the_one_reported() -> None:
    checks = [
        gate.Check(
            file="a.int8.onnx",
            precision="int8",
            output="hidden",
            length=4,
            max_abs=0.1,
            cosine=0.998,
            min_cosine=0.99,
        ),
        gate.Check(
            file="b.int8.onnx",
            precision="int8",
            output="hidden",
            length=9,
            max_abs=0.1,
            cosine=0.95,
            min_cosine=0.90,
        ),
        gate.Check(file="c.fp32.onnx", precision="fp32", output="hidden", length=9, max_abs=1e-6, cosine=1.0),
    ]
    with pytest.raises(
        ValidationError,
        match=r"^b\.int8\.onnx: output hidden at input "
        r"length 9 .*mean cosine 0\.95000",
    ):
        gate.worst_failure(checks)
    gate.worst_failure(checks[2:])  # passing checks raise nothing
