"""Tests of msa_runtime.asr.transcript: .txt, .srt and .vtt transcripts, encodings, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from msa_runtime.asr.transcript import Cue, read_transcript, text_between
from msa_runtime.errors import TextError

SRT = """1
00:00:00,500 --> 00:00:02,000
<i>Hello</i> there,
my friend.

2
00:00:02,000 --> 00:00:04,250 X1:100 X2:200 Y1:10 Y2:20
{\\an8}I <b>really</b> liked &amp; enjoyed it

3
00:01:05,000 --> 01:00:00,000
The end.
"""

VTT = """WEBVTT - a header

NOTE this is a comment
spanning two lines

STYLE
::cue { color: yellow }

intro
00:00.500 --> 00:02.000 align:start position:10%
<v Roger Bingham>Hello</v> there,
<c.loud>my</c> friend.

00:00:02.000 --> 00:00:04.250
I <00:00:02.500>really liked it
"""


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_txt_one_cue_whitespace_normalised(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "  I   really\n\tliked\r\nthis movie \n\n")
    assert read_transcript(path) == [Cue(0.0, math.inf, "I really liked this movie")]


def test_txt_empty_gives_no_cue(tmp_path: Path) -> None:
    assert read_transcript(write(tmp_path / "e.txt", " \n\n ")) == []


def test_srt_cues_tags_and_multiline(tmp_path: Path) -> None:
    cues = read_transcript(write(tmp_path / "s.srt", SRT))
    assert cues == [
        Cue(0.5, 2.0, "Hello there, my friend."),
        Cue(2.0, 4.25, "I really liked & enjoyed it"),
        Cue(65.0, 3600.0, "The end."),
    ]


def test_srt_crlf_and_uppercase_suffix(tmp_path: Path) -> None:
    cues = read_transcript(write(tmp_path / "S.SRT", SRT.replace("\n", "\r\n")))
    assert [c.text for c in cues][:1] == ["Hello there, my friend."]


def test_vtt_cues_settings_notes_styles_voice_tags(tmp_path: Path) -> None:
    cues = read_transcript(write(tmp_path / "s.vtt", VTT))
    assert cues == [
        Cue(0.5, 2.0, "Hello there, my friend."),
        Cue(2.0, 4.25, "I really liked it"),
    ]


def test_vtt_without_header_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(TextError, match="WEBVTT"):
        read_transcript(write(tmp_path / "bad.vtt", VTT.replace("WEBVTT - a header", "")))


@pytest.mark.parametrize(
    "encoding,prefix",
    [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff")],
)
def test_encodings(tmp_path: Path, encoding: str, prefix: bytes) -> None:
    text = "Ça m'a plu — très 😀\n"
    path = tmp_path / "t.txt"
    path.write_bytes(prefix + text.encode(encoding))
    assert read_transcript(path)[0].text == "Ça m'a plu — très 😀"
    srt = tmp_path / "t.srt"
    srt.write_bytes(prefix + SRT.encode(encoding))
    assert len(read_transcript(srt)) == 3


@pytest.mark.parametrize(
    "data",
    [
        "café in latin-1\n".encode("latin-1"),
        "no BOM utf-16\n".encode("utf-16-le"),
        b"\xff\xfe\x00\x00" + "utf-32\n".encode("utf-32-le"),
        bytes(range(256)),
    ],
)
def test_not_utf8(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(TextError, match=r"bad\.txt is not UTF-8 text: re-save it as UTF-8"):
        read_transcript(path)


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    path = write(tmp_path / "t.docx", "hello")
    with pytest.raises(TextError, match=r"\.docx.*\.txt \.srt \.vtt"):
        read_transcript(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TextError, match="no such file"):
        read_transcript(tmp_path / "nope.srt")


@pytest.mark.parametrize(
    "body,match",
    [
        ("1\n00:00:01,000 -> 00:00:02,000\nhi\n", r"line 1: expected a SubRip timing line"),
        ("1\n00:00:aa,000 --> 00:00:02,000\nhi\n", r"line 2: bad SubRip timing"),
        ("1\n00:00:03,000 --> 00:00:02,000\nhi\n", r"line 2: cue ends"),
    ],
)
def test_malformed_srt(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(TextError, match=match):
        read_transcript(write(tmp_path / "m.srt", body))


def test_blank_line_inside_cue_continues_it(tmp_path: Path) -> None:
    body = "1\n00:00:01,000 --> 00:00:02,000\nfirst part\n\nsecond part\n"
    assert read_transcript(write(tmp_path / "b.srt", body)) == [Cue(1.0, 2.0, "first part second part")]


def test_text_between() -> None:
    cues = [Cue(0.5, 2.0, "a"), Cue(2.0, 4.0, "b"), Cue(5.0, 5.0, "point"), Cue(6.0, 8.0, "c")]
    assert text_between(cues, 0.0, 10.0) == "a b point c"
    assert text_between(cues, 0.0, 2.0) == "a"  # [start, end): b starts at 2.0
    assert text_between(cues, 1.9, 2.1) == "a b"
    assert text_between(cues, 4.0, 5.0) == ""  # b ends at 4.0, the point cue is at 5.0
    assert text_between(cues, 4.5, 5.5) == "point"
    assert text_between(cues, 7.0, 7.5) == "c"
    assert text_between([Cue(0.0, math.inf, "all")], 100.0, 101.0) == "all"
    assert text_between([], 0.0, 1.0) == ""
