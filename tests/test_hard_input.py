"""Issue 12, "inputs that are not what they claim", "output" and "the API keeps its promise":
standard input sniffed by magic number, arguments checked under the name the user typed, pack
paths that are not folders, truncated media, a closed or full output, non-UTF-8 file names, and
every error of the public API an :class:`MsaError` (parametrized over bad arguments)."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from media_factory import make_clip

from msa_runtime import Analyzer, InputError, MediaError, MsaError, PackError, ProviderError, TextError
from msa_runtime.boundary import public, translate
from msa_runtime.media import stdin as piped_input
from msa_runtime.pack import load_manifest

CLI = [sys.executable, "-m", "msa_runtime.cli"]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hard-media")
    out = {
        s: make_clip(root / f"clip.{s}", duration=2.5) for s in ("mp4", "mkv", "webm", "wav", "ogg", "flac")
    }
    out["mp3"] = make_clip(root / "clip.mp3", duration=2.5)
    return out


def _run(args: list[Any], data: bytes = b"", **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, *args], input=data, capture_output=True, timeout=180, check=False, **kw)


def _set_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


# -- standard input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "kind"),
    [("mp4", "mp4"), ("mkv", "matroska"), ("webm", "matroska"), ("wav", "wav"), ("ogg", "ogg"),
     ("flac", "flac"), ("mp3", "mp3")],
)  # fmt: skip
def test_sniff_recognises_generated_containers(media: dict[str, Path], suffix: str, kind: str) -> None:
    assert piped_input.sniff(media[suffix].read_bytes()[: piped_input.HEAD]) == kind


def test_sniff_refuses_raw_pcm_and_text() -> None:
    t = np.arange(8000) / 16000
    pcm = (3000 * np.sin(2 * np.pi * 220 * t)).astype("<i2").tobytes()
    assert piped_input.sniff(pcm[:512]) is None
    assert piped_input.sniff(b"hello, this is text\n" * 30) is None
    with pytest.raises(MediaError, match="--input-format s16le"):
        piped_input.open_stdin(io.BytesIO(pcm))
    with pytest.raises(MediaError, match="standard input is empty"):
        piped_input.open_stdin(io.BytesIO(b""))


@pytest.mark.parametrize("suffix", ["mp4", "webm"])
def test_stream_of_a_container_on_stdin_decodes_it(
    an: Analyzer, media: dict[str, Path], suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug: MP4 bytes were scored as raw PCM. Now the container is decoded (video too), the
    same as the file: MP4 through a temporary copy, WebM straight from the pipe."""
    from_file = [p.score for p in an.stream(media[suffix], window=2.0, hop=1.0)]
    _set_stdin(monkeypatch, media[suffix].read_bytes())
    windows = list(an.stream("-", window=2.0, hop=1.0))
    assert all(w.modalities == ("audio", "vision") for w in windows)
    assert [round(w.score, 4) for w in windows] == [round(s, 4) for s in from_file]


def test_predict_from_stdin_matches_the_file(
    an: Analyzer, media: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = an.predict(media["mkv"], text="fine").score
    _set_stdin(monkeypatch, media["mkv"].read_bytes())
    assert an.predict("-", text="fine").score == pytest.approx(expected, abs=1e-5)
    pcm = (3000 * np.sin(np.arange(24000) / 7)).astype("<i2").tobytes()
    _set_stdin(monkeypatch, pcm)
    p = an.predict("-", format="s16le")
    assert p.modalities == ("audio",)
    _set_stdin(monkeypatch, b"")
    with pytest.raises(MediaError, match="standard input is empty"):
        an.predict("-")


def test_cli_stdin_mp4_without_stream_and_empty_stdin(tiny_pack: Path, media: dict[str, Path]) -> None:
    ok = _run(["-", "--pack", tiny_pack, "--format", "jsonl"], media["mp4"].read_bytes())
    assert ok.returncode == 0, ok.stderr.decode()
    (rec,) = [json.loads(line) for line in ok.stdout.decode().splitlines()]
    assert rec["input"] == "-" and rec["modalities"] == ["audio", "vision"]
    empty = _run(["-", "--pack", tiny_pack, "--stream"])
    assert empty.returncode == 1
    assert "standard input is empty" in empty.stderr.decode()
    assert "Traceback" not in empty.stderr.decode()


# -- arguments named as the user typed them ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "nan"], "--window must be a finite number"),
        (["--window", "inf"], "--window must be a finite number"),
        (["--window", "0"], "--window must be > 0"),
        (["--hop", "-1"], "--hop must be > 0"),
        (["--hop", "nan"], "--hop must be a finite number"),
        (["--hop", "1e-300"], "--hop (1e-300 s) must be at least 0.01 s"),
        (["--window", "0.1"], "--window (0.1 s) is shorter than one video frame"),
    ],
)
def test_cli_window_and_hop_are_checked_by_their_option_name(
    tiny_pack: Path, media: dict[str, Path], args: list[str], message: str
) -> None:
    from click.testing import CliRunner

    from msa_runtime.cli.run import main

    result = CliRunner().invoke(main, [str(media["wav"]), "--pack", str(tiny_pack), "--stream", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


# -- the API keeps its promise ----------------------------------------------------------------


def _bad_calls(clip: Path) -> list[tuple[str, Callable[[Analyzer], Any], type[MsaError], str]]:
    tone = np.sin(np.arange(16000, dtype=np.float32) / 5)
    frame = np.zeros((32, 32, 3), np.uint8)
    return [
        ("source list", lambda a: a.predict([str(clip)]), InputError, "a list"),
        ("source bytes", lambda a: a.predict(b"clip.mp4"), InputError, "source must be a path"),
        ("source int", lambda a: a.predict(3), InputError, "source must be a path"),
        ("text bytes", lambda a: a.predict(text=b"hi"), InputError, "decode it first"),
        ("text int", lambda a: a.predict(text=5), InputError, "text must be str"),
        ("text zero-width", lambda a: a.predict(text="\u200b\u200d\ufeff"), TextError, "no visible"),
        ("text controls", lambda a: a.predict(text="\x07\x1b\x00"), TextError, "no visible"),
        ("text surrogate", lambda a: a.predict(text="ok \udc80"), TextError, "lone surrogate"),
        ("start nan", lambda a: a.predict(clip, start=math.nan), InputError, "start must be a finite"),
        ("start inf", lambda a: a.predict(clip, start=math.inf), InputError, "start must be a finite"),
        ("end nan", lambda a: a.predict(clip, end=math.nan), InputError, "end must be a finite"),
        ("end inf", lambda a: a.predict(clip, end=math.inf), InputError, "end must be a finite"),
        ("start str", lambda a: a.predict(clip, start="1"), InputError, "start must be a number"),
        ("end before start", lambda a: a.predict(clip, start=2, end=1), InputError, "must be after"),
        ("asr str", lambda a: a.predict(text="hi", asr="yes"), InputError, "asr must be"),
        ("unknown format", lambda a: a.predict(clip, format="nope"), MediaError, "FFmpeg"),
        ("rate 0", lambda a: a.predict_arrays(audio=tone, sample_rate=0), InputError, "sample_rate"),
        ("rate < 0", lambda a: a.predict_arrays(audio=tone, sample_rate=-8000), InputError, "sample_rate"),
        ("rate nan", lambda a: a.predict_arrays(audio=tone, sample_rate=math.nan), InputError, "sample_rate"),
        ("rate str", lambda a: a.predict_arrays(audio=tone, sample_rate="16000"), InputError, "sample_rate"),
        ("rate bool", lambda a: a.predict_arrays(audio=tone, sample_rate=True), InputError, "sample_rate"),
        ("rate fraction", lambda a: a.predict_arrays(audio=tone, sample_rate=16000.5), InputError, "whole"),
        ("complex audio", lambda a: a.predict_arrays(audio=tone.astype(complex), sample_rate=16000),
         InputError, "complex"),
        ("nan audio", lambda a: a.predict_arrays(audio=tone * np.nan, sample_rate=16000), InputError, "NaN"),
        ("audio str", lambda a: a.predict_arrays(audio="abc", sample_rate=16000), InputError, "audio must"),
        ("frames generator", lambda a: a.predict_arrays(frames=(f for f in [frame])), InputError, "list"),
        ("frames wrong shape", lambda a: a.predict_arrays(frames=[frame[..., 0]]), InputError, "H x W x 3"),
        ("window None", lambda a: a.stream(clip, window=None), InputError, "window must be a number"),
        ("window nan", lambda a: a.stream(clip, window=math.nan), InputError, "window must be a finite"),
        ("hop inf", lambda a: a.stream(clip, hop=math.inf), InputError, "hop must be a finite"),
        ("window str", lambda a: a.stream(clip, window="6"), InputError, "window must be a number"),
        ("window < frame", lambda a: a.stream(clip, window=0.05), InputError, "shorter than one video frame"),
        ("stream list", lambda a: a.stream([clip]), InputError, "a list"),
        ("stream generator", lambda a: a.stream(iter([clip])), InputError, "source must be a path"),
        ("stream format", lambda a: list(a.stream(clip, format="nope")), MediaError, "FFmpeg"),
        ("stream options", lambda a: a.stream(clip, options={"a": 1}), InputError, "options"),
        ("transcript int", lambda a: a.predict(text=None, transcript=3), InputError, "transcript must"),
    ]  # fmt: skip


def _cases() -> list[Any]:
    return [pytest.param(i, id=name) for i, (name, *_rest) in enumerate(_bad_calls(Path("x")))]


@pytest.mark.parametrize("index", _cases())
def test_every_bad_argument_is_a_typed_error(an: Analyzer, media: dict[str, Path], index: int) -> None:
    _, call, kind, message = _bad_calls(media["mp4"])[index]
    with pytest.raises(kind, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(an)


def test_analyzer_arguments_and_use_after_close(tiny_pack: Path) -> None:
    with pytest.raises(InputError, match="pack must be a folder path"):
        Analyzer(3)  # type: ignore[arg-type]
    with pytest.raises(MsaError):
        Analyzer(tiny_pack, threads="two")  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an = Analyzer(tiny_pack, concurrent=True)
    assert an.predict(text="still open").modalities == ("text",)
    an.close()
    for call in (lambda: an.predict(text="hi"), lambda: an.stream("x.mp4"), lambda: an.encode({})):
        with pytest.raises(InputError, match="was closed"):
            call()


def test_onnxruntime_and_pyav_errors_are_translated(an: Analyzer) -> None:
    """Errors a dependency raises become MsaErrors at the boundary (the cause kept)."""
    wrong = np.zeros((1, 2), np.float32)  # token ids must be int64
    bad_feed = {
        "text": lambda: an.sessions["text"].run(["hidden"], {"input_ids": wrong, "attention_mask": wrong})
    }
    with pytest.raises(ProviderError, match="ONNX Runtime failed") as info:
        an.encode(bad_feed)
    assert type(info.value.__cause__).__module__.startswith("onnxruntime")
    try:
        av.open(io.BytesIO(b"\x00garbage" * 64))
    except av.error.FFmpegError as exc:
        assert isinstance(translate(exc, "x"), MediaError)
    else:  # pragma: no cover
        pytest.fail("PyAV opened garbage")
    assert isinstance(translate(KeyError("k"), "x"), MsaError)

    @public
    def lazy() -> Iterator[int]:
        yield 1
        raise ValueError("late")

    it = lazy()
    assert next(it) == 1
    with pytest.raises(InputError, match="late"):
        next(it)


# -- pack paths and broken media --------------------------------------------------------------


def test_pack_path_that_is_not_a_folder(tmp_path: Path, media: dict[str, Path]) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, words in [(media["wav"], "is a file"), (fifo, "FIFO"), (loop, "symlink loop")]:
        with pytest.raises(PackError, match=words):
            load_manifest(path)
    result = _run(["--pack", fifo, "--text", "hi"])
    assert result.returncode == 2 and b"FIFO" in result.stderr and b"Traceback" not in result.stderr


def test_truncated_matroska_and_wav_say_so(
    an: Analyzer, media: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for suffix in ("mkv", "webm"):
        cut = tmp_path / f"cut.{suffix}"
        cut.write_bytes(media[suffix].read_bytes()[:200])
        with pytest.raises(MediaError, match="truncated or corrupt.*200 bytes"):
            an.predict(cut)
    wav = tmp_path / "half.wav"
    data = media["wav"].read_bytes()
    wav.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="msa_runtime"):
        an.predict(wav)
    assert any(
        "seems truncated" in r.getMessage() and "WAV header declares" in r.getMessage()
        for r in caplog.records
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="msa_runtime"):
        an.predict(media["wav"])
    assert not any("truncated" in r.getMessage() for r in caplog.records)


# -- output -----------------------------------------------------------------------------------


def test_closed_pipe_ends_quietly_with_141(tiny_pack: Path, media: dict[str, Path]) -> None:
    proc = subprocess.Popen(
        [*CLI, str(media["wav"]), str(media["flac"]), "--pack", str(tiny_pack), "--format", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader went away (| head -0) before anything was written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=180) == 141, err
    assert "error" not in err and "Traceback" not in err and "Exception ignored" not in err


def test_full_disk_is_one_line_not_blamed_on_the_input(tiny_pack: Path, media: dict[str, Path]) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is absent on this system")
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [*CLI, str(media["wav"]), "--pack", str(tiny_pack), "--format", "jsonl"],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=180,
            check=False,
        )
    lines = [line for line in result.stderr.decode().splitlines() if line.startswith("error")]
    assert result.returncode == 74
    assert lines == [lines[0]] and "cannot write the results" in lines[0]
    assert str(media["wav"]) not in lines[0] and "inputs failed" not in result.stderr.decode()


def test_non_utf8_file_name_stays_valid_json(tiny_pack: Path, media: dict[str, Path], tmp_path: Path) -> None:
    odd = os.path.join(os.fsencode(tmp_path), b"clip\xff.wav")
    with open(odd, "wb") as fh:
        fh.write(media["wav"].read_bytes())
    for fmt in ("json", "table"):
        result = _run([odd, b"--pack", os.fsencode(tiny_pack), b"--format", fmt.encode()])
        assert result.returncode == 0, result.stderr.decode()
        text = result.stdout.decode("utf-8")  # strict: valid UTF-8
        if fmt == "json":
            (rec,) = json.loads(text)
            assert rec["input"].endswith("clip\\xff.wav") and "score" in rec
        else:
            assert "clip\\xff.wav" in text
