"""What ``msa-run`` reads and scores: inputs expanded (folders, globs), sidecar transcripts, and
one :class:`~msa_runtime.scoring.core.Record` per input or stream window (a failed input gives
``input`` and ``error``). The Ray batch helper (:mod:`msa_runtime.cli.ray`) makes the same records;
the output formats are in :mod:`msa_runtime.cli.writers`."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from msa_runtime.cli.writers import shown
from msa_runtime.errors import InputError, MsaError
from msa_runtime.scoring.core import Prediction, Record

MEDIA_SUFFIXES = {
    ".mp4",
    ".m4v",
    ".mov",
    ".webm",
    ".mkv",
    ".avi",
    ".mpg",
    ".mpeg",
    ".ts",
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".m4a",
    ".aac",
}
SIDECARS = (".srt", ".vtt", ".txt")


def expand_inputs(inputs: tuple[str, ...]) -> list[str]:
    """Files as given, folders searched recursively for media, globs expanded. Missing paths
    stay in the list so they are reported as failed inputs."""
    out: list[str] = []
    for item in inputs:
        if item == "-" or "://" in item:
            out.append(item)
        elif os.path.isdir(item):
            found = Path(item).rglob("*")
            out.extend(sorted(str(p) for p in found if p.suffix.lower() in MEDIA_SUFFIXES))
        elif any(ch in item for ch in "*?[") and not os.path.exists(item):
            out.extend(sorted(glob.glob(item, recursive=True)) or [item])
        else:
            out.append(item)
    return out


def sidecar(path: str) -> str | None:
    """A transcript beside the media file with the same stem, if there is one."""
    for suffix in SIDECARS:
        candidate = Path(path).with_suffix(suffix)
        if candidate.is_file() and str(candidate) != path:
            return str(candidate)
    return None


def prediction_record(name: str, p: Prediction) -> Record:
    """One output record: the input's name, then :meth:`Prediction.record` (4 digits), the
    fields of :meth:`Prediction.to_dict`."""
    rec: Record = {"input": shown(name)}
    rec.update(p.record(digits=4))
    return rec


def one_line(exc: Exception) -> str:
    """The message of an error; for an unexpected one, its type and first line."""
    if isinstance(exc, MsaError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"unexpected {type(exc).__name__}: {first} (please report it)"


def score_record(
    an: Any,
    name: str,
    text: str | None = None,
    transcript: str | None = None,
    start: float = 0.0,
    end: float | None = None,
) -> Record:
    """The ``msa-run`` record of one input scored whole (with its sidecar transcript, found as
    ``msa-run`` finds it); ``start``/``end`` (a span of the file) are added to the record when
    given. Exceptions propagate: the caller turns them into failure records."""
    rec = next(score_input(an, name, text, transcript, False, 0.0, 0.0, start=start, end=end))
    if start or end is not None:  # the span leads the record; the prediction's own values win
        spanned: Record = {"input": name, "start": start, "end": end}
        rec.pop("input", None)
        spanned.update(rec)
        return spanned
    return rec


def failure_record(name: str, exc: Exception) -> Record:
    """The record of an input that failed: ``input`` and a one-line ``error``."""
    return {"input": name, "error": one_line(exc)}


def score_input(
    an: Any,
    name: str,
    text: str | None,
    transcript: str | None,
    stream: bool,
    window: float,
    hop: float,
    input_format: str | None = None,
    start: float = 0.0,
    end: float | None = None,
) -> Iterator[Record]:
    """The records of one input: one scored whole, or one per stream window (``stream``)."""
    found = None
    if transcript is None and text is None and name != "-":
        transcript = found = sidecar(name)

    def record(p: Prediction) -> Record:
        rec = prediction_record(name, p)
        if found is not None and rec.get("transcript_source") == "given":
            rec["transcript_source"] = "sidecar"
        return rec

    if stream:
        totals = {"windows": 0, "latency": 0.0, "asr": 0.0, "end": 0.0}
        windows = an.stream(
            name, text=text, transcript=transcript, window=window, hop=hop, format=input_format
        )
        for p in windows:
            totals["windows"] += 1
            totals["latency"] += p.latency_ms or 0.0
            totals["asr"] += p.timings_ms.get("asr", 0.0)
            totals["end"] = max(totals["end"], p.end or 0.0)
            yield record(p)
        if not totals["windows"]:  # an exit 0 with no output would look like success
            raise InputError(
                f"{shown(name)}: nothing to score: the stream ended before any window held audio, "
                "video or text (too short or empty); give a longer input"
            )
        stream_summary(name, totals)
    else:
        yield record(
            an.predict(name, text=text, transcript=transcript, start=start, end=end, format=input_format)
        )


def stream_summary(name: str, totals: dict[str, float]) -> None:
    """One stderr line: the stream's real-time factor (compute per second of media) and ASR's."""
    if not totals["windows"] or totals["end"] <= 0:
        return
    rtf = totals["latency"] / 1e3 / totals["end"]
    asr = f", ASR {totals['asr'] / 1e3 / totals['end']:.3f}" if totals["asr"] else ""
    click.echo(
        f"stream {shown(name)}: {totals['windows']:.0f} windows over {totals['end']:.1f} s, "
        f"{totals['latency'] / 1e3:.1f} s of compute: real-time factor {rtf:.3f}{asr}",
        err=True,
    )
