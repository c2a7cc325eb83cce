"""Speech recognition: model resolution, clip transcription with word times, VAD gating, live
commits stable across two decodes, bad models. Real decoding with a random-weight Whisper (the
``whisper_model`` fixture): these tests check plumbing, not recognition quality."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, shared_path

pytest.importorskip("faster_whisper", reason="the asr extra is not installed: pip install 'msa-edge[asr]'")

from msa_runtime.asr.live import LiveTranscriber  # noqa: E402
from msa_runtime.asr.recognizer import Recognizer, Word, resolve_model  # noqa: E402
from msa_runtime.asr.transcript import text_between  # noqa: E402
from msa_runtime.errors import AsrError, InputError, MissingExtraError, MsaError  # noqa: E402

RATE = 16000
SPEECH = SHARED / "speech"


def _speech(seconds: float | None = None) -> np.ndarray:
    """Real speech (a LibriSpeech utterance from ../shared/data, 13.9 s) when present, else
    14 s of synthetic vowels (which the VAD takes for speech too)."""
    from msa_runtime import media

    path = SPEECH / "librispeech_198-209-0000.ogg"
    if path.is_file():
        audio = media.decode(path, fps=None, sample_rate=RATE).audio
    else:
        from speech_factory import vowel_speech

        audio = vowel_speech(14.0, seed=1)
    return audio if seconds is None else audio[: round(seconds * RATE)]


@pytest.fixture(scope="module")
def rec(whisper_model: Path) -> Recognizer:
    return Recognizer(whisper_model, language="en", threads=1)


def test_clip_words_have_times_inside_the_clip(rec: Recognizer) -> None:
    audio = _speech()
    tr = rec.transcribe(audio, offset=5.0)
    assert tr.words, "the random model decodes some words from real speech"
    assert tr.text == " ".join(w.text for w in tr.words)
    duration = len(audio) / RATE
    for w in tr.words:
        assert 5.0 <= w.start <= w.end <= 5.0 + duration + 0.05
    assert 0 < tr.speech_seconds <= duration
    assert tr.language == "en"
    # same audio, same words: decoding is deterministic (live commits rely on it)
    assert rec.transcribe(audio, offset=5.0).words == tr.words


def test_vad_skips_silence_without_decoding(rec: Recognizer) -> None:
    silence = np.zeros(5 * RATE, np.float32)
    tr = rec.transcribe(silence)
    assert tr.text == "" and tr.words == () and tr.speech_seconds == 0.0
    # speech preceded by 4 s of silence: no word starts in the silence (minus VAD padding)
    audio = np.concatenate([silence[: 4 * RATE], _speech(6.0)])
    words = rec.transcribe(audio).words
    assert words and min(w.start for w in words) >= 3.5


def test_unknown_language_and_bad_models(whisper_model: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown language 'klingon'"):
        Recognizer(whisper_model, language="klingon")
    with pytest.raises(AsrError, match="does not exist"):
        resolve_model(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AsrError, match="model.bin, config.json missing"):
        resolve_model(empty)
    with pytest.raises(AsrError, match="unknown ASR model 'huge'"):
        resolve_model("huge")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(whisper_model, corrupt)
    (corrupt / "model.bin").write_bytes(b"not a model")
    with pytest.raises(AsrError, match="cannot be loaded.*corrupt"):
        Recognizer(corrupt)


def test_a_ready_recognizer_keeps_its_language(rec: Recognizer, tmp_path: Path) -> None:
    from msa_runtime.asr.speech import make_recognizer

    assert make_recognizer(rec, tmp_path, {}, language="EN") is rec  # the same language: fine
    with pytest.raises(InputError, match="language='de' with a ready Recognizer .language 'en'.: give"):
        make_recognizer(rec, tmp_path, {}, language="de")


def test_offline_size_name_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(
        AsrError, match="not in the hub cache.*huggingface-cli download Systran/faster-whisper-tiny"
    ):
        resolve_model("tiny", offline=True)


def test_missing_extra_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'msa-edge\[asr\]'") as info:
        Recognizer("tiny")
    assert isinstance(info.value, MsaError)


def _feed(live: LiveTranscriber, audio: np.ndarray, step: float, every: int) -> list[list[Word]]:
    out = []
    n = round(step * RATE)
    for i, a in enumerate(range(0, len(audio), n)):
        live.add(audio[a : a + n], a / RATE)
        if (i + 1) % every == 0:
            out.append(live.update())
    return out


def test_live_commits_only_words_two_decodes_agree_on(rec: Recognizer) -> None:
    audio = np.concatenate([np.zeros(3 * RATE, np.float32), _speech(9.0), np.zeros(3 * RATE, np.float32)])
    live = LiveTranscriber(rec)
    seen: list[tuple[float, list[Word]]] = []
    real = live._decode

    def spy(until: float) -> list[Word]:
        words = real(until)
        seen.append((until, words))
        return words

    live._decode = spy  # type: ignore[method-assign]
    committed: list[Word] = []
    for a in range(0, len(audio), 2 * RATE):
        live.add(audio[a : a + 2 * RATE], a / RATE)
        before = len(seen)
        new = live.update()
        if new:  # committed now: the prefix this decode shares with the previous one
            assert len(seen) == before + 1 and before >= 1
            key = [w.text for w in new]
            assert [w.text for w in seen[-1][1][: len(key)]] == key
            previous = [w.text for w in seen[-2][1]]
            assert any(previous[i : i + len(key)] == key for i in range(len(previous)))
        committed += new
    committed += live.finish()
    assert committed and committed == live.committed
    assert live.stats.skipped >= 1, "the leading silence is not decoded"
    assert live.stats.decodes == len(seen) >= 2
    assert seen[0][0] >= 4.0, "no decode before the speech starts (at 3 s)"
    # the leading silence left the buffer (but for 0.5 s of context) before the first decode
    assert all(w.start >= 1.5 for w in committed)
    times = [w.start for w in committed]
    assert times == sorted(times)
    cues = live.cues()
    assert text_between(cues, 0.0, 1.5) == ""
    assert text_between(cues, 0.0, 16.0) == " ".join(w.text for w in committed)


def test_live_silence_never_decodes(rec: Recognizer) -> None:
    live = LiveTranscriber(rec)
    _feed(live, np.zeros(10 * RATE, np.float32), 0.5, 2)
    assert live.finish() == [] and live.stats.decodes == 0 and live.stats.skipped >= 4
    assert live.end - live.buffer_start < 2.0  # type: ignore[operator]  # silence is not kept


def test_live_stream_that_stops_mid_word(rec: Recognizer) -> None:
    live = LiveTranscriber(rec)
    _feed(live, _speech(4.37), 0.5, 2)
    final = live.finish()
    assert live.committed and live.hypothesis == []
    assert all(w.end <= 4.37 + 0.05 for w in live.committed)
    assert isinstance(final, list)


def test_real_speech_clips_give_words(rec: Recognizer) -> None:
    from msa_runtime import media

    folder = shared_path("speech")
    for path in sorted(folder.glob("*.ogg"))[:2]:
        audio = media.decode(path, fps=None, sample_rate=RATE).audio
        tr = rec.transcribe(audio)
        assert tr.speech_seconds > 1.0 and tr.words, path.name


def test_export_copies_the_model_into_the_pack_hashed(asr_pack: Path) -> None:
    from msa_runtime.asr.recognizer import pack_model
    from msa_runtime.errors import PackError
    from msa_runtime.pack import load_manifest

    m = load_manifest(asr_pack)
    entry = m.extras["asr"]
    assert entry["folder"] == "asr" and "asr/model.bin" in entry["files"]
    for name in entry["files"]:
        assert name in m.files and len(m.files[name]["sha256"]) == 64
    folder = pack_model(asr_pack, m.extras)
    assert folder == (asr_pack / "asr").resolve()
    assert Recognizer(folder, threads=1).transcribe(_speech(3.0)).speech_seconds > 0
    # a copied pack with a damaged ASR file is refused like any other damaged file
    damaged = asr_pack.parent / "damaged"
    shutil.copytree(asr_pack, damaged)
    config = damaged / "asr" / "config.json"
    config.write_bytes(config.read_bytes()[:-1] + b" ")  # same size: only the sha256 can tell
    with pytest.raises(PackError, match="asr/config.json does not match its sha256"):
        load_manifest(damaged)
    # a file slipped into the model folder would be read by the recognizer unchecked: refused
    added = asr_pack.parent / "added"
    shutil.copytree(asr_pack, added)
    (added / "asr" / "vocabulary.txt").write_text("swapped\n", encoding="utf-8")
    with pytest.raises(PackError, match="asr/vocabulary.txt is in the ASR model's folder but has no sha256"):
        load_manifest(added, verify=False)


def test_export_with_a_bad_asr_model_fails_fast(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from msa_export.cli import main

    out = tmp_path / "pack"
    result = CliRunner().invoke(
        main, ["--preset", "tiny", "--out", str(out), "--asr", str(tmp_path / "missing-model")]
    )
    assert result.exit_code == 2
    assert "error: ASR model folder" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_clip_text_notes(rec: Recognizer) -> None:
    from msa_runtime.asr.speech import clip_text

    assert clip_text(rec, None, None).notes == ("asr: the input has no audio track: nothing to transcribe",)
    quiet = clip_text(rec, np.zeros(3 * 22050, np.float32), 22050)
    assert quiet.text == "" and quiet.notes == ("asr: no speech found: scored without text",)
    spoken = clip_text(rec, _speech(4.0), RATE, offset=2.0)
    assert spoken.text and spoken.notes[0].startswith("asr: ")
    assert spoken.transcript is not None and spoken.transcript.words[0].start >= 2.0


def test_stream_text_resamples_to_16k(rec: Recognizer) -> None:
    from msa_runtime.asr.speech import StreamText
    from msa_runtime.media.resample import resample_audio

    audio = resample_audio(_speech(6.0), RATE, 44100)
    st = StreamText(rec, 44100)
    for a in range(0, len(audio), 44100):
        st.add(audio[a : a + 44100], a / 44100)
    assert abs(st.live.end - 6.0) < 0.05  # 16 kHz samples on the stream's clock
    st.cues_until(6.0)
    st.finish()
    assert st.live.committed and st.ms > 0
    assert all(0.0 <= w.start <= w.end <= 6.05 for w in st.live.committed)


def test_live_buffer_stays_bounded_in_long_speech(rec: Recognizer) -> None:
    from speech_factory import vowel_speech

    live = LiveTranscriber(rec, trim_seconds=6.0, max_seconds=10.0)
    audio = vowel_speech(24.0, seed=3)
    longest = 0.0
    for a in range(0, len(audio), 2 * RATE):
        live.add(audio[a : a + 2 * RATE], a / RATE)
        live.update()
        longest = max(longest, live.end - live.buffer_start)  # type: ignore[operator]
    live.finish()
    assert longest <= 10.0 + 2.0 and live.committed
    starts = [w.start for w in live.committed]
    assert starts == sorted(starts) and starts[-1] > 12.0
