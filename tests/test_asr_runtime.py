"""ASR in the scoring paths: clips transcribed when no text is given, records carrying the
transcript and its source, live streams placing committed words into windows, msa-run's --asr,
bad input. Plumbing with a random-weight Whisper; recognition quality is not tested."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from speech_factory import RATE, vowel_speech, write_clip

pytest.importorskip("faster_whisper", reason="the asr extra is not installed: pip install 'msa-edge[asr]'")

from msa_runtime import Analyzer  # noqa: E402
from msa_runtime.asr.transcript import text_between  # noqa: E402
from msa_runtime.errors import AsrError  # noqa: E402
from msa_runtime.scoring.stream import prepare, run_windows  # noqa: E402


@pytest.fixture(scope="module")
def speech_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """3 s silence, 6 s speech, 3 s silence (.wav and .mkv with video); pure silence; video only."""
    folder = tmp_path_factory.mktemp("speech")
    silence = np.zeros(3 * RATE, np.float32)
    talk = np.concatenate([silence, vowel_speech(6.0), silence])
    return {
        "wav": write_clip(folder / "talk.wav", talk),
        "mkv": write_clip(folder / "talk.mkv", talk, video_seconds=12),
        "quiet": write_clip(folder / "quiet.wav", np.zeros(4 * RATE, np.float32)),
        "mute": write_clip(folder / "mute.mkv", None, video_seconds=3),
        "cut": write_clip(folder / "cut.wav", talk[: round(5.7 * RATE)]),
    }


@pytest.fixture(scope="module")
def an(asr_pack: Path) -> Analyzer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny pack's untrained head
        return Analyzer(asr_pack, providers="cpu", threads=1, asr="pack", language="en")


def test_clip_is_transcribed_when_no_text_is_given(an: Analyzer, speech_files: dict[str, Path]) -> None:
    p = an.predict(speech_files["mkv"])
    assert p.transcript_source == "asr" and p.text
    assert p.modalities == ("text", "audio", "vision")
    assert "asr" in p.timings_ms and "decode" in p.timings_ms
    assert any(n.startswith("asr: ") and "words" in n for n in p.notes)
    rec = p.to_dict()
    assert rec["text"] == p.text and rec["transcript_source"] == "asr"


def test_given_text_wins_and_asr_can_be_off(an: Analyzer, speech_files: dict[str, Path]) -> None:
    p = an.predict(speech_files["wav"], text="i loved it")
    assert p.text == "i loved it" and p.transcript_source == "given"
    assert "asr" not in p.timings_ms
    off = an.predict(speech_files["wav"], asr=False)
    assert off.text is None and off.transcript_source is None and off.modalities == ("audio",)


def test_no_speech_and_no_audio_are_notes(an: Analyzer, speech_files: dict[str, Path]) -> None:
    quiet = an.predict(speech_files["quiet"])
    assert quiet.modalities == ("audio",) and quiet.text == ""
    assert "asr: no speech found: scored without text" in quiet.notes
    mute = an.predict(speech_files["mute"])
    assert mute.modalities == ("vision",)
    assert "asr: the input has no audio track: nothing to transcribe" in mute.notes


def test_asr_without_a_model_is_an_error(tiny_pack: Path, speech_files: dict[str, Path]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = Analyzer(tiny_pack, providers="cpu", threads=1)
        with pytest.raises(AsrError, match="carries no ASR model"):
            Analyzer(tiny_pack, providers="cpu", threads=1, asr="pack")
    with pytest.raises(AsrError, match="no ASR model: give one"):
        plain.predict(speech_files["wav"], asr=True)


def test_stream_places_committed_words_into_windows(an: Analyzer, speech_files: dict[str, Path]) -> None:
    # the stream path as Analyzer.stream runs it, its window state kept to read the transcription
    state, items, kinds = prepare(
        an, speech_files["wav"], text=None, transcript=None, window=4.0, hop=1.0, asr=True
    )
    windows = list(run_windows(state, items, kinds))
    assert windows and all(w.transcript_source == "asr" for w in windows)
    assert all("asr" in w.timings_ms for w in windows)
    live = state.speech  # the stream's live transcription
    assert live is not None
    cues = live.live.cues()
    assert cues, "the speech in the middle gives words"
    for w in windows:
        # each window's text: the words committed by then that overlap it, nothing else
        assert set((w.text or "").split()) <= set(text_between(cues, w.start, w.end).split())
    assert not windows[0].text, "the leading silence holds no words"
    assert any(w.text for w in windows[3:])
    assert live.live.stats.skipped >= 1 and live.live.stats.decodes >= 2


def test_stream_that_stops_mid_word(an: Analyzer, speech_files: dict[str, Path]) -> None:
    windows = list(an.stream(speech_files["cut"], window=2.0, hop=1.0))
    assert windows[-1].end == pytest.approx(5.7, abs=0.05)
    assert any(w.text for w in windows)


def _run(args: list[str]) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from msa_runtime.cli.run import main

    r = CliRunner().invoke(main, args)
    return r.exit_code, r.stdout, r.stderr


def test_msa_run_asr_records_and_bad_input(
    asr_pack: Path, speech_files: dict[str, Path], tmp_path: Path
) -> None:
    side = tmp_path / "side.wav"
    side.write_bytes(speech_files["wav"].read_bytes())
    (tmp_path / "side.txt").write_text("what a lovely day\n", encoding="utf-8")
    code, out, err = _run(
        [
            str(speech_files["wav"]),
            str(side),
            str(tmp_path / "missing.wav"),
            "--pack",
            str(asr_pack),
            "--asr",
            "pack",
            "--format",
            "jsonl",
        ]
    )
    assert code == 1 and "Traceback" not in err
    recs = [json.loads(line) for line in out.splitlines()]
    assert recs[0]["transcript_source"] == "asr" and recs[0]["text"]
    assert recs[1]["transcript_source"] == "sidecar" and recs[1]["text"] == "what a lovely day"
    assert "error" in recs[2] and "1 of 3 inputs failed" in err
    code, out, err = _run(
        [
            str(speech_files["wav"]),
            "--pack",
            str(asr_pack),
            "--asr",
            "pack",
            "--stream",
            "--window",
            "4",
            "--hop",
            "2",
            "--format",
            "jsonl",
        ]
    )
    assert code == 0 and "real-time factor" in err and "ASR" in err
    code, _, err = _run(
        [str(speech_files["wav"]), "--pack", str(asr_pack), "--asr", str(tmp_path / "no-model")]
    )
    assert code == 2 and err.startswith("error: ASR model folder") and "Traceback" not in err
    code, _, err = _run(
        [str(speech_files["wav"]), "--pack", str(asr_pack), "--asr", "pack", "--language", "klingon"]
    )
    assert code == 2 and "unknown language 'klingon'" in err


@pytest.mark.slow
def test_text_only_pack_gets_text_from_speech(
    tmp_path_factory: pytest.TempPathFactory, whisper_model: Path, speech_files: dict[str, Path]
) -> None:
    """minilm-text (real MiniLM weights, text only): audio is decoded for ASR alone."""
    from msa_export.pack.build import build_pack
    from msa_export.presets.registry import get_preset

    pack = build_pack(
        get_preset("minilm-text"), tmp_path_factory.mktemp("minilm") / "pack", precisions=["int8"]
    ).out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text_only = Analyzer(pack, providers="cpu", threads=1, asr=whisper_model, language="en")
        p = text_only.predict(speech_files["wav"])
        assert p.modalities == ("text",) and p.transcript_source == "asr" and p.text
        windows = list(text_only.stream(speech_files["wav"], window=4.0, hop=2.0))
    assert windows and all(w.modalities == ("text",) for w in windows)
