"""Reading a dataset CSV file: find it, read its header and rows, tell which form it is in.

:func:`msa_export.data.datasets.load_dataset` turns the rows into samples; this module knows
only the file (encoding, quoting, columns), so every message here names the file and the fix.
Line numbers count the header as line 1.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from msa_export.errors import DatasetError

# Files looked for, in this order, when load_dataset is given a folder.
FOLDER_FILES: tuple[str, ...] = ("label.csv", "manifest.csv")

FORM_COLUMNS: dict[str, tuple[str, ...]] = {
    "mmsa": ("video_id", "clip_id", "text", "label", "mode"),
    "mosi": ("id", "text", "label", "mode"),
    "manifest": ("media", "label", "split"),
}
ACCEPTED_FORMS = (
    "accepted forms: MMSA label.csv (video_id, clip_id, text, label, mode), "
    "MOSI label.csv (id, text, label, mode), "
    "manifest (media, label, split; optional id, text, start, end)"
)

Rows = list[tuple[int, dict[str, str]]]
"""(line number, row keyed by lower-cased column name) pairs."""


def resolve_csv(path: Path) -> Path:
    """The CSV file ``path`` names: the file itself, or the first of :data:`FOLDER_FILES` in it."""
    if not path.exists():
        raise DatasetError(
            f"dataset path {path} does not exist: pass a folder with label.csv "
            "(MMSA or MOSI form) or manifest.csv, or the path of a CSV manifest"
        )
    if path.is_dir():
        for name in FOLDER_FILES:
            candidate = path / name
            if candidate.is_file():
                return candidate
        raise DatasetError(
            f"dataset folder {path} has neither label.csv nor manifest.csv: pass the CSV file "
            f"itself or add one; {ACCEPTED_FORMS}"
        )
    return path


def detect_form(columns: Sequence[str], csv_path: Path) -> str:
    """``"manifest"``, ``"mmsa"`` or ``"mosi"`` from the header; raises if columns are missing."""
    present = set(columns)
    if "media" in present:
        form = "manifest"
    elif "video_id" in present or "clip_id" in present:
        form = "mmsa"
    elif "id" in present:
        form = "mosi"
    else:
        # closest form: the one with most of its columns present
        form = max(FORM_COLUMNS, key=lambda f: sum(c in present for c in FORM_COLUMNS[f]))
    missing = [c for c in FORM_COLUMNS[form] if c not in present]
    if missing:
        found = ", ".join(columns) if columns else "none"
        raise DatasetError(
            f"{csv_path} lacks column(s) {', '.join(missing)} of the {form} form "
            f"(found: {found}); {ACCEPTED_FORMS}"
        )
    return form


def read_rows(csv_path: Path) -> tuple[list[str], Rows]:
    """Header (lower-cased, stripped) and (line number, row) pairs of a CSV file."""
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = _read_header(reader, csv_path)
            rows: Rows = []
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


def _read_header(reader: Iterator[list[str]], csv_path: Path) -> list[str]:
    header_row = next(reader, None)
    if header_row is None:
        raise DatasetError(
            f"{csv_path} is empty: it needs a header row and one row per clip; {ACCEPTED_FORMS}"
        )
    header = [h.strip().lower() for h in header_row]
    dupes = sorted({h for h in header if header.count(h) > 1 and h})
    if dupes:
        raise DatasetError(
            f"{csv_path} has duplicate column(s) {', '.join(dupes)}: keep one column of each name"
        )
    return header
