"""The scoring core (issue 14): one rule for the text of a time span, shared by ``predict`` and
streams; one builder of head inputs; one serialisation of a prediction; public core methods."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from media_factory import make_clip

from msa_runtime import Analyzer, EncodedFrames, InputError, Prediction
from msa_runtime.asr.transcript import Cue
from msa_runtime.scoring.core import feature, head_feeds, text_for_span

pytestmark = pytest.mark.filterwarnings("ignore:pack .* untrained fusion head:UserWarning")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("scoring") / "clip.mp4", duration=8.0, fps=15)


def _texts(an: Analyzer, run: object) -> list[str]:
    """The texts the text encoder was given while ``run()`` ran."""
    seen: list[str] = []
    real = an.encode_text

    def spy(text: str) -> tuple[np.ndarray, np.ndarray]:
        seen.append(text)
        return real(text)

    with mock.patch.object(an, "encode_text", side_effect=spy):
        run()  # type: ignore[operator]
    return seen


def test_instant_cue_at_span_start_counts_in_predict_as_in_streams(
    an: Analyzer, clip: Path, tmp_path: Path
) -> None:
    """A cue from 2.0 to 2.0 s lies in [2, 6): streams used it, ``predict`` dropped it."""
    srt = tmp_path / "instant.srt"
    srt.write_text("1\n00:00:02,000 --> 00:00:02,000\ninstant\n", encoding="utf-8")
    predicted = _texts(an, lambda: an.predict(clip, transcript=srt, start=2.0, end=6.0))
    assert predicted == ["instant"]
    windows: list[Prediction] = []
    streamed = _texts(an, lambda: windows.extend(an.stream(clip, transcript=srt, window=4.0, hop=2.0)))
    assert [(w.start, w.end) for w in windows][:2] == [(0, 4), (2, 6)]
    with_text = [(w.start, w.end) for w in windows if "text" in w.modalities]
    assert (2, 6) in with_text and streamed.count("instant") == len(with_text)


def test_cue_beyond_the_clip_is_ignored_by_predict_as_by_streams(
    an: Analyzer, clip: Path, tmp_path: Path
) -> None:
    """The 8 s clip's transcript runs on to 20 s: that cue belongs to no decoded span."""
    srt = tmp_path / "long.srt"
    srt.write_text(
        "1\n00:00:01,000 --> 00:00:02,000\nhello\n\n2\n00:00:20,000 --> 00:00:21,000\nghost\n",
        encoding="utf-8",
    )
    assert _texts(an, lambda: an.predict(clip, transcript=srt)) == ["hello"]
    streamed = _texts(an, lambda: list(an.stream(clip, transcript=srt, window=4.0, hop=2.0)))
    assert streamed and "ghost" not in " ".join(streamed)
    # an explicit end beyond the clip does not reach it either; text alone has no media end
    assert _texts(an, lambda: an.predict(clip, transcript=srt, end=30.0)) == ["hello"]
    assert _texts(an, lambda: an.predict(transcript=srt)) == ["hello ghost"]


def test_text_for_span_is_the_transcript_rule() -> None:
    cues = [Cue(2.0, 2.0, "instant"), Cue(5.0, 7.0, "late")]
    assert text_for_span(cues, 2.0, 6.0) == "instant late"
    assert text_for_span(cues, 0.0, 2.0) == ""
    assert text_for_span(cues, 7.0, 9.0) == ""


def test_head_feeds_mark_absent_modalities() -> None:
    text = feature(np.ones((1, 4, 8), np.float32), np.array([[1, 1, 1, 0]]))
    vision = feature(np.ones((3, 6), np.float32))  # per-frame features get the batch axis
    assert vision[0].shape == (1, 3, 6) and vision[1].tolist() == [[1.0, 1.0, 1.0]]
    feeds = head_feeds({"text": text, "vision": vision}, ["text", "audio", "vision"], {"audio": 5})
    assert feeds["present"].tolist() == [[1.0, 0.0, 1.0]]
    assert feeds["audio"].shape == (1, 1, 5) and not feeds["audio_mask"].any()
    assert feeds["text_mask"].dtype == np.float32 and feeds["text_mask"].tolist() == [[1, 1, 1, 0]]
    only = head_feeds({"text": text}, ["text"], names=["present", "text"])
    assert list(only) == ["present", "text"]
    with pytest.raises(InputError, match="audio"):
        head_feeds({"text": text}, ["text", "audio"])
    with pytest.raises(InputError, match="shape"):
        feature(np.ones(3, np.float32))


def test_public_core_matches_predict(an: Analyzer, clip: Path) -> None:
    """encode -> score_features gives what predict_arrays gives; to_dict is the CLI record."""
    frames = [np.full((120, 160, 3), 90, np.uint8)] * 4
    encoded = an.encode_frames(frames)
    assert isinstance(encoded, EncodedFrames) and encoded.face_found is None  # centre crop
    timings: dict[str, float] = {}
    feats = an.encode(
        {
            "text": lambda: an.encode_text("i loved it"),
            "vision": lambda: feature(an.encode_frames(frames).features),
        },
        timings,
    )
    p = an.score_features(feats, timings, start=1.0, end=5.0, latency_ms=3.0)
    ref = an.predict_arrays(frames=frames, text="i loved it")
    assert p.score == pytest.approx(ref.score, abs=1e-6) and p.modalities == ref.modalities
    assert {"text", "vision", "head"} <= set(p.timings_ms)
    record = p.to_dict(digits=4)
    assert list(record)[:5] == ["start", "end", "score", "polarity", "modalities"]
    assert record["score"] == round(p.score, 4) and record["latency_ms"] == 3.0
    json.dumps(record)
    assert "start" not in ref.to_dict() and ref.to_dict()["score"] == ref.score
