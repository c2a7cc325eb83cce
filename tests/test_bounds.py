"""Bounded work and memory whatever the input's shape: text without spaces, special files where a
pack or a transcript should hold regular ones, oversized files, media whose stream parameters
demand huge frames or minutes of audio from a few bytes, and the longest window allowed.

Times and memory below were measured on an Intel Xeon (Sapphire Rapids), 2 cores."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msa_runtime import media
from msa_runtime.asr.transcript import read_transcript
from msa_runtime.errors import InputError, MediaError, PackError, TextError
from msa_runtime.limits import (
    MAX_LONG_WINDOW,
    MAX_MEDIA_SECONDS,
    MAX_SCAN_CHARS_PER_TOKEN,
    MAX_TRANSCRIPT_BYTES,
    check_long_window,
    read_bounded,
)
from msa_runtime.loading.tuning import load_tuning
from msa_runtime.media.probe import check_bounds
from msa_runtime.pack import TextPrep, load_manifest
from msa_runtime.preprocess import TextEncoder

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A FIFO opened for reading blocks until a writer comes: fail instead of hanging."""
    old = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("blocked (a FIFO was opened for reading?)"))
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def encoder(tiny_pack: Path) -> TextEncoder:
    prep = load_manifest(tiny_pack).encoders["text"].prep
    assert isinstance(prep, TextPrep)
    return TextEncoder(tiny_pack / prep.tokenizer, prep)


def _timed(enc: TextEncoder, text: str) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids, _ = enc(text)
    return ids, time.perf_counter() - t0


# Before: the word-aligned prefix never found a space, so the prefix doubled until the whole
# text was tokenized (5 MB of "a": 5.1 s and 0.42 GB peak; 20 MB: 24 s and 1.4 GB; 5 MB of
# spaces: 3.6 s). After: at most max_tokens * 64 characters are tokenized (2 ms for each).
@pytest.mark.parametrize(
    "text",
    [
        "a" * 5_000_000,  # one long token
        " " * 5_000_000 + "a",  # mostly spaces
        ("x" * 5000 + " ") * 1000,  # words too long to split
        "\u4e2d" * 5_000_000,  # CJK: no spaces, a token per character
        ("QUJDREVGR0g=" * 500_000),  # base64
    ],
    ids=["one-token", "spaces", "long-words", "cjk", "base64"],
)
def test_text_of_any_shape_is_tokenized_in_bounded_time(encoder: TextEncoder, text: str) -> None:
    ids, seconds = _timed(encoder, text)
    assert ids.shape[1] <= encoder.prep.max_tokens
    assert seconds < 2.0, f"{seconds:.2f} s for {len(text)} characters"


def test_text_past_the_budget_is_cut_with_a_warning(encoder: TextEncoder) -> None:
    budget = encoder.prep.max_tokens * MAX_SCAN_CHARS_PER_TOKEN
    with pytest.warns(UserWarning, match=f"first {budget} give only"):
        encoder(" " * 1_000_000 + "great")


def test_normal_long_text_keeps_the_tokens_of_the_whole(encoder: TextEncoder) -> None:
    words = " ".join(f"word{i % 97} great" for i in range(3000))
    whole = encoder.tokenizer.encode(words).ids
    limit = encoder.prep.max_tokens
    with pytest.warns(UserWarning, match="cut to the pack's limit"):
        ids, _ = encoder(words)
    assert ids[0].tolist() == whole[: limit - 1] + whole[-1:]


@settings(max_examples=25, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    unit=st.text(min_size=1, max_size=40),
    repeat=st.integers(min_value=1, max_value=200_000),
)
def test_fuzz_text_shapes_stay_within_limits(encoder: TextEncoder, unit: str, repeat: int) -> None:
    text = (unit * repeat)[:2_000_000]
    ids, seconds = _timed(encoder, text)
    assert ids.shape[1] <= encoder.prep.max_tokens
    assert seconds < 2.0, f"{seconds:.2f} s for {len(text)} characters of {unit!r}"


@pytest.fixture
def pack_copy(tiny_pack: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "pack"
    shutil.copytree(tiny_pack, copy)
    return copy


def test_fifo_as_tokenizer_is_refused_naming_the_pack(pack_copy: Path) -> None:
    tokenizer = pack_copy / "tokenizer.json"
    tokenizer.unlink()
    os.mkfifo(tokenizer)
    with pytest.raises(PackError, match=r"pack .*pack: tokenizer\.json is a FIFO .*rebuild"):
        load_manifest(pack_copy)
    prep = TextPrep(tokenizer="tokenizer.json", max_tokens=16)
    with pytest.raises(PackError, match=r"pack .*pack: tokenizer\.json is a FIFO"):
        TextEncoder(tokenizer, prep)


def test_fifo_as_manifest_is_refused(pack_copy: Path) -> None:
    (pack_copy / "manifest.json").unlink()
    os.mkfifo(pack_copy / "manifest.json")
    with pytest.raises(PackError, match=r"manifest\.json is a FIFO"):
        load_manifest(pack_copy)


def test_pack_file_of_another_size_is_refused_before_hashing(pack_copy: Path) -> None:
    os.truncate(pack_copy / "head.onnx", 1 << 40)  # sparse: 1 TB by stat, nothing on disk
    t0 = time.perf_counter()
    with pytest.raises(PackError, match=r"head\.onnx is 1,099,511,627,776 bytes, over the limit of 16 GB"):
        load_manifest(pack_copy)
    assert time.perf_counter() - t0 < 5.0


def test_transcripts_are_bounded_and_regular(tmp_path: Path) -> None:
    big = tmp_path / "big.srt"
    big.touch()
    os.truncate(big, MAX_TRANSCRIPT_BYTES + 1)  # sparse
    with pytest.raises(
        TextError, match=r"transcript .*big\.srt is 16,777,217 bytes, over the limit of 16 MB"
    ):
        read_transcript(big)
    fifo = tmp_path / "live.vtt"
    os.mkfifo(fifo)
    with pytest.raises(TextError, match=r"live\.vtt is a FIFO \(named pipe\), not a regular file"):
        read_transcript(fifo)
    (tmp_path / "dir.txt").mkdir()
    with pytest.raises(TextError, match="is a folder"):
        read_transcript(tmp_path / "dir.txt")


def test_read_bounded_refuses_devices() -> None:
    with pytest.raises(InputError, match="/dev/zero is a character device"):
        read_bounded("/dev/zero", 10, label="/dev/zero", error=InputError, fix="give a file")


def test_fifo_tuning_record_is_ignored_with_a_note(tiny_pack: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "tuning.json"
    os.mkfifo(fifo)
    record, note = load_tuning(tiny_pack, fifo)
    assert record is None and note is not None and "FIFO" in note


_DECODE = """
import json, sys
from msa_runtime import media
try:
    d = media.decode(sys.argv[1], fps=3.0, sample_rate=16000)
    error = None
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]  # reset by exec
print(json.dumps({"error": error, "peak_mb": int(peak[0].split()[1]) >> 10 if peak else 0}))
"""

_HUGE_FRAMES = """
import av, sys
with av.open(sys.argv[1], "w") as c:
    s = c.add_stream(sys.argv[2], rate=1)
    s.width = s.height = 8192
    s.pix_fmt = "yuvj420p" if sys.argv[2] == "mjpeg" else "yuv420p"
    frame = av.VideoFrame(8192, 8192, s.pix_fmt)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    for i in range(3):
        frame.pts = i
        for p in s.encode(frame):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
"""


def _python(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


# Before: three 8192x8192 H.264 frames (a 0.2 MB file) decoded to a (12, 8192, 8192, 3) array in
# 15 s at 4.9 GB peak RSS (MJPEG: 4.7 GB). After: refused from the stream's size, 0.1 GB peak.
def test_huge_frames_are_refused_before_decoding(tmp_path: Path) -> None:
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mjpeg"
    clip = tmp_path / ("huge.mp4" if codec == "libx264" else "huge.mkv")
    _python(_HUGE_FRAMES, str(clip), codec)
    assert clip.stat().st_size < 5 << 20
    result = json.loads(_python(_DECODE, str(clip)))
    assert result["error"] and "8192x8192" in result["error"] and "megapixels" in result["error"]
    assert result["error"].startswith("MediaError")
    assert result["peak_mb"] < 500, result


def _wav(path: Path, rate: int, samples: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(samples, np.int16).tobytes())
    return path


# Before: a 1.2 KB WAV at 1 Hz decoded to 9.6 M samples (600 s at 16 kHz). After: refused.
def test_audio_at_1_hz_is_refused(tmp_path: Path) -> None:
    clip = _wav(tmp_path / "slow.wav", 1, 600)
    with pytest.raises(MediaError, match=r"1 Hz, outside 1000-768000 Hz"):
        media.decode(clip, fps=None, sample_rate=16000)
    with pytest.raises(MediaError, match=r"1 Hz"):
        list(media.iter_media(clip, fps=None, sample_rate=16000))


def test_media_declaring_more_than_a_day_is_refused() -> None:
    info = media.MediaInfo("long.mkv", 2 * MAX_MEDIA_SECONDS, True, True, 16000, 1, 25.0, 640, 480)
    with pytest.raises(MediaError, match=r"long\.mkv declares 172800 s, over the limit of 86400 s"):
        check_bounds(info, audio=True, video=False)
    check_bounds(
        media.MediaInfo("ok.mkv", 60.0, True, True, 16000, 1, 25.0, 8192, 8192), audio=True, video=False
    )


def test_longest_window_is_one_a_real_pack_can_hold() -> None:
    assert MAX_LONG_WINDOW == 60.0
    assert check_long_window(MAX_LONG_WINDOW) == 60.0
    with pytest.raises(InputError, match="between 2 and 60"):
        check_long_window(600.0)
