"""Transcripts: plain text, SubRip (.srt) and WebVTT (.vtt) files as timed cues.

A ``.txt`` transcript is one cue covering the whole clip (0 to infinity). Subtitle files give
timed cues; formatting tags (``<i>``, ``<v Speaker>``, ``{\\an8}``), VTT cue settings and
entities are removed, and the lines of a cue are joined with a space.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from msa_runtime.checks import visible
from msa_runtime.errors import TextError
from msa_runtime.limits import MAX_TRANSCRIPT_BYTES, read_bounded

SUFFIXES = (".txt", ".srt", ".vtt")

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s+.*)?$")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")


@dataclass(frozen=True)
class Cue:
    """Text spoken from ``start`` to ``end`` (seconds; ``end`` may be ``math.inf``)."""

    start: float
    end: float
    text: str


def _decode(path: Path, data: bytes) -> str:
    """Decode UTF-8 (with or without BOM) or UTF-16 with a BOM; anything else is an error."""
    not_utf8 = TextError(f"{path} is not UTF-8 text: re-save it as UTF-8")
    try:
        if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
            raise not_utf8  # UTF-32
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise not_utf8 from exc
    if "\x00" in text:
        raise nul_error(path, text)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def nul_error(path: object, text: str) -> TextError:
    """The error for decoded text holding NUL: valid UTF-8, but UTF-16 without a byte-order mark
    when NUL is every other character, else a stray NUL byte whose line is named."""
    if text.count("\x00") * 4 >= len(text):
        return TextError(
            f"{path} is not UTF-8 text: re-save it as UTF-8 (it looks like UTF-16 without a byte-order mark)"
        )
    line = text[: text.index("\x00")].count("\n") + 1
    return TextError(f"{path} line {line} holds a NUL byte (\\x00), which text has no use for: remove it")


def _clean(text: str) -> str:
    return " ".join(html.unescape(_TAG.sub("", text)).split())


def _seconds(hours: str | None, minutes: str, seconds: str, millis: str | None) -> float:
    frac = int(millis.ljust(3, "0")) / 1000 if millis else 0.0
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + frac


def _blocks(text: str) -> Iterable[tuple[int, list[str]]]:
    """Blank-line separated blocks with the 1-based line number of their first line."""
    lines: list[str] = []
    first = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            if not lines:
                first = number
            lines.append(line)
        elif lines:
            yield first, lines
            lines = []
    if lines:
        yield first, lines


def _parse_timed(path: Path, text: str, vtt: bool) -> list[Cue]:
    cues: list[Cue] = []
    kind = "WebVTT" if vtt else "SubRip"
    example = "00:00:01.000 --> 00:00:02.500" if vtt else "00:00:01,000 --> 00:00:02,500"
    blocks = iter(_blocks(text))
    if vtt:
        header = next(blocks, None)
        if header is None or not re.match(r"^WEBVTT(?:[ \t].*)?$", header[1][0]):
            raise TextError(f"{path} is not a WebVTT file: its first line must be WEBVTT")
    for first, lines in blocks:
        if vtt and re.match(r"^(NOTE|STYLE|REGION)(?:\s|$)", lines[0]):
            continue
        timing = next((i for i, line in enumerate(lines[:2]) if "-->" in line), None)
        if timing is None:
            if cues:  # a blank line inside a cue's text: continue the previous cue
                last = cues[-1]
                cues[-1] = Cue(last.start, last.end, _clean(last.text + " " + " ".join(lines)))
                continue
            raise TextError(
                f"{path} line {first}: expected a {kind} timing line like {example}: fix the file"
            )
        match = _TIMING.match(lines[timing])
        if match is None:
            raise TextError(
                f"{path} line {first + timing}: bad {kind} timing {lines[timing].strip()!r}, "
                f"expected like {example}: fix the file"
            )
        g = match.groups()
        start, end = _seconds(*g[:4]), _seconds(*g[4:])
        if end < start:
            raise TextError(
                f"{path} line {first + timing}: cue ends ({end:.3f} s) before it starts "
                f"({start:.3f} s): fix the timing"
            )
        cue_text = _clean(" ".join(lines[timing + 1 :]))
        if visible(cue_text):  # a cue of only control or zero-width characters says nothing
            cues.append(Cue(start, end, cue_text))
    cues.sort(key=lambda cue: cue.start)
    return cues


def read_transcript(path: str | os.PathLike[str]) -> list[Cue]:
    """Read a ``.txt``, ``.srt`` or ``.vtt`` transcript as a list of cues sorted by start.

    A ``.txt`` file gives one cue from 0 to infinity with its whitespace normalised (no cue
    if it is empty). Cues whose text has no visible character (only control or zero-width
    characters) are dropped. Raises :class:`TextError` for a missing file, an unknown extension, text
    that is not UTF-8/UTF-16, a malformed subtitle file, or anything but a regular file of at most
    :data:`~msa_runtime.limits.MAX_TRANSCRIPT_BYTES` (checked before it is read).
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in SUFFIXES:
        raise TextError(
            f"{file}: unknown transcript type {suffix or '(no extension)'!r}: use one of {' '.join(SUFFIXES)}"
        )
    try:
        data = read_bounded(
            file,
            MAX_TRANSCRIPT_BYTES,
            label=f"transcript {file}",
            error=TextError,
            fix=f"give a {suffix} file of at most {MAX_TRANSCRIPT_BYTES >> 20} MB",
        )
    except FileNotFoundError as exc:
        raise TextError(f"{file}: no such file: check the path") from exc
    except OSError as exc:
        raise TextError(f"{file} cannot be read ({exc.strerror}): check the file") from exc
    text = _decode(file, data)
    if suffix == ".txt":
        words = " ".join(text.split())
        return [Cue(0.0, math.inf, words)] if visible(words) else []
    return _parse_timed(file, text, vtt=suffix == ".vtt")


def text_between(cues: Iterable[Cue], start: float, end: float) -> str:
    """The text of the cues overlapping [start, end), in order, joined with spaces.

    A cue overlaps if it starts before ``end`` and ends after ``start``; an instantaneous cue
    (start == end) counts if it lies inside the window.
    """
    parts = []
    for cue in cues:
        if cue.start == cue.end:
            inside = start <= cue.start < end
        else:
            inside = cue.start < end and cue.end > start
        if inside and cue.text:
            parts.append(cue.text)
    return " ".join(parts)
