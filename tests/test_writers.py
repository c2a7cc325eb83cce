"""One record schema, one writer registry (``msa_runtime.cli.writers``): every format writes the
fields of ``msa_runtime.scoring.core.Record`` (csv and the table: their columns, plus the fields
their stderr note names), ``msa-run --format`` offers what is registered, unknown names list the
valid ones. No pack needed: the records come from hand-made predictions."""

from __future__ import annotations

import io
import json
import sys
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from msa_runtime.cli import writers
from msa_runtime.cli.batch_output import parquet_schema, row_key
from msa_runtime.cli.records import failure_record, prediction_record, score_record
from msa_runtime.cli.run import main
from msa_runtime.errors import InputError, MissingExtraError
from msa_runtime.scoring.core import Prediction, Record

FULL = Prediction(
    score=0.51234,
    modalities=("text", "audio", "vision"),
    gates={"text": 0.5, "audio": 0.25, "vision": 0.25},
    timings_ms={"text": 1.5, "audio": 2.25, "head": 0.5},
    start=2.0,
    end=8.0,
    latency_ms=12.5,
    notes=("face not found in 3 of 15 frames: centre crop used",),
    text="i loved it",
    transcript_source="given",
)
PLAIN = Prediction(score=-1.0, modalities=("audio",), timings_ms={"audio": 3.0})


def sample_records() -> list[Record]:
    return [
        prediction_record("clips/a.mp4", FULL),
        prediction_record("clips/b.wav", PLAIN),
        failure_record("clips/c.mp4", ValueError("boom")),
    ]


def present(rec: Mapping[str, object]) -> set[str]:
    """The fields a record holds with a value (Parquet has no 'absent', only null)."""
    return {k for k, v in rec.items() if v not in (None, "")}


def write_to_stream(fmt: str, recs: list[Record], live: bool = False) -> tuple[str, list[str]]:
    out, notes = io.StringIO(), []
    w = writers.open_writer(fmt, out, live=live, names=[r["input"] for r in recs], note=notes.append)
    for rec in recs:
        w.write(rec)
    w.close()
    return out.getvalue(), notes


def table_rows(text: str) -> list[dict[str, str]]:
    """A table read back by the header's column positions (cells may be empty)."""
    header, *lines = text.splitlines()
    names = header.split()
    starts = [header.index(n) for n in names]
    bounds = list(zip(starts, [*starts[1:], None]))
    return [{n: line[a:b].strip() for n, (a, b) in zip(names, bounds)} for line in lines]


def flat_fields(rows: list[dict[str, str]]) -> list[set[str]]:
    """The record fields each csv/table row shows (a column maps back to its field)."""
    field_of = {c.name: c.field for c in writers.COLUMNS}
    return [{field_of[k] for k, v in row.items() if v != ""} for row in rows]


def fields_written(fmt: str, recs: list[Record], tmp_path: Path) -> tuple[list[set[str]], set[str]]:
    """Per record, the fields a format wrote, and the fields it named as left out."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        w = writers.open_output(tmp_path / "out.parquet", every=2)
        for rec in recs:
            w.write(rec)
        w.close()
        rows = {r["input"]: r for r in pq.read_table(tmp_path / "out.parquet").to_pylist()}
        return [present(rows[r["input"]]) for r in recs], set()  # parts are read in name order
    text, notes = write_to_stream(fmt, recs)
    named = {f for n in notes for f in n.split("leaves out ")[1].split(":")[0].split(", ")}
    if fmt == "json":
        return [present(r) for r in json.loads(text)], named
    if fmt == "jsonl":
        return [present(json.loads(line)) for line in text.splitlines()], named
    if fmt == "csv":
        import csv

        return flat_fields(list(csv.DictReader(io.StringIO(text)))), named
    return flat_fields(table_rows(text)), named


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "table", "parquet"])
def test_every_writer_writes_the_same_fields(fmt: str, tmp_path: Path) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    recs = sample_records()
    written, named = fields_written(fmt, recs, tmp_path)
    carried = set().union(*(present(r) for r in recs))
    if fmt in ("csv", "table"):  # their columns, and one note naming every field left out
        assert (
            named
            == carried & set(writers.LEFT_OUT)
            == {
                "gates",
                "latency_ms",
                "notes",
                "text",
                "transcript_source",
            }
        )
        assert written == [present(r) - named for r in recs]
    else:
        assert named == set() and written == [present(r) for r in recs]


def test_the_schema_is_declared_once() -> None:
    fields = list(typing.get_type_hints(Record))
    assert list(FULL.to_dict(4)) == [f for f in fields if f in FULL.to_dict(4)]  # same order
    assert set(FULL.to_dict()) | {"input", "error"} == set(fields)
    assert {c.field for c in writers.COLUMNS} | set(writers.LEFT_OUT) == set(fields)
    assert [c.name for c in writers.COLUMNS] == [
        *("input", "start", "end", "score", "polarity", "modalities", "total_ms", "error")
    ]
    pytest.importorskip("pyarrow")
    assert parquet_schema().names == fields


def test_csv_and_table_say_nothing_when_nothing_is_left_out() -> None:
    recs = [prediction_record("b.wav", PLAIN), failure_record("c.mp4", ValueError("boom"))]
    for fmt in ("csv", "table"):
        text, notes = write_to_stream(fmt, recs)
        assert notes == [] and "b.wav" in text
    text, notes = write_to_stream("table", sample_records(), live=True)
    assert notes == [
        "note: table leaves out gates, latency_ms, notes, text, transcript_source: "
        "--format json or jsonl keeps every field"
    ]
    assert [r["total_ms"] for r in table_rows(text)] == ["4.2", "3.0", ""]


def test_a_writer_closes_once() -> None:
    text, _ = write_to_stream("json", sample_records())
    out = io.StringIO()
    w = writers.open_writer("json", out)
    w.write(sample_records()[0])
    w.close()
    w.close()
    assert len(json.loads(out.getvalue())) == 1 and len(json.loads(text)) == 3  # one array


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, type[writers.Writer]]]:
    """A copy of the registry for one test: formats registered in it vanish afterwards."""
    copy = dict(writers.WRITERS)
    monkeypatch.setattr(writers, "WRITERS", copy)
    yield copy


def test_a_registered_format_is_offered_by_msa_run(registry: dict[str, Any], tmp_path: Path) -> None:
    @writers.register_writer
    class TsvWriter(writers.FlatWriter):
        name = "tsv"

        def _write(self, rec: Record) -> None:
            self.out.write("\t".join(str(v) for v in self.flat(rec).values()) + "\n")

    assert registry["tsv"] is TsvWriter and "tsv" in writers.stdout_formats()
    help_text = CliRunner().invoke(main, ["--help"]).stdout
    assert "table|json|jsonl|csv|tsv" in help_text
    missing = tmp_path / "no-pack"
    res = CliRunner().invoke(main, ["--pack", str(missing), "--text", "hi", "--format", "tsv"])
    assert res.exit_code == 2 and "--format" not in res.output, res.output  # past the choice check
    out = io.StringIO()
    w = writers.open_writer("tsv", out)
    w.write(sample_records()[1])
    w.close()
    assert out.getvalue().startswith("clips/b.wav\t-1.0\tnegative\taudio\t3.0")
    with pytest.raises(ValueError, match="already registered"):

        @writers.register_writer
        class Other(writers.JsonWriter):
            name = "tsv"


def test_an_unknown_format_lists_the_valid_ones(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["--pack", str(tmp_path), "--text", "hi", "--format", "xml"])
    assert res.exit_code == 2
    assert all(f"'{f}'" in res.output for f in ("table", "json", "jsonl", "csv")), res.output
    assert "'parquet'" not in res.output  # a folder, not standard output: --ray --out
    with pytest.raises(InputError, match="'xml': choose one of table, json, jsonl, csv, parquet"):
        writers.writer_class("xml")
    with pytest.raises(InputError, match="--ray --out"):
        writers.open_writer("parquet", io.StringIO())
    with pytest.raises(InputError, match=r"name it \*\.jsonl \(a file\) or \*\.parquet \(a folder"):
        writers.open_output(tmp_path / "scores.txt", 256)


def test_parquet_without_pyarrow_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` fails as if not installed
    with pytest.raises(MissingExtraError, match=r"pyarrow.*msa-edge\[ray\]"):
        writers.open_output(tmp_path / "s.parquet", 256)


def test_jsonl_file_is_flushed_per_record_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "s.jsonl"
    w = writers.open_output(path, 256)
    assert w.done() == set()
    first, _, failed = sample_records()
    w.write(first)
    assert json.loads(path.read_text()) == first  # on disk before close
    w.write(failed)
    w.close()
    with open(path, "a") as f:
        f.write('{"input": "half')  # a killed run
    assert writers.open_output(path, 256).done() == {row_key(first)}
    assert path.read_text().endswith("}\n")


def test_parquet_parts_are_atomic_and_resume(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "s.parquet"
    w = writers.open_output(path, 2)
    first, plain, failed = sample_records()
    w.write(first)
    assert not path.exists()  # nothing until a part is full
    w.write(failed)
    assert len(list(path.glob("part-*.parquet"))) == 1
    w.write(plain)
    w.close()
    assert len(list(path.glob("part-*.parquet"))) == 2 and not list(path.glob(".*.tmp"))
    assert writers.open_output(path, 2).done() == {row_key(first), row_key(plain)}


def test_score_record_puts_the_span_first() -> None:
    class Stub:
        def predict(self, name: str, **kwargs: Any) -> Prediction:
            return PLAIN

    rec = score_record(Stub(), "x.wav", text="hi", start=1.0, end=2.0)
    assert list(rec)[:4] == ["input", "start", "end", "score"] and rec["end"] == 2.0
