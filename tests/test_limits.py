"""Memory and time bounded by design: long inputs in windows, threads capped, size-bearing numbers
range-checked before allocation, long text never tokenized whole (``msa_runtime.limits``,
``msa_runtime.scoring.long``)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from media_factory import make_clip

from msa_runtime import Analyzer, media
from msa_runtime.errors import InputError
from msa_runtime.limits import MAX_CHARS_PER_TOKEN, bound_threads, check_long_window, cpu_count


def _analyzer(pack: Path, **kwargs: Any) -> Analyzer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Analyzer(pack, **kwargs)


def test_threads_capped_at_cpu_count_with_a_warning(tiny_pack: Path) -> None:
    from msa_runtime.engine.sessions import make_session

    with pytest.warns(UserWarning, match=f"using {cpu_count()}"):
        s = make_session(tiny_pack / "head.onnx", "cpu", threads=5000)
    assert s.get_session_options().intra_op_num_threads == cpu_count()
    for bad in (0, -3, 2.5, "2", True):
        with pytest.raises(InputError, match="threads"):
            bound_threads(bad)


def test_sample_rate_checked_before_resampling(an: Analyzer) -> None:
    audio = np.zeros(16000, np.float32)
    for bad in (1, 0, -16000, 1e9, float("nan"), "16000", 16000.5, True):
        with pytest.raises(InputError, match="sample_rate"):
            an.predict_arrays(audio=audio, sample_rate=bad)  # type: ignore[arg-type]
    assert math.isfinite(an.predict_arrays(audio=audio, sample_rate=16000.0).score)  # type: ignore[arg-type]


def test_long_window_range(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_long_window(None) == 30.0
    for bad in (0, 1.0, 1e9, float("nan"), float("inf"), "60"):
        with pytest.raises(InputError, match="long_window"):
            check_long_window(bad)
    monkeypatch.setenv("MSA_EDGE_LONG_WINDOW", "30")
    assert check_long_window(None) == 30.0
    monkeypatch.setenv("MSA_EDGE_LONG_WINDOW", "lots")
    with pytest.raises(InputError, match="MSA_EDGE_LONG_WINDOW"):
        check_long_window(None)


def test_long_text_is_cut_before_tokenizing(an: Analyzer) -> None:
    enc = an.text_encoder
    assert enc is not None
    limit = enc.prep.max_tokens
    seen: list[int] = []
    real = enc.tokenizer

    class Counting:
        def encode(self, text: str) -> Any:
            seen.append(len(text))
            return real.encode(text)

    words = " ".join(f"word{i % 97} great" for i in range(3000))
    whole = real.encode(words).ids
    enc.tokenizer = Counting()  # type: ignore[assignment]
    try:
        with pytest.warns(UserWarning, match="cut to the pack's limit"):
            ids, _ = enc(words)
        assert ids[0].tolist() == whole[: limit - 1] + whole[-1:]  # the same tokens as the whole text
        seen.clear()
        with pytest.warns(UserWarning):
            enc("great " * 2_000_000)  # 12 MB
        assert max(seen) <= 4 * limit * MAX_CHARS_PER_TOKEN, seen
    finally:
        enc.tokenizer = real


def test_long_file_scored_in_windows(tiny_pack: Path, tmp_path: Path) -> None:
    """A 25 s clip with long_window=10: three windows of 25/3 s, each scored as predict would
    score that span with its own transcript text; the result is their duration-weighted mean."""
    clip = make_clip(tmp_path / "long.mp4", duration=25.0, size=(96, 72), fps=10)
    srt = tmp_path / "long.srt"
    cues = ["00:00:00,000 --> 00:00:07,000\ngreat start", "00:00:12,000 --> 00:00:20,000\nawful end"]
    srt.write_text("".join(f"{i}\n{c}\n\n" for i, c in enumerate(cues, 1)))
    an = _analyzer(tiny_pack, long_window=10)
    with pytest.MonkeyPatch.context() as mp:  # never decoded whole: one streaming pass
        mp.setattr(media, "decode", lambda *a, **k: pytest.fail("a long file was decoded whole"))
        p = an.predict(str(clip), transcript=str(srt))
    assert any("3 windows" in n for n in p.notes), p.notes
    whole = _analyzer(tiny_pack, long_window=60)
    length = 25.0 / 3
    parts = [
        whole.predict(str(clip), transcript=str(srt), start=i * length, end=(i + 1) * length).score
        for i in range(3)
    ]
    assert p.score == pytest.approx(float(np.mean(parts)), abs=1e-4)
    assert not any("windows" in n for n in whole.predict(str(clip), transcript=str(srt)).notes)


def test_long_arrays_scored_in_windows(tiny_pack: Path) -> None:
    an = _analyzer(tiny_pack, long_window=10)
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(16000 * 24)).astype(np.float32)  # 24 s
    frames = rng.integers(0, 255, (72, 48, 64, 3), dtype=np.uint8)  # 24 s at 3 fps
    p = an.predict_arrays(audio=audio, sample_rate=16000, frames=frames, text="fine")
    parts = [
        an.predict_arrays(
            audio=audio[i * 16000 * 8 : (i + 1) * 16000 * 8],
            sample_rate=16000,
            frames=frames[i * 24 : (i + 1) * 24],
            text="fine",
        ).score
        for i in range(3)
    ]
    assert p.score == pytest.approx(float(np.mean(parts)), abs=1e-5)
    assert any("3 windows of 8.0 s" in n for n in p.notes)


@pytest.mark.slow
def test_one_hour_file_without_stream_in_bounded_memory(tiny_pack: Path, tmp_path: Path) -> None:
    """An hour of audio+video through ``predict`` (no --stream): peak RSS of a child process
    stays under 1 GB (whole-file attention would need terabytes). About 10 minutes."""
    import importlib.util

    bench = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_long.py"
    spec = importlib.util.spec_from_file_location("bench_long", bench)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.measure(tiny_pack, tmp_path, minutes=60.0, long_window=30.0)
    assert result["ok"], result
    assert result["peak_rss_mb"] < 1000, result


def test_cli_checks_the_numbers_under_their_option_names(tiny_pack: Path) -> None:
    from click.testing import CliRunner

    from msa_runtime.cli.run import main

    base = ["--pack", str(tiny_pack), "--text", "fine"]
    res = CliRunner().invoke(main, [*base, "--long-window", "1"])
    assert res.exit_code == 2 and "--long-window must be seconds between 2 and 60" in res.output
    res = CliRunner().invoke(main, [*base, "--threads", "4999"])
    assert res.exit_code == 0, res.output
    assert f"--threads=4999 is more than this machine's {cpu_count()} CPUs" in res.output


def test_stream_window_bounded(an: Analyzer) -> None:
    with pytest.raises(InputError, match="window must be at most"):
        an.stream("-", window=1e9)
