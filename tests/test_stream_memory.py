"""Flat memory while streaming: 10 minutes of generated input through ``Analyzer.stream``.

Slow (about a minute): ``pytest -m slow tests/test_stream_memory.py``. The full 5- and
60-minute figures come from ``benchmarks/bench_stream_memory.py``.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from types import ModuleType

import pytest

from msa_runtime import Analyzer

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_stream_memory.py"
GROWTH_LIMIT_MB = 20.0


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_stream_memory", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_rss_stays_flat_over_ten_minutes(tiny_pack: Path, tmp_path: Path) -> None:
    pytest.importorskip("psutil")
    bench = _bench()
    clip = bench.make_long_clip(tmp_path / "ten.mp4", 600.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an = Analyzer(tiny_pack)
    result = bench.measure_stream(an, clip, mark_every=60.0)
    marks = {round(m["input_min"]): m["rss_mb"] for m in result["rss_marks"]}
    assert sorted(marks) == list(range(1, 11)), result
    assert result["windows"] == 298  # (600 - 6) / 2 + 1 full windows, no partial tail
    growth = max(marks[m] for m in range(2, 11)) - marks[2]
    assert growth < GROWTH_LIMIT_MB, f"RSS grew {growth:.1f} MB from minute 2 to 10: {marks}"
