"""Encoders on three threads (``Analyzer(concurrent=True)``, ``msa-run --concurrent``,
``MSA_EDGE_CONCURRENT``): the same scores as one after another, on clips and stream windows,
and its arguments checked."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from media_factory import make_clip

from msa_runtime import Analyzer
from msa_runtime.cli.run import main as run_main
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
    assert not sequential.concurrent and concurrent.concurrent
    a, b = sequential.predict_arrays(**feeds), concurrent.predict_arrays(**feeds)  # type: ignore[arg-type]
    assert b.score == pytest.approx(a.score, abs=1e-6)
    assert set(b.timings_ms) >= {"text", "audio", "vision", "head"}
    monkeypatch.setenv("MSA_EDGE_CONCURRENT", "yes")
    assert _analyzer(tiny_pack).concurrent
    assert not _analyzer(tiny_pack, concurrent=False).concurrent  # the argument wins
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


def test_stream_windows_concurrent_like_sequential(tiny_pack: Path, tmp_path: Path) -> None:
    """Stream windows encode their new frames beside the audio and text encoders."""
    clip = make_clip(tmp_path / "talk.mp4", duration=5.0, fps=10, size=(96, 72))
    runs = []
    for concurrent in (False, True):
        an = _analyzer(tiny_pack, concurrent=concurrent)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            runs.append(list(an.stream(clip, text="a calm talk", window=2.0, hop=1.0)))
        an.close()
    sequential, concurrent_run = runs
    assert len(sequential) == len(concurrent_run) >= 3
    for a, b in zip(sequential, concurrent_run):
        assert (a.start, a.end, a.modalities) == (b.start, b.end, b.modalities)
        assert b.score == pytest.approx(a.score, abs=1e-6)
        assert {"vision", "audio", "text"} <= set(b.timings_ms)


def test_run_beside_runs_jobs_inline_or_on_the_encoders_threads(tiny_pack: Path) -> None:
    """``Analyzer.run_beside``: here and now (None) when sequential, a Future on the Analyzer's
    threads when concurrent; a job's error comes out where it is documented to; closed: refused."""
    import threading

    def where(into: list[str], fail: bool = False) -> str:
        into.append(threading.current_thread().name)
        if fail:
            raise ValueError("job failed")
        return "done"

    sequential, concurrent = _analyzer(tiny_pack, concurrent=False), _analyzer(tiny_pack, concurrent=True)
    ran: list[str] = []
    assert sequential.run_beside(where, ran) is None and ran == [threading.current_thread().name]
    with pytest.raises(ValueError, match="job failed"):
        sequential.run_beside(where, ran, fail=True)
    future = concurrent.run_beside(where, ran)
    assert future is not None and future.result(timeout=30) == "done"
    assert ran[-1] != threading.current_thread().name
    failing = concurrent.run_beside(where, ran, fail=True)
    assert failing is not None
    with pytest.raises(ValueError, match="job failed"):
        failing.result(timeout=30)
    for an in (sequential, concurrent):
        an.close()
        with pytest.raises(InputError, match="this Analyzer was closed"):
            an.run_beside(where, ran)
