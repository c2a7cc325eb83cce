"""Property-based fuzzing (hypothesis, issue 12): the transcript parsers, standard-input sniffing
and the stream/window/span/sample-rate/text arguments may only ever raise :class:`MsaError`
subclasses, and what they accept comes out well-formed.

Bounded for the default run: each property runs a fixed number of examples (``max_examples``)
with no per-example deadline; the whole module takes seconds.
"""

from __future__ import annotations

import io
import math
import numbers
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest

hypothesis = pytest.importorskip(
    "hypothesis", reason="hypothesis comes with the test extra: pip install -e '.[test]'"
)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from media_factory import make_clip  # noqa: E402

from msa_runtime import Analyzer, MsaError, checks  # noqa: E402
from msa_runtime.asr.transcript import read_transcript  # noqa: E402
from msa_runtime.media import stdin as piped_input  # noqa: E402

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Characters a hostile transcript holds: digits and timing punctuation, tags, entities,
#: controls, zero-width and bidi characters, lone surrogates, line breaks of every kind.
_NASTY = st.one_of(
    st.sampled_from(list("0123456789:,.-> <>{}\\/&;#WEBVTTNOTE\t\r\n")),
    st.sampled_from(["\x00", "\x07", "\x1b", "\u200b", "\u200d", "\ufeff", "\u202e", "\xa0", "\u2028"]),
    st.characters(),
)
_TIME = st.tuples(st.integers(0, 120), st.integers(0, 99), st.integers(0, 99), st.integers(0, 9999)).map(
    lambda t: f"{t[0]:02d}:{t[1]:02d}:{t[2]:02d},{t[3]:03d}"
)


@st.composite
def _subtitles(draw: Any) -> bytes:
    """Subtitle-like files: blocks of (index, timing, text) that are mostly right, sometimes
    wrong, in a random encoding; or arbitrary bytes."""
    if draw(st.booleans()) and draw(st.booleans()):
        return bytes(draw(st.binary(max_size=300)))
    blocks = []
    if draw(st.booleans()):
        blocks.append("WEBVTT" + draw(st.sampled_from(["", " - title", "X"])))
    for i in range(draw(st.integers(0, 5))):
        timing = f"{draw(_TIME)} --> {draw(_TIME)}"
        if draw(st.integers(0, 4)) == 0:
            timing = draw(st.text(_NASTY, max_size=30))
        text = draw(st.text(_NASTY, max_size=40))
        blocks.append("\n".join(x for x in [str(i + 1) if draw(st.booleans()) else "", timing, text] if x))
    body = draw(st.sampled_from(["\n\n", "\r\n\r\n", "\n", "\r\r"])).join(blocks)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    return body.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("fuzz-clip") / "c.mkv", duration=2.0)


@FAST
@given(data=_subtitles(), suffix=st.sampled_from([".srt", ".vtt", ".txt", ".SRT"]))
def test_transcript_parsers_raise_only_text_errors(scratch: Path, data: bytes, suffix: str) -> None:
    path = scratch / f"t{suffix}"
    path.write_bytes(data)
    try:
        cues = read_transcript(path)
    except MsaError:
        return
    assert [c.start for c in cues] == sorted(c.start for c in cues)
    for cue in cues:
        assert 0 <= cue.start <= cue.end and checks.visible(cue.text)
        cue.text.encode("utf-8")  # valid Unicode: no lone surrogates reach the tokenizer


_MAGIC = st.sampled_from(
    [b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"\x1a\x45\xdf\xa3", b"OggS", b"fLaC", b"ID3", b"\xff\xfb\x90",
     b"\x00\x00\x00\x18ftypmp42", b"\xff\xf1", b"FORM\x00\x00\x00\x00AIFF", b".snd", b"#!AMR\n", b"FLV"]
)  # fmt: skip


@FAST
@given(magic=_MAGIC, tail=st.binary(max_size=700))
def test_stdin_sniffing_raises_only_media_errors(magic: bytes, tail: bytes) -> None:
    data = magic + tail
    try:
        piped = piped_input.open_stdin(io.BytesIO(data))
    except MsaError:
        assert not data or piped_input.sniff(data[: piped_input.HEAD]) is None
        return
    try:
        assert piped.kind == piped_input.sniff(data[: piped_input.HEAD])
        read = piped.file.read() if piped.file else Path(piped.path or "").read_bytes()
        assert read == data  # nothing lost or reordered between the sniffed head and the rest
    finally:
        piped.close()


@SLOW
@given(magic=_MAGIC.filter(bool), tail=st.binary(min_size=1, max_size=2000))
def test_garbage_containers_on_stdin_stream_into_media_errors(
    an: Analyzer, magic: bytes, tail: bytes
) -> None:
    with mock.patch.object(sys, "stdin", io.TextIOWrapper(io.BytesIO(magic + tail))):
        try:
            for _ in zip(range(5), an.stream("-", window=1.0, hop=1.0)):
                pass
        except MsaError:
            pass


_ANY = st.one_of(
    st.floats(),
    st.integers(-(10**6), 10**6),
    st.none(),
    st.booleans(),
    st.text(max_size=4),
    st.just(complex(1, 1)),
    st.just([1.0]),
    st.just(np.float32(3.0)),
)


@FAST
@given(window=_ANY, hop=_ANY)
def test_stream_window_arguments(an: Analyzer, clip: Path, window: Any, hop: Any) -> None:
    try:
        windows = an.stream(clip, window=window, hop=hop)
    except MsaError:
        return
    windows.close()  # accepted: finite and positive, at least one frame long
    w, h = float(window), float(hop)
    assert math.isfinite(w) and math.isfinite(h) and w >= 1 / 3 and h >= checks.MIN_HOP


@FAST
@given(start=_ANY, end=_ANY, text=st.one_of(st.text(st.characters(), max_size=12), st.binary(max_size=4)))
def test_predict_span_and_text_arguments(an: Analyzer, start: Any, end: Any, text: Any) -> None:
    try:
        p = an.predict(text=text, start=start, end=end)
    except MsaError:
        return
    assert -3.5 < p.score < 3.5 and checks.visible(text)


@settings(max_examples=12, deadline=None)
@given(rate=st.one_of(_ANY, st.integers(8000, 48000)), n=st.integers(0, 3200))
def test_predict_arrays_sample_rate(an: Analyzer, rate: Any, n: int) -> None:
    audio = np.sin(np.arange(n, dtype=np.float32) / 3)
    if isinstance(rate, numbers.Real) and not isinstance(rate, bool) and not 8000 <= rate <= 48000:
        # A tiny rate upsamples a few samples into hours of audio (numpy scalars too: 3.0 Hz
        # made 17 M samples and an out-of-memory kill): range bounds have their own tests.
        rate = -abs(float(rate))
    try:
        p = an.predict_arrays(audio=audio, sample_rate=rate, text="ok")
    except MsaError:
        return
    assert math.isfinite(p.score)


@FAST
@given(value=st.one_of(_ANY, st.floats(1, 1e6)))
def test_sample_rate_check(value: Any) -> None:
    try:
        rate = checks.sample_rate("sample_rate", value)
    except MsaError:
        return
    assert isinstance(rate, int) and rate > 0 and rate == value
