"""What ``msa-run`` reads and writes: inputs expanded (folders, globs), sidecar transcripts, one
record per input or stream window, and the output formats (table, json, jsonl, csv). The Ray batch
helper (:mod:`msa_runtime.cli.ray`) writes the same records."""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from msa_runtime.errors import MsaError
from msa_runtime.scoring.core import Prediction

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
COLUMNS = ("input", "start", "end", "score", "polarity", "modalities", "total_ms", "error")


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


def shown(name: str) -> str:
    """``name`` as valid Unicode: a file name that is not UTF-8 (its bytes kept by Python as
    lone surrogates) shows its odd bytes as ``\\xNN``, so JSON, CSV and tables stay valid."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")


def prediction_record(name: str, p: Prediction) -> dict[str, Any]:
    """One output record: the input's name, then :meth:`Prediction.to_dict` (4 digits)."""
    return {"input": shown(name), **p.to_dict(digits=4)}


class OutputError(Exception):
    """Writing the results failed (a closed pipe, a full disk): not the current input's fault."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(exc.strerror or str(exc))
        self.broken_pipe = isinstance(exc, BrokenPipeError)


class Writer:
    """Writes records as a table, json, jsonl or csv; jsonl and csv stream line by line, and so
    does the table when ``live`` (stream windows), with fixed column widths."""

    def __init__(
        self, fmt: str, out: io.TextIOBase | Any, live: bool = False, names: list[str] | None = None
    ) -> None:
        self.fmt, self.out, self.live = fmt, out, live
        self.rows: list[dict[str, Any]] = []
        self.csv: Any = None
        self.widths: dict[str, int] | None = None
        self.input_width = max([len("input"), *(len(shown(n)) for n in names or [])])

    def write(self, rec: dict[str, Any]) -> None:
        try:
            self._write(rec)
        except OSError as exc:
            raise OutputError(exc) from exc

    def close(self) -> None:
        try:
            self._close()
            self.out.flush()
        except OSError as exc:
            raise OutputError(exc) from exc

    def _write(self, rec: dict[str, Any]) -> None:
        if self.fmt == "table" and self.live:
            self._live_row(rec)
        elif self.fmt == "jsonl":
            self.out.write(json.dumps(rec) + "\n")
            self.out.flush()
        elif self.fmt == "csv":
            if self.csv is None:
                self.csv = csv.DictWriter(self.out, fieldnames=COLUMNS, extrasaction="ignore")
                self.csv.writeheader()
            self.csv.writerow(self._flat(rec))
            self.out.flush()
        else:
            self.rows.append(rec)

    @staticmethod
    def _flat(rec: dict[str, Any]) -> dict[str, Any]:
        flat = dict(rec)
        flat["modalities"] = "+".join(rec.get("modalities", []))
        total = round(sum(rec.get("timings_ms", {}).values()), 1)
        flat["total_ms"] = total if "score" in rec else ""
        return flat

    def _live_row(self, rec: dict[str, Any]) -> None:
        if self.widths is None:
            self.widths = {
                "input": self.input_width,
                "start": 8,
                "end": 8,
                "score": 8,
                "polarity": 8,
                "modalities": 18,
                "total_ms": 8,
            }
            self.out.write(self._line({c: c for c in [*self.widths, "error"]}))
        flat = {k: "" if v is None else str(v) for k, v in self._flat(rec).items()}
        self.out.write(self._line(flat))
        self.out.flush()

    def _line(self, cells: dict[str, str]) -> str:
        parts = [cells.get(c, "").ljust(w) for c, w in (self.widths or {}).items()]
        return "  ".join([*parts, cells.get("error", "")]).rstrip() + "\n"

    def _close(self) -> None:
        if self.fmt == "json":
            self.out.write(json.dumps(self.rows, indent=2) + "\n")
        elif self.fmt == "table" and self.rows and not self.live:
            flat = [self._flat(r) for r in self.rows]
            cols = [c for c in COLUMNS if any(r.get(c) not in (None, "") for r in flat)]
            cells = [[str(r.get(c, "")) for c in cols] for r in flat]
            widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
            self.out.write("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip() + "\n")
            for row in cells:
                self.out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


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
) -> dict[str, Any]:
    """The ``msa-run`` record of one input scored whole (with its sidecar transcript, found as
    ``msa-run`` finds it); ``start``/``end`` (a span of the file) are added to the record when
    given. Exceptions propagate: the caller turns them into failure records."""
    rec = next(score_input(an, name, text, transcript, False, 0.0, 0.0, start=start, end=end))
    if start or end is not None:
        rec = {"input": name, "start": start, "end": end, **{k: v for k, v in rec.items() if k != "input"}}
    return rec


def failure_record(name: str, exc: Exception) -> dict[str, Any]:
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
) -> Iterator[dict[str, Any]]:
    found = None
    if transcript is None and text is None and name != "-":
        transcript = found = sidecar(name)

    def record(p: Any) -> dict[str, Any]:
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
