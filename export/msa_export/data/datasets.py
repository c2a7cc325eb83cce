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

import csv
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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

# Files looked for, in this order, when load_dataset is given a folder.
_FOLDER_FILES: tuple[str, ...] = ("label.csv", "manifest.csv")

_FORM_COLUMNS: dict[str, tuple[str, ...]] = {
    "mmsa": ("video_id", "clip_id", "text", "label", "mode"),
    "mosi": ("id", "text", "label", "mode"),
    "manifest": ("media", "label", "split"),
}
_ACCEPTED_FORMS = (
    "accepted forms: MMSA label.csv (video_id, clip_id, text, label, mode), "
    "MOSI label.csv (id, text, label, mode), "
    "manifest (media, label, split; optional id, text, start, end)"
)
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


def _resolve_csv(path: Path) -> Path:
    if not path.exists():
        raise DatasetError(
            f"dataset path {path} does not exist: pass a folder with label.csv "
            "(MMSA or MOSI form) or manifest.csv, or the path of a CSV manifest"
        )
    if path.is_dir():
        for name in _FOLDER_FILES:
            candidate = path / name
            if candidate.is_file():
                return candidate
        raise DatasetError(
            f"dataset folder {path} has neither label.csv nor manifest.csv: pass the CSV file "
            f"itself or add one; {_ACCEPTED_FORMS}"
        )
    return path


def _detect_form(columns: Sequence[str], csv_path: Path) -> str:
    present = set(columns)
    if "media" in present:
        form = "manifest"
    elif "video_id" in present or "clip_id" in present:
        form = "mmsa"
    elif "id" in present:
        form = "mosi"
    else:
        # closest form: the one with most of its columns present
        form = max(_FORM_COLUMNS, key=lambda f: sum(c in present for c in _FORM_COLUMNS[f]))
    missing = [c for c in _FORM_COLUMNS[form] if c not in present]
    if missing:
        found = ", ".join(columns) if columns else "none"
        raise DatasetError(
            f"{csv_path} lacks column(s) {', '.join(missing)} of the {form} form "
            f"(found: {found}); {_ACCEPTED_FORMS}"
        )
    return form


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


def _read_rows(csv_path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header (lower-cased, stripped) and (line number, row) pairs of a CSV file."""
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header_row = next(reader, None)
            if header_row is None:
                raise DatasetError(
                    f"{csv_path} is empty: it needs a header row and one row per clip; {_ACCEPTED_FORMS}"
                )
            header = [h.strip().lower() for h in header_row]
            dupes = sorted({h for h in header if header.count(h) > 1 and h})
            if dupes:
                raise DatasetError(
                    f"{csv_path} has duplicate column(s) {', '.join(dupes)}: keep one column of each name"
                )
            rows: list[tuple[int, dict[str, str]]] = []
            for raw in reader:
                if not raw or all(not cell.strip() for cell in raw):
                    continue  # blank line
                line = reader.line_num
                if len(raw) > len(header):
                    raise DatasetError(
                        f"{csv_path} line {line} has {len(raw)} fields but the header has "
                        f"{len(header)}: quote fields that contain commas"
                    )
                cells = raw + [""] * (len(header) - len(raw))
                rows.append((line, dict(zip(header, cells, strict=True))))
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{csv_path} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8 CSV"
        ) from exc
    except csv.Error as exc:
        raise DatasetError(f"{csv_path} is not a valid CSV file ({exc}): fix the quoting") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read {csv_path}: {exc.strerror or exc}") from exc
    return header, rows


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
    required: list[str] = []
    for name in require_splits:
        key = normalize_split(name)
        if key is None:
            raise DatasetError(f"unknown split name {name!r} in require_splits: use train, dev or test")
        required.append(key)

    csv_path = _resolve_csv(Path(path))
    header, rows = _read_rows(csv_path)
    form = _detect_form(header, csv_path)
    root = csv_path.parent
    split_column = "split" if form == "manifest" else "mode"

    samples: list[Sample] = []
    lines: list[int] = []
    bad_labels: list[str] = []
    out_of_range: list[str] = []
    bad_times: list[str] = []
    empty_ids: list[int] = []
    unknown_splits: dict[str, int] = {}

    for line, row in rows:
        text = row.get("text", "").strip()

        raw_label = row["label"].strip()
        label = _parse_float(raw_label)
        if label is None:
            bad_labels.append(f"line {line} ({raw_label!r})")
            continue
        if not LABEL_MIN <= label <= LABEL_MAX:
            out_of_range.append(f"line {line} ({raw_label})")

        raw_split = row[split_column]
        split = normalize_split(raw_split)
        if split is None:
            unknown_splits.setdefault(raw_split.strip(), line)
            continue

        media: Path | None = None
        start: float | None = None
        end: float | None = None
        if form == "mmsa":
            video_id = row["video_id"].strip()
            clip_id = row["clip_id"].strip()
            if not video_id or not clip_id:
                empty_ids.append(line)
                continue
            sample_id = f"{video_id}_{clip_id}"
            media = root / "Raw" / video_id / f"{clip_id}.mp4"
        elif form == "mosi":
            sample_id = row["id"].strip()
            if not sample_id:
                empty_ids.append(line)
                continue
        else:
            raw_media = row["media"].strip()
            if raw_media:
                media_path = Path(raw_media)
                media = media_path if media_path.is_absolute() else root / media_path
            times: list[float | None] = []
            for col in ("start", "end"):
                raw_t = row.get(col, "").strip()
                if not raw_t:
                    times.append(None)
                    continue
                t = _parse_float(raw_t)
                if t is None or t < 0:
                    bad_times.append(f"line {line} ({col} {raw_t!r})")
                times.append(t)
            start, end = times
            if start is not None and end is not None and end <= start:
                bad_times.append(f"line {line} (end {end:g} <= start {start:g})")
            if (start is not None or end is not None) and media is None:
                bad_times.append(f"line {line} (start/end given without media)")
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

        samples.append(Sample(sample_id, text, label, split, media, start, end))
        lines.append(line)

    if bad_labels:
        raise DatasetError(
            f"{csv_path}: {len(bad_labels)} label(s) are not numbers: {_listing(bad_labels)}; "
            "write each label as a number such as -1.4"
        )
    if bad_times:
        raise DatasetError(
            f"{csv_path}: {len(bad_times)} bad start/end time(s): {_listing(bad_times)}; "
            "give times as non-negative seconds with end > start, or leave both empty"
        )
    if out_of_range:
        raise DatasetError(
            f"{csv_path}: {len(out_of_range)} label(s) outside [-3, 3]: "
            f"{_listing(out_of_range)}; rescale labels to the MOSI/MOSEI range [-3, 3]"
        )
    if unknown_splits:
        shown = [f"{v!r} (line {ln})" for v, ln in unknown_splits.items()]
        raise DatasetError(
            f"{csv_path}: unknown {split_column} value(s) {_listing(shown)}; "
            "use train, dev (or valid/val/validation) or test"
        )
    if empty_ids:
        raise DatasetError(
            f"{csv_path}: {len(empty_ids)} row(s) with an empty id: "
            f"{_listing([f'line {n}' for n in empty_ids])}; give every row its id"
        )

    first_line: dict[str, int] = {}
    duplicates: list[str] = []
    n_duplicates = 0
    for sample, line in zip(samples, lines, strict=True):
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

    counts = {name: sum(1 for s in samples if s.split == name) for name in SPLITS}
    empty = [name for name in dict.fromkeys(required) if counts[name] == 0]
    if empty:
        found = ", ".join(f"{k} {v}" for k, v in counts.items())
        raise DatasetError(
            f"{csv_path}: split(s) {', '.join(empty)} have no samples (found {found}); "
            f"assign rows to every split in the {split_column} column"
        )

    missing = tuple(s.id for s in samples if s.media is not None and not s.media.is_file())
    return Dataset(
        name=_dataset_name(csv_path),
        root=root,
        samples=tuple(samples),
        form=form,
        source=csv_path,
        missing_media=missing,
    )
