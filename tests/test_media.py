"""Tests of msa_runtime.media.decoding on media generated with PyAV (see media_factory)."""

from __future__ import annotations

import io
import logging
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import media_factory as mf
import numpy as np
import pytest

from msa_runtime.errors import InputError, MediaError
from msa_runtime.media.decoding import (
    AudioChunk,
    Decoded,
    Frame,
    decode,
    iter_media,
    iter_pcm,
    open_file,
    probe,
)

SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech"
ALL_SUFFIXES = mf.AV_SUFFIXES + mf.AUDIO_ONLY_SUFFIXES
LOSSLESS = (".wav", ".flac", ".mkv")  # PCM / FLAC audio: sample-exact alignment checks


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2 s clip (25 fps 160x120, 440 Hz stereo tone at 44.1 kHz) per container."""
    folder = tmp_path_factory.mktemp("clips")
    return {suffix: mf.make_clip(folder / f"clip{suffix}") for suffix in ALL_SUFFIXES}


@pytest.fixture(scope="session")
def long_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """6 s clips, so that start/end windows exercise seeking."""
    folder = tmp_path_factory.mktemp("long")
    suffixes = (".mkv", ".mp4", ".webm", ".mpg", ".wav", ".ogg")
    return {s: mf.make_clip(folder / f"long{s}", duration=6.0) for s in suffixes}


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    window = samples * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(window, n=8 * len(samples)))
    return float(np.argmax(spectrum) * rate / (8 * len(samples)))


def video_offset(path: Path) -> float:
    """Time of the first video frame relative to the container start, read with PyAV."""
    with av.open(str(path)) as container:
        origin = (container.start_time or 0) / av.time_base
        frame = next(container.decode(video=0))
        return float(frame.time or 0.0) - origin


def expected_index(t: float, offset: float = 0.0, source_fps: float = 25.0) -> int:
    return max(0, math.floor((t - offset) * source_fps + 1e-6))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------- probe


@pytest.mark.parametrize("suffix", ALL_SUFFIXES)
def test_probe(clips: dict[str, Path], suffix: str) -> None:
    info = probe(clips[suffix])
    assert info.path == str(clips[suffix])
    assert info.duration == pytest.approx(2.0, abs=0.06)
    assert info.has_audio
    assert info.channels == 2
    assert info.sample_rate == (48000 if suffix == ".webm" else 44100)
    if suffix in mf.AV_SUFFIXES:
        assert info.has_video
        assert info.fps == pytest.approx(25.0)
        assert (info.width, info.height) == (160, 120)
    else:
        assert not info.has_video
        assert info.fps is None and info.width is None and info.height is None


def test_probe_video_without_audio(tmp_path: Path) -> None:
    info = probe(mf.make_silent_video(tmp_path / "silent.mp4"))
    assert info.has_video and not info.has_audio
    assert info.sample_rate is None and info.channels is None


def _count_opens(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    opens: list[object] = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opens.append(a[0]) or real_open(*a, **k))
    return opens


def test_open_file_then_decode_opens_once(clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path = clips[".mp4"]
    whole = decode(path, fps=3, sample_rate=16000)
    opens = _count_opens(monkeypatch)
    with open_file(path) as opened:
        assert opened.info == probe(path)
        del opens[1:]  # probe's own open
        clip = decode(opened, fps=3, sample_rate=16000)
        assert opens == [str(path)]
        np.testing.assert_array_equal(clip.frames, whole.frames)
        np.testing.assert_array_equal(clip.audio, whole.audio)
        again = decode(opened, fps=3, sample_rate=16000)  # the container was used: opened anew
        assert len(opens) == 2 and np.array_equal(again.audio, whole.audio)
        with pytest.raises(InputError, match="not an opened file"):
            decode(opened, fps=3, sample_rate=16000, format="mp4")


def test_open_file_without_a_duration_is_checked_then_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raw H.264 stream states no duration: its check reads packets, so decode opens it again."""
    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(50):
            rgb = np.full((48, 64, 3), i * 4, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    opens = _count_opens(monkeypatch)
    with open_file(path) as opened:
        assert opened.info.duration is None and opened.info.has_video
        assert decode(opened, fps=5, sample_rate=None).frames.shape == (10, 48, 64, 3)
    assert len(opens) == 2


# ---------------------------------------------------------------- audio


@pytest.mark.parametrize("suffix", ALL_SUFFIXES)
def test_audio_resampled_to_16k_mono(clips: dict[str, Path], suffix: str) -> None:
    decoded = decode(clips[suffix], fps=None, sample_rate=16000)
    assert isinstance(decoded, Decoded)
    assert decoded.sample_rate == 16000
    assert decoded.audio.dtype == np.float32 and decoded.audio.ndim == 1
    # Encoders pad the end (AAC to 1024 samples, MP3 in AVI keeps its encoder delay).
    assert len(decoded.audio) / 16000 == pytest.approx(2.0, abs=0.05)
    assert dominant_hz(decoded.audio, 16000) == pytest.approx(440.0, abs=2.0)
    assert 0.3 < np.abs(decoded.audio).max() < 1.0
    assert decoded.frames.shape[0] == 0  # fps=None skips video


@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("suffix", [".wav", ".mkv"])
def test_downmix_any_channel_count(tmp_path: Path, suffix: str, channels: int) -> None:
    path = mf.make_clip(tmp_path / f"c{channels}{suffix}", channels=channels, tone_hz=1000.0)
    assert probe(path).channels == channels
    audio = decode(path, fps=None, sample_rate=16000).audio
    assert len(audio) == 32000
    assert dominant_hz(audio, 16000) == pytest.approx(1000.0, abs=2.0)
    assert np.abs(audio).max() > 0.3


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 48000])
def test_resample_rates(clips: dict[str, Path], rate: int) -> None:
    audio = decode(clips[".flac"], fps=None, sample_rate=rate).audio
    assert len(audio) == 2 * rate
    assert dominant_hz(audio, rate) == pytest.approx(440.0, abs=2.0)


@pytest.mark.parametrize("suffix", LOSSLESS)
def test_audio_is_time_aligned(clips: dict[str, Path], suffix: str) -> None:
    audio = decode(clips[suffix], fps=None, sample_rate=16000, start=0.25, end=1.75).audio
    assert len(audio) == 24000
    t = 0.25 + np.arange(len(audio)) / 16000
    assert correlation(audio, np.sin(2 * np.pi * 440.0 * t)) > 0.99


def test_audio_chunks(clips: dict[str, Path]) -> None:
    chunks = list(iter_media(clips[".wav"], fps=None, sample_rate=16000, chunk_seconds=0.3))
    assert all(isinstance(c, AudioChunk) for c in chunks)
    sizes = [len(c.samples) for c in chunks]
    assert sizes[:-1] == [4800] * (len(sizes) - 1) and 0 < sizes[-1] <= 4800
    assert sum(sizes) == 32000
    starts = [c.start for c in chunks]
    assert starts == pytest.approx([i * 0.3 for i in range(len(chunks))])


# ---------------------------------------------------------------- video


@pytest.mark.parametrize("suffix", mf.AV_SUFFIXES)
def test_frames_sampled_by_timestamp_at_3fps(clips: dict[str, Path], suffix: str) -> None:
    decoded = decode(clips[suffix], fps=3, sample_rate=None)
    offset = video_offset(clips[suffix])
    n = sum(1 for i in range(10) if i / 3 < offset + 2.0 - 1e-6)  # targets before stream end
    assert decoded.frames.shape == (n, 120, 160, 3) and decoded.frames.dtype == np.uint8
    assert decoded.frame_times == pytest.approx([i / 3 for i in range(n)])
    picked = [mf.read_index(f) for f in decoded.frames]
    assert picked == [expected_index(t, offset) for t in decoded.frame_times]
    if offset == 0.0:
        assert picked == [0, 8, 16, 25, 33, 41]
    assert len(decoded.audio) == 0 and decoded.sample_rate == 0


def test_rgb_channel_order(tmp_path: Path) -> None:
    path = mf.make_clip(tmp_path / "red.mp4", color=(220, 30, 40), duration=0.5)
    frame = decode(path, fps=3, sample_rate=None).frames[0]
    r, g, b = frame[90:, 20:140].reshape(-1, 3).mean(axis=0)
    assert r > 180 and g < 80 and b < 80


def test_frames_are_ffmpegs_own_rgb_conversion(tmp_path: Path) -> None:
    """Frames go through one reused swscale context: pixel for pixel PyAV's own conversion,
    also when the frame size changes mid-stream (the context must follow)."""
    paths = [
        mf.make_clip(tmp_path / f"{w}.mkv", size=(w, h), audio_codec=None) for w, h in ((160, 120), (96, 64))
    ]
    for path in paths + paths[:1]:
        with av.open(str(path)) as container:
            want = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        got = decode(path, fps=25, sample_rate=None).frames
        assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))


def test_frames_repeat_when_source_is_slower(tmp_path: Path) -> None:
    path = mf.make_clip(tmp_path / "slow.mkv", fps=5, audio_codec=None)
    decoded = decode(path, fps=12, sample_rate=None)
    assert len(decoded.frames) == 24
    picked = [mf.read_index(f) for f in decoded.frames]
    assert picked == [expected_index(t, source_fps=5) for t in decoded.frame_times]
    assert picked[:6] == [0, 0, 0, 1, 1, 2]
    # Repeated frames are separate arrays: changing one leaves the others alone.
    decoded.frames[0][:] = 0
    assert decoded.frames[1].any()


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_variable_frame_rate(tmp_path: Path, suffix: str) -> None:
    times = [0.0, 0.1, 0.15, 0.5, 0.55, 1.0, 1.02, 1.3]
    path = mf.make_vfr_clip(tmp_path / f"vfr{suffix}", times)
    decoded = decode(path, fps=10, sample_rate=None, end=1.2)
    assert decoded.frame_times == pytest.approx([i / 10 for i in range(12)])
    picked = [mf.read_index(f) for f in decoded.frames]
    # t=0.2..0.4 repeat frame 2 (0.15); frame 6 (1.02) is only seen at t=1.1
    assert picked == [0, 1, 2, 2, 2, 3, 4, 4, 4, 4, 5, 6]


# ---------------------------------------------------------------- windows, order, live


@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".webm", ".mpg", ".wav", ".ogg"])
@pytest.mark.parametrize("window", [(0.0, 1.0), (0.3, 1.3), (4.1, 5.3), (5.5, None)])
def test_start_end_window(
    long_clips: dict[str, Path], suffix: str, window: tuple[float, float | None]
) -> None:
    """Windows after 0.5 s make iter_media seek; the output must not depend on that."""
    start, end = window
    path = long_clips[suffix]
    decoded = decode(path, fps=3, sample_rate=16000, start=start, end=end)
    stop = end if end is not None else 6.0
    n_samples = round(stop * 16000) - round(start * 16000)
    if end is None:  # lossy encoders pad the end of the stream a little (AAC: 1024 samples)
        assert n_samples - 16 <= len(decoded.audio) <= n_samples + 1100
    else:
        assert len(decoded.audio) == n_samples
    assert dominant_hz(decoded.audio, 16000) == pytest.approx(440.0, abs=2.0)
    if suffix in LOSSLESS or suffix == ".mp4":  # sample-exact timing (MP2, Opus: codec delay)
        audio = decoded.audio[: n_samples - 16]  # without the encoder's end padding
        t = start + np.arange(len(audio)) / 16000
        assert correlation(audio, np.sin(2 * np.pi * 440.0 * t)) > 0.99
    if suffix in mf.AUDIO_ONLY_SUFFIXES:
        assert len(decoded.frames) == 0
        return
    offset = video_offset(path)
    targets = [start + i / 3 for i in range(20) if start + i / 3 < min(stop, offset + 6.0) - 1e-6]
    assert decoded.frame_times == pytest.approx(targets)
    picked = [mf.read_index(f) for f in decoded.frames]
    assert picked == [expected_index(t, offset) for t in targets]


def test_items_interleaved_in_time_order(clips: dict[str, Path]) -> None:
    items = list(iter_media(clips[".mp4"], fps=3, sample_rate=16000, chunk_seconds=0.25))
    assert {type(i) for i in items} == {AudioChunk, Frame}
    latest = 0.0
    for item in items:
        t = item.start if isinstance(item, AudioChunk) else item.time
        assert t >= latest - 0.6
        latest = max(latest, t)
    chunks = [i for i in items if isinstance(i, AudioChunk)]
    assert chunks[0].start == 0.0


def test_consumer_can_stop_early(long_clips: dict[str, Path]) -> None:
    stream = iter_media(long_clips[".mp4"], fps=3, sample_rate=16000)
    first = next(stream)
    assert isinstance(first, (AudioChunk, Frame))
    stream.close()  # closes the container


needs_lavfi = pytest.mark.skipif(
    "lavfi" not in av.formats_available, reason="this FFmpeg build has no lavfi input device"
)


@needs_lavfi
def test_live_source_audio_through_format() -> None:
    graph = "sine=frequency=1000:sample_rate=44100:duration=3"
    chunks = list(iter_media(graph, format="lavfi", fps=None, sample_rate=16000, start=1.0, end=2.0))
    audio = np.concatenate([c.samples for c in chunks])
    assert len(audio) == 16000 and chunks[0].start == 1.0
    assert dominant_hz(audio, 16000) == pytest.approx(1000.0, abs=2.0)


@needs_lavfi
def test_live_source_video_through_format() -> None:
    graph = "testsrc=size=96x64:rate=25:duration=2"
    frames = list(iter_media(graph, format="lavfi", fps=3, sample_rate=None))
    assert len(frames) == 6
    assert all(isinstance(f, Frame) and f.rgb.shape == (64, 96, 3) for f in frames)


def test_video_only_file_gives_empty_audio(tmp_path: Path) -> None:
    decoded = decode(mf.make_silent_video(tmp_path / "silent.webm"), fps=3, sample_rate=16000)
    assert len(decoded.frames) == 6 and decoded.audio.shape == (0,)


# ---------------------------------------------------------------- raw PCM


class Trickle(io.RawIOBase):
    """A pipe-like stream that returns at most 333 bytes per read."""

    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self.buffer.read(min(size, 333) if size >= 0 else 333)


@pytest.mark.parametrize("wrap", [io.BytesIO, Trickle])
def test_iter_pcm(wrap: type) -> None:
    values = np.array([0, 1, -1, 32767, -32768, 16384] * 4000, dtype="<i2")  # 1.5 s at 16 kHz
    chunks = list(iter_pcm(wrap(values.tobytes() + b"\x01"), sample_rate=16000, chunk_seconds=0.5))
    assert [len(c.samples) for c in chunks] == [8000, 8000, 8000]
    assert [c.start for c in chunks] == [0.0, 0.5, 1.0]
    audio = np.concatenate([c.samples for c in chunks])
    assert audio.dtype == np.float32
    assert np.array_equal(audio, values.astype(np.float32) / 32768.0)
    assert audio.min() == -1.0 and audio.max() < 1.0


def test_iter_pcm_short_last_chunk_and_empty() -> None:
    data = np.zeros(1000, dtype="<i2").tobytes()
    assert [len(c.samples) for c in iter_pcm(io.BytesIO(data), sample_rate=800)] == [800, 200]
    assert list(iter_pcm(io.BytesIO(b""))) == []


def test_iter_pcm_rejects_text_stream() -> None:
    with pytest.raises(MediaError, match="binary stream"):
        list(iter_pcm(io.StringIO("abc")))


# ---------------------------------------------------------------- real speech


@pytest.mark.skipif(not SPEECH.is_dir(), reason=f"no reference speech at {SPEECH}")
def test_real_speech_decodes_to_16k() -> None:
    files = sorted(SPEECH.glob("*.ogg"))
    assert files
    for path in files:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            assert stream.duration is not None and stream.time_base is not None
            seconds = float(stream.duration * stream.time_base)
        info = probe(path)
        assert info.sample_rate == 22050 and info.channels == 1
        decoded = decode(path, fps=None, sample_rate=16000)
        assert len(decoded.audio) / 16000 == pytest.approx(seconds, abs=0.01)
        assert 13.0 < seconds < 18.0
        rms = float(np.sqrt(np.mean(decoded.audio**2)))
        assert 0.005 < rms < 0.5 and np.abs(decoded.audio).max() <= 1.0


# ---------------------------------------------------------------- memory


def rss_bytes() -> Iterator[int]:
    try:
        import psutil
    except ImportError:
        import resource

        while True:  # peak RSS only, in KiB on Linux
            yield resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    else:
        process = psutil.Process()
        while True:
            yield process.memory_info().rss


def test_streaming_memory_stays_flat(tmp_path: Path) -> None:
    # Two minutes of 320x240 video at 10 fps and 48 kHz stereo FLAC (fast to encode). Kept in
    # memory, the output would take 120*3 frames * 230 KB = 83 MB plus 7.7 MB of 16 kHz audio.
    path = mf.make_clip(tmp_path / "long.mkv", duration=120.0, fps=10, size=(320, 240), sample_rate=48000)
    rss = rss_bytes()
    baseline = peak = 0
    count = 0
    for count, item in enumerate(iter_media(path, fps=3, sample_rate=16000), start=1):
        assert isinstance(item, (AudioChunk, Frame))
        if count == 40:  # about 10 s in: decoders and buffers are warm
            baseline = next(rss)
        elif count > 40 and count % 10 == 0:
            peak = max(peak, next(rss))
    assert count > 450
    growth = (peak - baseline) / 2**20
    assert growth < 25, f"RSS grew by {growth:.1f} MiB while streaming"


# ---------------------------------------------------------------- errors


def test_missing_file_raises_at_once(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(MediaError, match=r"nope\.mp4: no such file"):
        iter_media(missing, fps=3, sample_rate=16000)  # before the first next()
    with pytest.raises(MediaError, match="no such file"):
        probe(missing)
    with pytest.raises(MediaError, match="no such file"):
        decode(missing, fps=3, sample_rate=16000)


def test_folder_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="is a folder"):
        probe(tmp_path)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty\.wav is empty \(0 bytes\)"):
        decode(empty, fps=None, sample_rate=16000)


@pytest.mark.parametrize("name", ["notes.mp4", "notes.wav", "notes.bin"])
def test_not_media(tmp_path: Path, name: str) -> None:
    path = mf.make_not_media(tmp_path / name)
    with pytest.raises(MediaError, match=rf"{name} is not a media file"):
        probe(path)
    with pytest.raises(MediaError, match="is not a media file"):
        decode(path, fps=3, sample_rate=16000)


def test_no_audio_no_video_stream(tmp_path: Path) -> None:
    subtitles = tmp_path / "only_subtitles.srt"
    subtitles.write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n", encoding="utf-8")
    with pytest.raises(MediaError, match="has no audio and no video stream"):
        probe(subtitles)
    with pytest.raises(MediaError, match="has no audio and no video stream"):
        decode(subtitles, fps=3, sample_rate=16000)


def test_zero_duration(tmp_path: Path) -> None:
    path = mf.make_empty(tmp_path / "header_only.wav")
    with pytest.raises(MediaError, match="zero duration"):
        probe(path)
    with pytest.raises(MediaError, match="zero duration"):
        decode(path, fps=None, sample_rate=16000)


def test_truncated_mp4_cannot_open(clips: dict[str, Path], tmp_path: Path) -> None:
    path = mf.make_truncated(clips[".mp4"], tmp_path / "cut.mp4", 0.6)
    with pytest.raises(MediaError, match=r"cut\.mp4 .*truncated/corrupt"):
        decode(path, fps=3, sample_rate=16000)


def test_truncated_flac_says_when(clips: dict[str, Path], tmp_path: Path) -> None:
    path = mf.make_truncated(clips[".flac"], tmp_path / "cut.flac", 0.5)
    with pytest.raises(MediaError, match=r"cut\.flac is truncated or corrupt: .*at \d+\.\d\d s"):
        decode(path, fps=None, sample_rate=16000)


@pytest.mark.parametrize("suffix", [".mkv", ".mpg", ".mp3"])
def test_corrupt_file_says_when(clips: dict[str, Path], tmp_path: Path, suffix: str) -> None:
    path = mf.make_corrupt(clips[suffix], tmp_path / f"bad{suffix}", at=0.5, length=2000)
    with pytest.raises(MediaError, match=r"is truncated or corrupt: decoding failed at \d+\.\d\d s"):
        decode(path, fps=3, sample_rate=16000)


def test_truncated_webm_logs_a_warning(
    clips: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = mf.make_truncated(clips[".webm"], tmp_path / "cut.webm", 0.4)
    with caplog.at_level(logging.WARNING, logger="msa_runtime.media.decoding"):
        decoded = decode(path, fps=3, sample_rate=16000)
    assert 0 < len(decoded.audio) < 16000 * 1.5
    assert "cut.webm seems truncated" in caplog.text


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"start": 1.0, "end": 1.0}, r"start \(1.0 s\) must be before end"),
        ({"start": 1.5, "end": 0.5}, "must be before end"),
        ({"start": -1.0}, "start must be >= 0"),
        ({"fps": 0}, "fps must be positive"),
        ({"sample_rate": -16000}, "sample_rate must be positive"),
        ({"chunk_seconds": 0.0}, "chunk_seconds must be positive"),
        ({"fps": None, "sample_rate": None}, "nothing to decode"),
    ],
)
def test_bad_arguments(clips: dict[str, Path], kwargs: dict, match: str) -> None:
    args: dict = {"fps": 3, "sample_rate": 16000} | kwargs
    with pytest.raises(InputError, match=match):  # argument errors are input errors (issue 14)
        iter_media(clips[".mp4"], **args)


@pytest.mark.parametrize("suffix", [".mp4", ".wav"])
def test_start_after_end_of_media(clips: dict[str, Path], suffix: str) -> None:
    with pytest.raises(MediaError, match=r"start \(5.0 s\) is at or after the end of .*choose"):
        decode(clips[suffix], fps=3, sample_rate=16000, start=5.0)


def test_media_and_transcript_do_not_import_torch() -> None:
    code = (
        "import sys, msa_runtime.media.decoding, msa_runtime.asr.transcript; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


FORK_FROM_A_THREAD = """
import multiprocessing, os, sys, threading
from concurrent.futures import ThreadPoolExecutor
import av, numpy as np
from msa_runtime.media.timeline import SWSCALE_THREADS, reformatter

frame = av.VideoFrame.from_ndarray(np.zeros((720, 1280, 3), np.uint8), format="rgb24")
codes = []

def fork_and_wait():
    child = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    child.start()
    child.join(20)
    codes.append(child.exitcode)
    if child.exitcode is None:
        child.kill()

with ThreadPoolExecutor(1) as pool:  # a live thread holding a scaler with its context
    scale = lambda: reformatter().reformat(frame, width=224, height=224, threads=SWSCALE_THREADS)
    pool.submit(scale).result()
    forker = threading.Thread(target=fork_and_wait)
    forker.start()
    forker.join(30)
print(codes)
sys.stdout.flush()
os._exit(0 if codes == [0] else 1)
"""


def test_a_fork_from_another_thread_does_not_hang_on_our_scalers() -> None:
    """Libraries fork from worker threads (OpenVINO's telemetry does, through multiprocessing):
    the child frees the parent's thread-local swscale contexts, which must not wait for slice
    threads that the child does not have. In a fresh interpreter, so that only our scalers are
    in play (pytest's own process holds other threads' state)."""
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", FORK_FROM_A_THREAD], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and run.stdout.strip() == "[0]", run.stdout + run.stderr[-2000:]
