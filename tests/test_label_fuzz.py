"""Property-based tests (hypothesis) of the label-file parser (msa_export.data.datasets):
any file is a dataset or one DatasetError, and well-formed rows round-trip exactly."""

from __future__ import annotations

import csv
import io
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msa_export.data.datasets import LABEL_MAX, LABEL_MIN, SPLITS, Dataset, load_dataset
from msa_export.errors import DatasetError

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CELL = st.text(st.characters(blacklist_categories=("Cs",)), max_size=16)
HEADERS = [
    ["id", "text", "label", "mode"],
    ["video_id", "clip_id", "text", "label", "mode"],
    ["media", "label", "split", "text", "start", "end"],
]


def _load(content: bytes, name: str = "label.csv") -> Dataset | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        try:
            ds = load_dataset(path, require_splits=())
        except DatasetError as exc:
            assert str(exc).strip()  # a message, never another exception type
            return None
    _invariants(ds)
    return ds


def _invariants(ds: Dataset) -> None:
    ids = [s.id for s in ds.samples]
    assert len(ids) == len(set(ids)) and all(ids)
    for s in ds.samples:
        assert math.isfinite(s.label) and LABEL_MIN <= s.label <= LABEL_MAX
        assert s.split in SPLITS
        if s.start is not None:
            assert s.start >= 0 and (s.end is None or s.end > s.start)


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_any_bytes_are_a_dataset_or_a_dataset_error(content: bytes) -> None:
    _load(content)


@FUZZ
@given(st.sampled_from(HEADERS), st.lists(st.lists(CELL, min_size=0, max_size=7), max_size=8))
def test_fuzz_any_rows_are_a_dataset_or_a_dataset_error(header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    _load(buf.getvalue().encode("utf-8", "surrogatepass"))


ROW_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
LABEL = st.floats(min_value=LABEL_MIN, max_value=LABEL_MAX, allow_nan=False)


@FUZZ
@given(
    st.lists(
        st.tuples(ROW_TEXT, LABEL, st.sampled_from(["train", "dev", "test", "Valid", "TESTING"])), max_size=10
    )
)
def test_fuzz_well_formed_mosi_rows_round_trip(rows: list[tuple[str, float, str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", "text", "label", "mode"])
    for i, (text, label, split) in enumerate(rows):
        writer.writerow([f"vid_{i}", text, repr(label), split])
    ds = _load(buf.getvalue().encode("utf-8"))
    assert ds is not None
    assert [s.id for s in ds.samples] == [f"vid_{i}" for i in range(len(rows))]
    assert [s.text for s in ds.samples] == [t.strip() for t, _, _ in rows]
    assert [s.label for s in ds.samples] == [label for _, label, _ in rows]
    names = {"train": "train", "dev": "dev", "test": "test", "Valid": "dev", "TESTING": "test"}
    assert [s.split for s in ds.samples] == [names[s] for _, _, s in rows]
