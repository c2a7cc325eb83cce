"""The runtime against the tiny pack: issue 3's "done when" list.

Clips are generated with PyAV (tests/media_factory.py) in every container and codec the issue
names, scored by :meth:`Analyzer.predict`, :meth:`Analyzer.stream` and ``msa-run`` (click's
CliRunner, plus real subprocesses for stdin PCM and the no-torch check). Every bad input must
give a one-line error without a traceback.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import av
import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import shared_path
from media_factory import (
    AUDIO_ONLY_SUFFIXES,
    AV_SUFFIXES,
    container_codecs,
    make_clip,
    make_corrupt,
    make_empty,
    make_not_media,
    make_silent_video,
    make_truncated,
)

from msa_runtime import Analyzer, InputError, MediaError, PackError, Prediction, ProviderError, media
from msa_runtime.cli.run import main as cli_main
from msa_runtime.engine.sessions import resolve_providers
from msa_runtime.pack import write_manifest

pytestmark = pytest.mark.filterwarnings("ignore:pack .* untrained fusion head:UserWarning")

SUFFIXES = AV_SUFFIXES + AUDIO_ONLY_SUFFIXES


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One 2.5 s clip per container (own folder ``all``), plus odd inputs beside it."""
    root = tmp_path_factory.mktemp("clips")
    (root / "all").mkdir()
    out: dict[str, Path] = {}
    for suffix in SUFFIXES:
        video, audio = container_codecs(suffix)
        if audio is None or (suffix in AV_SUFFIXES and video is None):
            continue  # this PyAV build cannot write it; test_every_container_is_covered says so
        out[suffix] = make_clip(root / "all" / f"clip{suffix}", duration=2.5, channels=2)
    out["silent"] = make_silent_video(root / "silent.mp4", duration=2.5)
    out["long"] = make_clip(root / "long.mp4", duration=13.0, fps=15)
    out["not_media"] = make_not_media(root / "notes.mp4")
    out["truncated"] = make_truncated(out[".mp4"], root / "truncated.mp4", 0.5)
    out["corrupt"] = make_corrupt(out[".mp4"], root / "corrupt.mp4", 0.4)
    out["empty"] = make_empty(root / "empty.wav")
    return out


def run_cli(*args: str | os.PathLike[str], **kwargs: Any) -> Result:
    return CliRunner().invoke(cli_main, [str(a) for a in args], **kwargs)


def records(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_score(p: Prediction, modalities: tuple[str, ...]) -> None:
    assert -3.0 <= p.score <= 3.0 and math.isfinite(p.score)
    assert p.modalities == modalities
    assert p.polarity in ("positive", "negative", "neutral")
    assert set(p.gates or {}) == set(modalities)
    assert "head" in p.timings_ms


# -- every container and codec ---------------------------------------------------------------


def test_every_container_is_covered(clips: dict[str, Path]) -> None:
    missing = [s for s in SUFFIXES if s not in clips]
    if missing:
        pytest.skip(f"this PyAV build cannot write {missing}: those containers go untested")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_predict_every_container(an: Analyzer, clips: dict[str, Path], suffix: str) -> None:
    if suffix not in clips:
        pytest.skip(f"no encoder for {suffix}")
    p = an.predict(clips[suffix])
    expected = ("audio", "vision") if suffix in AV_SUFFIXES else ("audio",)
    assert_score(p, expected)
    assert p.timings_ms["decode"] > 0
    assert_score(an.predict(clips[suffix], text="what a lovely day"), ("text", *expected))


@pytest.mark.parametrize("suffix", [".mp4", ".wav"])
def test_predict_opens_a_local_file_once(
    an: Analyzer, clips: dict[str, Path], suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe that picks whole or windowed scoring hands its open container to the decode."""
    if suffix not in clips:
        pytest.skip(f"no encoder for {suffix}")
    before = an.predict(clips[suffix])
    opens: list[object] = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opens.append(a[0]) or real_open(*a, **k))
    p = an.predict(clips[suffix])
    assert opens == [str(clips[suffix])]
    assert p.score == pytest.approx(before.score, abs=1e-6) and p.timings_ms["decode"] > 0


def test_cli_scores_a_folder_of_every_container(tiny_pack: Path, clips: dict[str, Path]) -> None:
    folder = clips[".mp4"].parent
    result = run_cli(folder, "--pack", tiny_pack, "--format", "jsonl", "--text", "fine")
    assert result.exit_code == 0, result.output
    recs = records(result)
    assert sorted(Path(r["input"]).suffix for r in recs) == sorted(s for s in SUFFIXES if s in clips)
    for rec in recs:
        assert {"input", "score", "polarity", "modalities", "timings_ms"} <= set(rec)
        av_file = Path(rec["input"]).suffix in AV_SUFFIXES
        assert rec["modalities"] == (["text", "audio", "vision"] if av_file else ["text", "audio"])
    assert f"[1/{len(recs)}]" in result.stderr  # progress


def test_cli_real_subprocess(tiny_pack: Path, clips: dict[str, Path]) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "msa_runtime.cli",
            str(clips[".webm"]),
            "--pack",
            str(tiny_pack),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (rec,) = json.loads(proc.stdout)
    assert rec["modalities"] == ["audio", "vision"] and -3 <= rec["score"] <= 3
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("warning: pack ")  # the untrained head, as one line


# -- missing modalities, text, transcripts -----------------------------------------------------


def test_missing_modalities(an: Analyzer, clips: dict[str, Path]) -> None:
    assert_score(an.predict(clips["silent"]), ("vision",))
    assert_score(an.predict(clips["silent"], text="hello there"), ("text", "vision"))
    assert_score(an.predict(clips[".flac"]), ("audio",))
    assert_score(an.predict(text="i loved it"), ("text",))


def test_cli_text_only(tiny_pack: Path) -> None:
    result = run_cli("--pack", tiny_pack, "--text", "i loved it", "--format", "json")
    assert result.exit_code == 0, result.output
    (rec,) = json.loads(result.stdout)
    assert rec["input"] == "(text)" and rec["modalities"] == ["text"]


SIDECARS = {
    ".txt": "what a wonderful film\n",
    ".srt": "1\n00:00:00,000 --> 00:00:01,000\nwhat a\n\n2\n00:00:01,000 --> 00:00:02,000\nwonderful film\n",
    ".vtt": "WEBVTT\n\n00:00.000 --> 00:01.000\nwhat a\n\n00:01.000 --> 00:02.000\nwonderful film\n",
}


@pytest.mark.parametrize("kind", sorted(SIDECARS))
def test_transcript_sidecars(
    an: Analyzer, tiny_pack: Path, clips: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    clip = shutil.copy(clips[".mkv"], tmp_path / "talk.mkv")
    sidecar = tmp_path / f"talk{kind}"
    sidecar.write_text(SIDECARS[kind], encoding="utf-8")
    p = an.predict(clip, transcript=sidecar)
    assert_score(p, ("text", "audio", "vision"))
    # the same words as --text give the same score
    assert p.score == pytest.approx(an.predict(clip, text="what a wonderful film").score, abs=1e-5)
    result = run_cli(clip, "--pack", tiny_pack, "--format", "jsonl")  # picks up the sidecar
    assert result.exit_code == 0, result.output
    assert records(result)[0]["modalities"] == ["text", "audio", "vision"]


def test_real_speech_decodes_and_scores(an: Analyzer) -> None:
    files = sorted(shared_path("speech").glob("*.ogg"))
    if not files:
        pytest.skip("no .ogg files in ../shared/data/speech")
    for ogg in files:
        seconds = media.probe(ogg).duration or 0.0
        clip = media.decode(ogg, fps=None, sample_rate=16000)
        assert abs(len(clip.audio) / 16000 - seconds) < 0.1
        assert np.abs(clip.audio).max() > 0.01  # real signal, not silence
        assert_score(an.predict(ogg), ("audio",))
        assert_score(an.predict(ogg, text="she spoke of her sister"), ("text", "audio"))


# -- arrays -------------------------------------------------------------------------------------


def test_predict_arrays(an: Analyzer) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 120, 160, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(44100)).astype(np.float32)
    p = an.predict_arrays(frames=frames, audio=audio, sample_rate=44100, text="not bad")
    assert_score(p, ("text", "audio", "vision"))
    assert_score(an.predict_arrays(frames=list(frames)), ("vision",))
    assert_score(an.predict_arrays(audio=audio[None], sample_rate=44100), ("audio",))
    # resampling inside equals resampling by the caller's rate being the pack's
    assert an.predict_arrays(audio=audio[:16000], sample_rate=16000).score == pytest.approx(
        an.predict_arrays(audio=audio[:16000].copy(), sample_rate=16000).score
    )
    bad: list[dict[str, Any]] = [
        {},
        {"text": "  "},
        {"audio": audio},  # nothing / blank text / no sample rate
        {"frames": frames[..., 0]},
        {"frames": frames.astype(np.float32)},
        {"audio": np.stack([audio, audio], 1), "sample_rate": 44100},
    ]
    for kwargs in bad:
        with pytest.raises(InputError) as info:
            an.predict_arrays(**kwargs)
        assert "\n" not in str(info.value)


# -- streaming ------------------------------------------------------------------------------


def test_stream_windows_and_frame_cache(an: Analyzer, clips: dict[str, Path]) -> None:
    encoded: list[int] = []
    real = an.encode_frames

    def counting(frames: Any, *args: Any) -> np.ndarray:
        encoded.append(len(frames))
        return real(frames, *args)

    with mock.patch.object(an, "encode_frames", side_effect=counting):
        windows = list(an.stream(clips["long"], window=6.0, hop=2.0))
    assert [(w.start, w.end) for w in windows[:-1]] == [(0, 6), (2, 8), (4, 10), (6, 12)]
    assert windows[-1].start == 8 and 12.9 < (windows[-1].end or 0) < 13.1
    for w in windows:
        assert_score(w, ("audio", "vision"))
        assert w.latency_ms is not None and w.latency_ms > 0
        d = w.to_dict()
        assert d["start"] == w.start and d["end"] == w.end and d["polarity"] == w.polarity
        json.dumps(d)
    fps = an.prep("vision").fps
    # 13 s at the pack's 3 fps = 39 sampled frames, each encoded exactly once although every
    # frame lies in up to three windows
    assert sum(encoded) == round(13.0 * fps)


def test_stream_transcript_cues_feed_windows(an: Analyzer, clips: dict[str, Path], tmp_path: Path) -> None:
    srt = tmp_path / "talk.srt"
    srt.write_text(
        "1\n00:00:00,500 --> 00:00:01,500\nhello\n\n2\n00:00:11,000 --> 00:00:12,500\ngoodbye\n",
        encoding="utf-8",
    )
    windows = list(an.stream(clips["long"], transcript=srt, window=4.0, hop=2.0))
    assert [w.start for w in windows] == [0, 2, 4, 6, 8, 10]
    assert [w.start for w in windows if "text" in w.modalities] == [0, 8, 10]
    hello = next(w for w in windows if w.start == 0)
    assert hello.score == pytest.approx(an.predict(clips["long"], text="hello", end=4.0).score, abs=0.02)


def test_stream_hop_longer_than_window(an: Analyzer, clips: dict[str, Path]) -> None:
    windows = list(an.stream(clips["long"], window=1.0, hop=4.0))
    assert [(w.start, w.end) for w in windows] == [(0, 1), (4, 5), (8, 9), (12, 13)]


def test_stream_short_video_only_clip(an: Analyzer, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "blink.mp4", duration=0.2, audio_codec=None)
    (w,) = an.stream(clip)
    assert w.modalities == ("vision",) and w.start == 0 and (w.end or 0) > 0


def test_stream_empty_window_is_skipped_with_a_warning(an: Analyzer) -> None:
    from msa_runtime.scoring.stream import _Windows

    state = _Windows(an, 6.0, 2.0, None, None)
    with pytest.warns(UserWarning, match="nothing this pack can score"):
        assert list(state.score(0.0, 6.0)) == []


def test_stream_raw_pcm_on_stdin(tiny_pack: Path) -> None:
    t = np.arange(16000 * 9) / 16000
    pcm = (8000 * np.sin(2 * np.pi * 220 * t)).astype("<i2").tobytes()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "msa_runtime.cli",
            "-",
            "--pack",
            str(tiny_pack),
            "--stream",
            "--input-format",
            "s16le",
            "--format",
            "jsonl",
        ],
        input=pcm,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    recs = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [(r["start"], r["end"]) for r in recs] == [(0, 6), (2, 8), (4, 9)]
    assert all(r["input"] == "-" and r["modalities"] == ["audio"] for r in recs)
    assert all({"score", "polarity", "timings_ms", "latency_ms"} <= set(r) for r in recs)


def _lavfi(graph: str) -> str:
    try:
        av.open(graph, format="lavfi").close()
    except (av.error.FFmpegError, ValueError) as exc:
        pytest.skip(f"FFmpeg's lavfi device is not available here: {exc}")
    return graph


def test_stream_live_lavfi_source(an: Analyzer) -> None:
    graph = _lavfi(
        "testsrc=size=160x120:rate=15:duration=7[out0];sine=frequency=440:sample_rate=16000:duration=7[out1]"
    )
    windows = list(an.stream(graph, format="lavfi", window=3.0, hop=2.0))
    assert [w.start for w in windows] == [0, 2, 4]
    assert all(w.modalities == ("audio", "vision") for w in windows)


def test_stream_keeps_going_when_a_track_ends_early(an: Analyzer) -> None:
    """Audio ends at 3 s, video runs to 20 s: windows must not stall until the end (which
    buffered every frame and emitted one 18-second window)."""
    graph = _lavfi(
        "testsrc=size=160x120:rate=15:duration=20[out0];sine=frequency=440:sample_rate=16000:duration=3[out1]"
    )
    windows = list(an.stream(graph, format="lavfi", window=3.0, hop=2.0))
    assert [w.start for w in windows] == list(range(0, 19, 2))
    assert all((w.end or 0) - (w.start or 0) <= 3.0 + 1e-6 for w in windows)
    assert windows[0].modalities == ("audio", "vision") and windows[-1].modalities == ("vision",)


def test_cli_stream_formats(tiny_pack: Path, clips: dict[str, Path]) -> None:
    args: list[str | os.PathLike[str]] = [
        clips["long"],
        "--pack",
        tiny_pack,
        "--stream",
        "--window",
        "6",
        "--hop",
        "4",
    ]
    table = run_cli(*args, "--format", "table")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["input", "start", "end", "score"] and len(lines) == 1 + 3
    csv_out = run_cli(*args, "--format", "csv").stdout.splitlines()
    assert csv_out[0] == "input,start,end,score,polarity,modalities,total_ms,error"
    assert csv_out[1].startswith(f"{clips['long']},0.0,6.0,")
    recs = json.loads(run_cli(*args, "--format", "json").stdout)
    assert [(r["start"], r["end"]) for r in recs][:2] == [(0, 6), (4, 10)]


# -- batches and bad inputs ---------------------------------------------------------------


def test_batch_keeps_going_past_bad_inputs(tiny_pack: Path, clips: dict[str, Path]) -> None:
    inputs = [clips[".wav"], clips["not_media"], clips[".wav"].parent / "missing.mp4", clips["silent"]]
    for fmt in ("jsonl", "json", "csv"):
        result = run_cli(*inputs, "--pack", tiny_pack, "--format", fmt)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and result.exception is not None
        assert "2 of 4 inputs failed" in result.stderr
        if fmt == "csv":
            rows = result.stdout.splitlines()
            assert len(rows) == 5 and rows[2].startswith(f"{inputs[1]},,,,,,,")
            continue
        recs = records(result) if fmt == "jsonl" else json.loads(result.stdout)
        assert [r["input"] for r in recs] == [str(i) for i in inputs]
        assert set(recs[1]) == {"input", "error"} and set(recs[2]) == {"input", "error"}
        assert "score" in recs[0] and recs[3]["modalities"] == ["vision"]


def _pack_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _tampered(src: Path, dst: Path) -> Path:
    pack = _pack_copy(src, dst)
    head = pack / "head.onnx"
    data = bytearray(head.read_bytes())
    data[-1] ^= 0xFF
    head.write_bytes(bytes(data))
    return pack


def _newer(src: Path, dst: Path) -> Path:
    pack = _pack_copy(src, dst)
    manifest = json.loads((pack / "manifest.json").read_text())
    manifest["format_version"] = 99
    write_manifest(pack, manifest)
    return pack


Build = Callable[[dict[str, Path], Path, Path], tuple[list[Path], Path, list[Any]]]
BAD_INPUTS: dict[str, tuple[Build, int, list[str]]] = {
    # name: (how to build (input, pack, extra args), expected exit code, words in the error)
    "missing file": (lambda c, p, t: ([t / "nope.mp4"], p, []), 1, ["no such file"]),
    "not media": (lambda c, p, t: ([c["not_media"]], p, []), 1, ["not a media file"]),
    "truncated": (lambda c, p, t: ([c["truncated"]], p, []), 1, ["truncated"]),
    "corrupt": (lambda c, p, t: ([c["corrupt"]], p, []), 1, ["corrupt"]),
    "zero duration": (lambda c, p, t: ([c["empty"]], p, []), 1, ["zero duration"]),
    "transcript encoding": (lambda c, p, t: ([c[".wav"]], p, ["--transcript", _latin1(t)]), 1, ["not UTF-8"]),
    "missing pack": (lambda c, p, t: ([c[".wav"]], t / "no-pack", []), 2, ["no pack", "msa-export"]),
    "tampered pack": (lambda c, p, t: ([c[".wav"]], _tampered(p, t / "pk"), []), 2, ["sha256", "head.onnx"]),
    "newer pack": (
        lambda c, p, t: ([c[".wav"]], _newer(p, t / "pk"), []),
        2,
        ["format version 99", "upgrade"],
    ),
    "unavailable provider": (
        lambda c, p, t: ([c[".wav"]], p, ["--providers", "cuda"]),
        2,
        ["CUDAExecutionProvider", "available: ", "CPUExecutionProvider"],
    ),
}


def _latin1(folder: Path) -> Path:
    path = folder / "words.txt"
    path.write_bytes("très bien, j'ai adoré ce café".encode("latin-1"))
    return path


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_line_error(
    tiny_pack: Path, clips: dict[str, Path], tmp_path: Path, case: str
) -> None:
    build, code, words = BAD_INPUTS[case]
    inputs, pack, extra = build(clips, tiny_pack, tmp_path)
    result = run_cli(*inputs, "--pack", pack, *extra, "--format", "jsonl")
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)  # not an uncaught exception
    assert "Traceback" not in result.output
    (line,) = error_lines(result)
    for word in words:
        assert word in line, line
    if code == 1:  # an input failed: the output says so in a record too
        (rec,) = records(result)
        assert set(rec) == {"input", "error"} and rec["error"] in line


def test_library_errors_are_typed(
    tiny_pack: Path, an: Analyzer, clips: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(MediaError, match="no such file"):
        an.predict(tmp_path / "nope.mp4")
    with pytest.raises(PackError, match="sha256"):
        Analyzer(_tampered(tiny_pack, tmp_path / "pk"))
    with pytest.raises(InputError, match="window must be > 0"):
        an.stream(clips["long"], window=0)
    with pytest.raises(InputError, match="text or transcript"):
        an.predict(clips[".wav"], text="a", transcript=tmp_path / "a.srt")


def test_stream_of_a_file_without_usable_tracks(
    tmp_path: Path, tiny_pack: Path, clips: dict[str, Path]
) -> None:
    pack = _pack_copy(tiny_pack, tmp_path / "pk")
    manifest = json.loads((pack / "manifest.json").read_text())
    del manifest["encoders"]["audio"]
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith("audio")}
    write_manifest(pack, manifest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vision_text = Analyzer(pack)
    with pytest.raises(MediaError, match="has no video track"):
        list(vision_text.stream(clips[".flac"]))
    with pytest.raises(MediaError, match="no audio or video|no usable|vision"):
        vision_text.predict(clips[".flac"])


# -- warnings ---------------------------------------------------------------------------------


def test_warnings_are_one_line(tiny_pack: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    long_text = "word " * 200
    mkv = make_clip(tmp_path / "cut.mkv", duration=6.0)
    cut = make_truncated(mkv, tmp_path / "cut-half.mkv", 0.5)
    result = run_cli(cut, "--pack", tiny_pack, "--text", long_text, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert any(line.startswith("warning: text has ") for line in lines), lines
    assert any(line.startswith("warning: ") and "seems truncated" in line for line in lines)
    assert all(line.startswith(("warning: ", "error: ")) for line in lines), lines
    assert warnings.showwarning.__module__ == "warnings"  # restored after the command


# -- execution: precision, providers, imports -----------------------------------------------


def test_precision_selection(tiny_pack: Path, an: Analyzer, clips: dict[str, Path]) -> None:
    assert an.precision == "int8"  # the CPU default
    reference = None
    for precision in ("fp32", "fp16"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            other = Analyzer(tiny_pack, precision=precision)
        assert other.precision == precision
        score = other.predict(clips[".mp4"], text="so so").score
        reference = score if reference is None else reference
        assert score == pytest.approx(reference, abs=0.01)
    assert an.predict(clips[".mp4"], text="so so").score == pytest.approx(reference, abs=0.02)
    with pytest.raises(InputError, match="unknown precision"):
        Analyzer(tiny_pack, precision="int4")
    result = run_cli(clips[".wav"], "--pack", tiny_pack, "--precision", "fp16", "--format", "json")
    assert result.exit_code == 0, result.output


@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")  # ORT's own, as expected
def test_providers_fall_back_to_cpu(tiny_pack: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with mock.patch.dict("os.environ", {"MSA_EDGE_HIDE_DEVICES": "openvino"}):
        assert resolve_providers("auto") == ["CPUExecutionProvider"]
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ProviderError) as info:
        resolve_providers(["CUDAExecutionProvider"])
    assert "available: " in str(info.value) and "CPUExecutionProvider" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(ProviderError, match="CUDAExecutionProvider is not available"):
        Analyzer(tiny_pack, providers="cuda")
    # onnxruntime-gpu that lists CUDA but cannot use it: one warning, then CPU at int8
    cuda_listed = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with (
        mock.patch.object(ort, "get_available_providers", return_value=cuda_listed),
        pytest.warns(RuntimeWarning, match="fell back") as caught,
    ):
        fallback = Analyzer(tiny_pack, providers="auto")
    assert fallback.providers == ["CPUExecutionProvider"] and fallback.precision == "int8"
    assert sum("fell back" in str(w.message) for w in caught) == 1


NO_TORCH = """
import sys, warnings
warnings.simplefilter("ignore")
from msa_runtime import Analyzer
import msa_runtime.cli.run, msa_runtime.scoring.stream
an = Analyzer(sys.argv[1])
p = an.predict(sys.argv[2], text="hello")
w = next(iter(an.stream(sys.argv[2], window=1.0, hop=1.0)))
assert -3 <= p.score <= 3 and w.start == 0, p
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print("loaded:", heavy)
sys.exit(1 if heavy else 0)
"""


def test_runtime_never_imports_torch(tiny_pack: Path, clips: dict[str, Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(tiny_pack), str(clips[".mp4"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and "loaded: []" in proc.stdout, proc.stdout + proc.stderr
