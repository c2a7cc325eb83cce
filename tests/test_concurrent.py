"""Encoders on three threads (``Analyzer(concurrent=True)``, ``msa-run --concurrent``,
``MSA_EDGE_CONCURRENT``): the same scores as one after another, and its arguments checked."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from msa_runtime import Analyzer
from msa_runtime.cli import main as run_main
from msa_runtime.errors import InputError


def _analyzer(pack: Path, **kwargs: object) -> Analyzer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the untrained head
        return Analyzer(pack, providers="cpu", threads=1, **kwargs)  # type: ignore[arg-type]


def test_concurrent_scores_like_sequential(tiny_pack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    feeds = {
        "frames": rng.integers(0, 255, (6, 48, 64, 3), dtype=np.uint8),
        "audio": rng.standard_normal(32000).astype(np.float32) * 0.1,
        "sample_rate": 16000,
        "text": "a fine and moving film",
    }
    sequential = _analyzer(tiny_pack, concurrent=False)
    concurrent = _analyzer(tiny_pack, concurrent=True)
    assert sequential._pool is None and concurrent._pool is not None
    a, b = sequential.predict_arrays(**feeds), concurrent.predict_arrays(**feeds)  # type: ignore[arg-type]
    assert b.score == pytest.approx(a.score, abs=1e-6)
    assert set(b.timings_ms) >= {"text", "audio", "vision", "head"}
    monkeypatch.setenv("MSA_EDGE_CONCURRENT", "yes")
    assert _analyzer(tiny_pack)._pool is not None
    assert _analyzer(tiny_pack, concurrent=False)._pool is None  # the argument wins
    monkeypatch.setenv("MSA_EDGE_CONCURRENT", "maybe")
    with pytest.raises(InputError, match="MSA_EDGE_CONCURRENT must be 1 or 0"):
        _analyzer(tiny_pack)
    monkeypatch.delenv("MSA_EDGE_CONCURRENT")
    with pytest.raises(InputError, match="concurrent must be True or False"):
        _analyzer(tiny_pack, concurrent="yes")


def test_msa_run_concurrent_flag(tiny_pack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--pack", str(tiny_pack), "--text", "what a wonderful day", "--format", "json", "--threads", "1"]
    runner = CliRunner()
    scores = []
    for flag in ("--sequential", "--concurrent"):
        res = runner.invoke(run_main, [*args, flag])
        assert res.exit_code == 0, res.output
        scores.append(json.loads(res.stdout)[0]["score"])
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)
    monkeypatch.setenv("MSA_EDGE_CONCURRENT", "2")
    res = runner.invoke(run_main, args)
    assert res.exit_code == 2 and "MSA_EDGE_CONCURRENT must be 1 or 0" in res.output
    assert "Traceback" not in res.output
