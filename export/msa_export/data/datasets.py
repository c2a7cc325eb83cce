"""Sentiment datasets for training and evaluating fusion heads.

Three on-disk forms are accepted by :func:`load_dataset`:

``mmsa``
    The MMSA toolkit layout: a folder with ``label.csv`` (columns ``video_id``, ``clip_id``,
    ``text``, ``label``, ``mode``; other columns such as ``annotation`` or ``label_T`` are
    ignored) and media at ``Raw/<video_id>/<clip_id>.mp4``. Sample ids are
    ``<video_id>_<clip_id>``.
``mosi``
    A text-only ``label.csv`` with columns ``id`` (``<video_id>_<clip_index>``), ``text``,
    ``label``, ``mode``, as in the CMU-MOSI transcripts file. Samples have no media.
``manifest``
    A plain CSV manifest with columns ``media`` (path relative to the CSV file's folder, or
    absolute; may be empty for text-only rows), ``label`` and ``split``, and optional ``id``,
    ``text``, ``start`` and ``end`` (seconds into the media file). Without an ``id`` column (or
    with an empty id) the id is the media path as written without its suffix, plus
    ``@<start>-<end>`` when a time range is given, or ``line<N>`` for rows without media.

``path`` may name the CSV file itself or a folder holding ``label.csv`` or ``manifest.csv``.
Split names are normalised to ``train``, ``dev`` and ``test`` (``valid``, ``val`` and
``validation`` mean ``dev``; ``training``/``testing`` are accepted too; case is ignored). Labels
must lie in ``[-3, 3]``.

Media files that do not exist are not an error at load time: their sample ids are listed in
:attr:`Dataset.missing_media` so that a caller can report "N clips missing" (and, e.g., train
the text path only). Every other problem raises :class:`DatasetError` with a one-line message
naming the file, the lines and the fix. Line numbers count the header as line 1.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from msa_export.data.csv_table import detect_form, read_rows, resolve_csv
from msa_export.errors import DatasetError

SPLITS: tuple[str, ...] = ("train", "dev", "test")
"""Normalised split names."""

_SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "dev": "dev",
    "valid": "dev",
    "val": "dev",
    "validation": "dev",
    "test": "test",
    "testing": "test",
}

LABEL_MIN = -3.0
LABEL_MAX = 3.0

_SHOW = 5  # how many offending rows a message lists


@dataclass(frozen=True)
class Sample:
    """One labelled utterance (clip)."""

    id: str
    text: str
    label: float
    split: str
    media: Path | None
    start: float | None
    end: float | None


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset; ``samples`` keep the order of the CSV file.

    ``form`` is ``"mmsa"``, ``"mosi"`` or ``"manifest"``; ``source`` the CSV file read;
    ``missing_media`` the ids of samples whose media file did not exist at load time.
    """

    name: str
    root: Path
    samples: tuple[Sample, ...]
    form: str = "manifest"
    source: Path | None = None
    missing_media: tuple[str, ...] = field(default=())

    def split(self, name: str) -> list[Sample]:
        """The samples of one split (``train``, ``dev``/``valid``/``val``, ``test``)."""
        key = _SPLIT_ALIASES.get(name.strip().lower())
        if key is None:
            raise DatasetError(f"unknown split name {name!r}: use one of train, dev (or valid/val), test")
        return [s for s in self.samples if s.split == key]

    @property
    def has_media(self) -> bool:
        """True if at least one sample has a media file that existed at load time."""
        missing = set(self.missing_media)
        return any(s.media is not None and s.id not in missing for s in self.samples)

    def counts(self) -> dict[str, int]:
        """Number of samples per split, e.g. ``{"train": 1281, "dev": 229, "test": 685}``."""
        return {name: sum(1 for s in self.samples if s.split == name) for name in SPLITS}

    def __len__(self) -> int:
        return len(self.samples)


def normalize_split(value: str) -> str | None:
    """The normalised split name of ``value``, or None if it is not a known split name."""
    return _SPLIT_ALIASES.get(value.strip().lower())


def _listing(items: Sequence[str], total: int | None = None) -> str:
    total = len(items) if total is None else total
    shown = ", ".join(items[:_SHOW])
    return shown + (f", ... ({total - _SHOW} more)" if total > _SHOW else "")


def _parse_float(value: str) -> float | None:
    """A finite float, or None if ``value`` is not one."""
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _dataset_name(csv_path: Path) -> str:
    if csv_path.stem.lower() in {"label", "labels", "manifest"}:
        return csv_path.resolve().parent.name or csv_path.stem
    return csv_path.stem


class _Clip(NamedTuple):
    """Where a row's clip is: its id, media file and time range."""

    id: str
    media: Path | None
    start: float | None
    end: float | None


@dataclass
class _RowProblems:
    """Problems found row by row. They are collected over the whole file and raised after it,
    so that one message lists every offending line of a kind rather than only the first."""

    bad_labels: list[str] = field(default_factory=list)
    out_of_range: list[str] = field(default_factory=list)
    bad_times: list[str] = field(default_factory=list)
    empty_ids: list[int] = field(default_factory=list)
    unknown_splits: dict[str, int] = field(default_factory=dict)

    def raise_any(self, csv_path: Path, split_column: str) -> None:
        """Raise :class:`DatasetError` for the first kind of problem found, if any."""
        if self.bad_labels:
            raise DatasetError(
                f"{csv_path}: {len(self.bad_labels)} label(s) are not numbers: {_listing(self.bad_labels)}; "
                "write each label as a number such as -1.4"
            )
        if self.bad_times:
            raise DatasetError(
                f"{csv_path}: {len(self.bad_times)} bad start/end time(s): {_listing(self.bad_times)}; "
                "give times as non-negative seconds with end > start, or leave both empty"
            )
        if self.out_of_range:
            raise DatasetError(
                f"{csv_path}: {len(self.out_of_range)} label(s) outside [-3, 3]: "
                f"{_listing(self.out_of_range)}; rescale labels to the MOSI/MOSEI range [-3, 3]"
            )
        if self.unknown_splits:
            shown = [f"{v!r} (line {ln})" for v, ln in self.unknown_splits.items()]
            raise DatasetError(
                f"{csv_path}: unknown {split_column} value(s) {_listing(shown)}; "
                "use train, dev (or valid/val/validation) or test"
            )
        if self.empty_ids:
            raise DatasetError(
                f"{csv_path}: {len(self.empty_ids)} row(s) with an empty id: "
                f"{_listing([f'line {n}' for n in self.empty_ids])}; give every row its id"
            )


def _required_splits(require_splits: Iterable[str]) -> list[str]:
    required: list[str] = []
    for name in require_splits:
        key = normalize_split(name)
        if key is None:
            raise DatasetError(f"unknown split name {name!r} in require_splits: use train, dev or test")
        required.append(key)
    return required


def _mmsa_clip(row: dict[str, str], root: Path) -> _Clip | None:
    """The clip of an MMSA row, or None if its video or clip id is empty."""
    video_id = row["video_id"].strip()
    clip_id = row["clip_id"].strip()
    if not video_id or not clip_id:
        return None
    return _Clip(f"{video_id}_{clip_id}", root / "Raw" / video_id / f"{clip_id}.mp4", None, None)


def _mosi_clip(row: dict[str, str]) -> _Clip | None:
    """The clip of a MOSI row (no media), or None if its id is empty."""
    sample_id = row["id"].strip()
    return _Clip(sample_id, None, None, None) if sample_id else None


def _manifest_times(
    line: int, row: dict[str, str], media: Path | None, problems: _RowProblems
) -> tuple[float | None, float | None]:
    """The row's ``start`` and ``end`` (None when empty); bad ones are noted in ``problems``."""
    times: list[float | None] = []
    for col in ("start", "end"):
        raw_t = row.get(col, "").strip()
        if not raw_t:
            times.append(None)
            continue
        t = _parse_float(raw_t)
        if t is None or t < 0:
            problems.bad_times.append(f"line {line} ({col} {raw_t!r})")
        times.append(t)
    start, end = times
    if start is not None and end is not None and end <= start:
        problems.bad_times.append(f"line {line} (end {end:g} <= start {start:g})")
    if (start is not None or end is not None) and media is None:
        problems.bad_times.append(f"line {line} (start/end given without media)")
    return start, end


def _manifest_clip(line: int, row: dict[str, str], root: Path, problems: _RowProblems) -> _Clip:
    """The clip of a manifest row; without an id, one is made from the media path and times."""
    raw_media = row["media"].strip()
    media: Path | None = None
    if raw_media:
        media_path = Path(raw_media)
        media = media_path if media_path.is_absolute() else root / media_path
    start, end = _manifest_times(line, row, media, problems)
    sample_id = row.get("id", "").strip()
    if not sample_id:
        if raw_media:
            sample_id = Path(raw_media).with_suffix("").as_posix()
            if start is not None or end is not None:
                s = "" if start is None else f"{start:g}"
                e = "" if end is None else f"{end:g}"
                sample_id += f"@{s}-{e}"
        else:
            sample_id = f"line{line}"
    return _Clip(sample_id, media, start, end)


def _parse_row(
    line: int, row: dict[str, str], form: str, root: Path, split_column: str, problems: _RowProblems
) -> Sample | None:
    """The sample of one row, or None if the row has a problem (noted in ``problems``)."""
    text = row.get("text", "").strip()

    raw_label = row["label"].strip()
    label = _parse_float(raw_label)
    if label is None:
        problems.bad_labels.append(f"line {line} ({raw_label!r})")
        return None
    if not LABEL_MIN <= label <= LABEL_MAX:
        problems.out_of_range.append(f"line {line} ({raw_label})")

    raw_split = row[split_column]
    split = normalize_split(raw_split)
    if split is None:
        problems.unknown_splits.setdefault(raw_split.strip(), line)
        return None

    if form == "mmsa":
        clip = _mmsa_clip(row, root)
    elif form == "mosi":
        clip = _mosi_clip(row)
    else:
        clip = _manifest_clip(line, row, root, problems)
    if clip is None:
        problems.empty_ids.append(line)
        return None
    return Sample(clip.id, text, label, split, clip.media, clip.start, clip.end)


def _check_unique_ids(csv_path: Path, parsed: Sequence[tuple[Sample, int]]) -> None:
    first_line: dict[str, int] = {}
    duplicates: list[str] = []
    n_duplicates = 0
    for sample, line in parsed:
        if sample.id in first_line:
            n_duplicates += 1
            if len(duplicates) < _SHOW:
                duplicates.append(f"{sample.id!r} (lines {first_line[sample.id]} and {line})")
        else:
            first_line[sample.id] = line
    if n_duplicates:
        raise DatasetError(
            f"{csv_path}: {n_duplicates} duplicate id(s): {_listing(duplicates, n_duplicates)}; "
            "every clip needs a unique id (remove repeated rows)"
        )


def _check_required_splits(
    csv_path: Path, samples: Sequence[Sample], required: Sequence[str], split_column: str
) -> None:
    counts = {name: sum(1 for s in samples if s.split == name) for name in SPLITS}
    empty = [name for name in dict.fromkeys(required) if counts[name] == 0]
    if empty:
        found = ", ".join(f"{k} {v}" for k, v in counts.items())
        raise DatasetError(
            f"{csv_path}: split(s) {', '.join(empty)} have no samples (found {found}); "
            f"assign rows to every split in the {split_column} column"
        )


def load_dataset(
    path: str | os.PathLike[str],
    *,
    require_splits: Iterable[str] = SPLITS,
) -> Dataset:
    """Load a dataset in the MMSA, MOSI or manifest form (see the module doc).

    ``require_splits`` are the splits that must not be empty (default all three; pass e.g.
    ``("test",)`` for an evaluation-only manifest, or ``()`` to accept any). Raises
    :class:`DatasetError` on any problem except missing media files, which are listed in
    :attr:`Dataset.missing_media`.
    """
    required = _required_splits(require_splits)
    csv_path = resolve_csv(Path(path))
    header, rows = read_rows(csv_path)
    form = detect_form(header, csv_path)
    root = csv_path.parent
    split_column = "split" if form == "manifest" else "mode"

    problems = _RowProblems()
    parsed: list[tuple[Sample, int]] = []
    for line, row in rows:
        sample = _parse_row(line, row, form, root, split_column, problems)
        if sample is not None:
            parsed.append((sample, line))
    problems.raise_any(csv_path, split_column)
    _check_unique_ids(csv_path, parsed)
    samples = [s for s, _ in parsed]
    _check_required_splits(csv_path, samples, required, split_column)

    missing = tuple(s.id for s in samples if s.media is not None and not s.media.is_file())
    return Dataset(
        name=_dataset_name(csv_path),
        root=root,
        samples=tuple(samples),
        form=form,
        source=csv_path,
        missing_media=missing,
    )
