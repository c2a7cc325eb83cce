"""Writing a plot: :func:`plot_records` (the library call), :func:`check_target` (``msa-run
--plot`` checks its file before scoring) and :class:`PlotTee` (``msa-run``'s writer wrapper that
keeps the records it passes on and draws them when the output closes)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from msa_runtime.atomic import atomic_write, atomic_write_text
from msa_runtime.errors import InputError, MissingExtraError, MsaError
from msa_runtime.plot.data import MAX_WINDOWS, as_record, plot_data
from msa_runtime.scoring.core import Prediction, Record

SUFFIXES = (".png", ".html")
"""The files a plot is written to: PNG (matplotlib, extra ``msa-edge[plot]``) or one
self-contained HTML file (no extra)."""


def check_target(path: str | os.PathLike[str], name: str = "path") -> Path:
    """``path`` as a :class:`~pathlib.Path` if a plot can be written there: a suffix of
    :data:`SUFFIXES`, an existing folder, matplotlib installed for ``.png``; else an
    :class:`~msa_runtime.errors.InputError` (or ``MissingExtraError``) naming ``name``."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(
            f"{name} {str(path)!r}: a plot is written as .png or .html, "
            f"not {suffix or 'a file without a suffix'!r}"
        )
    folder = target.parent
    if not folder.is_dir():
        raise InputError(f"{name} {str(path)!r}: folder {str(folder)!r} does not exist: create it first")
    if target.is_dir():
        raise InputError(f"{name} {str(path)!r} is a folder: give a file name ending in .png or .html")
    if suffix == ".png":
        from msa_runtime.plot.png import require_matplotlib

        try:
            require_matplotlib()
        except MissingExtraError as exc:
            raise MissingExtraError(f"{name} {str(path)!r}: {exc}") from exc.__cause__
    return target


def plot_records(
    records: Iterable[Mapping[str, Any] | Prediction],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Draw ``msa-run``'s records (or :class:`~msa_runtime.scoring.core.Prediction` objects) into
    ``path`` (``.png`` or ``.html``), written atomically; returns the path.

    Inputs with two or more windows (``start``/``end``: ``msa-run --stream``, ``Analyzer.stream``)
    are drawn as the score over time on the polarity band, the transcript's words where windows
    have text, and the per-modality gates (gated heads); inputs scored whole are drawn as one bar
    each. Records with an ``error`` are counted, not drawn.
    """
    target = check_target(path)
    rows = [dict(as_record(r)) for r in records]
    data = plot_data(rows)
    heading = title or f"msa-edge scores: {target.stem}"
    if target.suffix.lower() == ".html":
        from msa_runtime.plot.html import render

        atomic_write_text(target, render(data, rows, heading))
        return target
    from msa_runtime.plot.png import figure

    fig = figure(data, heading)

    def save(fh: BinaryIO) -> None:
        fig.savefig(fh, format="png", dpi=110)

    atomic_write(target, save)
    return target


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records from ``msa-run --format json`` or ``--format jsonl`` output."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read records from {str(path)!r}: {exc}") from None
    try:
        if text.lstrip().startswith("["):
            loaded = json.loads(text)
        else:
            loaded = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise InputError(f"{str(path)!r} is not msa-run's json or jsonl output: {exc}") from None
    if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
        raise InputError(f"{str(path)!r} is not msa-run's json or jsonl output: expected records (objects)")
    return loaded


class PlotTee:
    """Wraps an ``msa-run`` output writer: passes each record on, keeps a copy (at most
    :data:`~msa_runtime.plot.data.MAX_WINDOWS`), and draws them into ``path`` when closed. A
    plot that cannot be drawn is reported through ``note`` and sets :attr:`failed`; the records
    themselves were written already."""

    def __init__(self, writer: Any, path: Path, note: Callable[[str], None]) -> None:
        self.writer, self.path, self.note = writer, path, note
        self.records: list[Record] = []
        self.failed = False
        self._closed = False

    def write(self, rec: Record) -> None:
        # kept first: a stop (Ctrl-C, SIGTERM) between the two still draws what was written
        if len(self.records) < MAX_WINDOWS:
            self.records.append(rec)
        elif len(self.records) == MAX_WINDOWS:
            self.note(f"note: --plot draws the first {MAX_WINDOWS} records")
            self.records.append(rec)
        self.writer.write(rec)

    def close(self) -> None:
        self.writer.close()
        if self._closed:
            return
        self._closed = True
        try:
            plot_records(self.records[:MAX_WINDOWS], self.path)
        except MsaError as exc:
            self.failed = True
            self.note(f"error: --plot {self.path}: {exc}")
            return
        self.note(f"plot: wrote {self.path}")
