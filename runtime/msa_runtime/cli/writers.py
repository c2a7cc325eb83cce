"""The output formats of ``msa-run`` and ``--ray``, one registry for both: each format is one
:class:`Writer` subclass registered under its name with :func:`register_writer`, so adding a
format is one class here (``msa-run --format`` offers it; an unknown name lists the formats).

- ``table`` (default), ``json``, ``jsonl``, ``csv``: ``msa-run --format`` (its choices are the
  registered formats with ``to_stdout``); jsonl, csv and a ``live`` table (stream windows)
  write and flush one line per record, json and the table write at :meth:`Writer.close`.
- ``jsonl`` and ``parquet``: ``--ray --out`` (:func:`open_output`, chosen by ``suffix``); both
  tell which inputs they already hold (:meth:`Writer.done`), so a run resumes. jsonl appends
  and flushes line by line; parquet writes a folder of part files, each to a temporary name and
  renamed, every ``every`` records and at close (pyarrow: extra ``msa-edge[ray]``).

Every format writes the fields of :class:`msa_runtime.scoring.core.Record`. json, jsonl and
parquet keep all of them; **csv and the table** have one column per field marked ``Flat`` there
(``modalities`` joined with ``+``, ``timings_ms`` summed as ``total_ms``) and leave out the rest
(``gates``, ``latency_ms``, ``notes``, ``text``, ``transcript_source``): when a record carried
one of those, closing the writer prints one ``note:`` line on stderr naming them.
"""

from __future__ import annotations

import csv
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO, TypeVar

from msa_runtime.cli.batch_output import (
    Key,
    import_pyarrow,
    jsonl_compact,
    jsonl_done,
    parquet_compact,
    parquet_done,
    parquet_schema,
    record_types,
)
from msa_runtime.errors import InputError
from msa_runtime.scoring.core import Flat, Record


def shown(name: str) -> str:
    """``name`` as valid Unicode: a file name that is not UTF-8 (its bytes kept by Python as
    lone surrogates) shows its odd bytes as ``\\xNN``, so JSON, CSV and tables stay valid."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")


class OutputError(Exception):
    """Writing the results failed (a closed pipe, a full disk): not the current input's fault."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(exc.strerror or str(exc))
        self.broken_pipe = isinstance(exc, BrokenPipeError)


@dataclass(frozen=True)
class Target:
    """Where a writer writes: a text ``stream`` (``msa-run``'s standard output) or a ``path``
    (``--ray --out``). ``live``: records arrive over time (stream windows); ``names``: the
    inputs (the table sizes its first column); ``every``: records per Parquet part; ``note``:
    where one-line notes go (stderr)."""

    stream: TextIO | None = None
    path: Path | None = None
    live: bool = False
    names: Sequence[str] = ()
    every: int = 256
    note: Callable[[str], None] | None = None


class Writer:
    """One output format. ``name`` is its registry key; ``to_stdout``: ``msa-run --format``
    offers it; ``suffix`` (e.g. ``".jsonl"``): ``--out`` names ending so are this format, which
    then is ``kind`` (for messages) and implements :meth:`done`."""

    name: ClassVar[str]
    to_stdout: ClassVar[bool] = True
    suffix: ClassVar[str] = ""
    kind: ClassVar[str] = ""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.closed = False

    @property
    def out(self) -> TextIO:
        if self.target.stream is None:
            raise InputError(f"{self.name} output goes to standard output, not to a path")
        return self.target.stream

    def done(self) -> set[Key]:
        """The keys (:func:`~msa_runtime.cli.batch_output.row_key`) of the inputs the output
        already holds scored."""
        return set()

    def left_out(self) -> list[str]:
        """Record fields that records carried and this format did not write."""
        return []

    def write(self, rec: Record) -> None:
        try:
            self._write(rec)
        except OSError as exc:
            raise OutputError(exc) from exc

    def close(self) -> None:
        """Finish the output (once: closing again does nothing) and name on stderr the fields
        it left out."""
        if self.closed:
            return
        self.closed = True
        try:
            self._close()
            if self.target.stream is not None:
                self.target.stream.flush()
        except OSError as exc:
            raise OutputError(exc) from exc
        fields = self.left_out()
        if fields and self.target.note is not None:
            self.target.note(
                f"note: {self.name} leaves out {', '.join(fields)}: --format json or jsonl keeps every field"
            )

    def _write(self, rec: Record) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        """Write what was held back; release files."""


WRITERS: dict[str, type[Writer]] = {}
"""The registry: format name -> writer class, in the order formats are offered."""

W = TypeVar("W", bound=type[Writer])


def register_writer(cls: W) -> W:
    """Register ``cls`` under ``cls.name`` (a class decorator); the name must be new."""
    if cls.name in WRITERS and WRITERS[cls.name] is not cls:
        raise ValueError(f"output format {cls.name!r} is already registered ({WRITERS[cls.name].__name__})")
    WRITERS[cls.name] = cls
    return cls


def writer_class(name: str) -> type[Writer]:
    """The writer registered as ``name``; an unknown name is an error listing the formats."""
    if name not in WRITERS:
        raise InputError(f"unknown output format {name!r}: choose one of {', '.join(WRITERS)}")
    return WRITERS[name]


def stdout_formats() -> list[str]:
    """The formats ``msa-run --format`` offers, in registry order."""
    return [name for name, cls in WRITERS.items() if cls.to_stdout]


def open_writer(
    name: str,
    stream: TextIO,
    *,
    live: bool = False,
    names: Sequence[str] = (),
    note: Callable[[str], None] | None = None,
) -> Writer:
    """A writer of format ``name`` to ``stream`` (``msa-run``)."""
    cls = writer_class(name)
    if not cls.to_stdout:
        raise InputError(f"{name} output is {cls.kind}, not standard output: use it with --ray --out")
    return cls(Target(stream=stream, live=live, names=names, note=note))


def open_output(path: Path, every: int) -> Writer:
    """The writer for ``--out path``, chosen by the name's ending (``--ray``)."""
    for cls in WRITERS.values():
        if cls.suffix and path.name.lower().endswith(cls.suffix):
            return cls(Target(path=path, every=max(1, every)))
    kinds = " or ".join(f"*{cls.suffix} ({cls.kind})" for cls in WRITERS.values() if cls.suffix)
    raise InputError(f"output {path}: name it {kinds}")


@dataclass(frozen=True)
class Column:
    """A csv/table column: ``name``, the :class:`Record` ``field`` it shows and how (``cell``)."""

    name: str
    field: str
    cell: Callable[[Any], object]


def flat_view() -> tuple[tuple[Column, ...], tuple[str, ...]]:
    """The csv/table columns (the :class:`Record` fields marked :class:`Flat`, in order) and
    the fields they leave out."""
    columns: list[Column] = []
    left_out: list[str] = []
    for field, hint in record_types().items():
        flat = next((m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Flat)), None)
        if flat is None:
            left_out.append(field)
        else:
            columns.append(Column(flat.column or field, field, flat.cell))
    return tuple(columns), tuple(left_out)


COLUMNS, LEFT_OUT = flat_view()


class FlatWriter(Writer):
    """A writer of one row per record in :data:`COLUMNS`; it remembers which left-out fields
    the records carried, for the note at close."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.dropped: set[str] = set()

    def flat(self, rec: Record) -> dict[str, object]:
        values: Mapping[str, object] = rec
        self.dropped.update(f for f in LEFT_OUT if f in values)
        return {c.name: c.cell(values[c.field]) for c in COLUMNS if c.field in values}

    def left_out(self) -> list[str]:
        return [f for f in LEFT_OUT if f in self.dropped]


@register_writer
class TableWriter(FlatWriter):
    """Aligned columns: written at close, only the columns some record fills; ``live``: a row
    per record as it comes, with fixed widths (the last column, ``error``, unpadded)."""

    name = "table"
    LIVE_WIDTHS: ClassVar[dict[str, int]] = {"modalities": len("text+audio+vision ")}

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.rows: list[dict[str, object]] = []
        self.widths: dict[str, int] | None = None

    def _write(self, rec: Record) -> None:
        if self.target.live:
            self._live_row(self.flat(rec))
        else:
            self.rows.append(self.flat(rec))

    def _live_row(self, flat: dict[str, object]) -> None:
        *padded, last = [c.name for c in COLUMNS]
        if self.widths is None:
            names = [shown(n) for n in self.target.names]
            first = max([len(padded[0]), *(len(n) for n in names)])
            self.widths = {c: first if i == 0 else self.LIVE_WIDTHS.get(c, 8) for i, c in enumerate(padded)}
            self.out.write(self._line({c: c for c in [*padded, last]}, last))
        cells = {k: "" if v is None else str(v) for k, v in flat.items()}
        self.out.write(self._line(cells, last))
        self.out.flush()

    def _line(self, cells: dict[str, str], last: str) -> str:
        parts = [cells.get(c, "").ljust(w) for c, w in (self.widths or {}).items()]
        return "  ".join([*parts, cells.get(last, "")]).rstrip() + "\n"

    def _close(self) -> None:
        if not self.rows:
            return
        cols = [c.name for c in COLUMNS if any(r.get(c.name) not in (None, "") for r in self.rows)]
        cells = [[str(r.get(c, "")) for c in cols] for r in self.rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        self.out.write("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip() + "\n")
        for row in cells:
            self.out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


@register_writer
class JsonWriter(Writer):
    """One JSON array of every record, written at close."""

    name = "json"

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.rows: list[Record] = []

    def _write(self, rec: Record) -> None:
        self.rows.append(rec)

    def _close(self) -> None:
        self.out.write(json.dumps(self.rows, indent=2) + "\n")


@register_writer
class JsonlWriter(Writer):
    """One JSON record per line, flushed as it is written: to standard output, or appended to
    a file (``--out *.jsonl``) that is opened at the first record."""

    name = "jsonl"
    suffix = ".jsonl"
    kind = "a file"

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.file: TextIO | None = None

    def done(self) -> set[Key]:
        return set() if self.target.path is None else jsonl_done(self.target.path)

    def _write(self, rec: Record) -> None:
        f = self.out if self.target.path is None else self._file(self.target.path)
        f.write(json.dumps(rec) + "\n")
        f.flush()

    def _file(self, path: Path) -> TextIO:
        if self.file is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")  # closed in _close()
        return self.file

    def _close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.target.path is not None:
            jsonl_compact(self.target.path)  # retried inputs were appended: keep the last attempt


@register_writer
class CsvWriter(FlatWriter):
    """A header, then one row per record, flushed as it is written."""

    name = "csv"

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.csv: csv.DictWriter[str] | None = None

    def _write(self, rec: Record) -> None:
        if self.csv is None:
            self.csv = csv.DictWriter(self.out, fieldnames=[c.name for c in COLUMNS])
            self.csv.writeheader()
        self.csv.writerow(self.flat(rec))
        self.out.flush()


@register_writer
class ParquetWriter(Writer):
    """A folder of ``part-*.parquet`` files with the columns of
    :func:`~msa_runtime.cli.batch_output.parquet_schema`, each written to a temporary name and
    renamed every ``every`` records and at close. Needs pyarrow (``msa-edge[ray]``)."""

    name = "parquet"
    to_stdout = False
    suffix = ".parquet"
    kind = "a folder of part files"

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        if target.path is None:
            raise InputError("parquet output is a folder: name it with --out FOLDER.parquet")
        self.path = target.path
        self.pa = import_pyarrow()  # a missing extra is named before any scoring
        self.rows: list[Record] = []
        self.parts: list[str] = []  # written by this run, in order

    def done(self) -> set[Key]:
        return parquet_done(self.path)

    def _write(self, rec: Record) -> None:
        self.rows.append(rec)
        if len(self.rows) >= self.target.every:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        import pyarrow.parquet as pq

        schema = parquet_schema()
        rows: list[Mapping[str, object]] = list(self.rows)
        table = self.pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
        self.path.mkdir(parents=True, exist_ok=True)
        final = self.path / f"part-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = final.with_name(f".{final.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, final)
        self.parts.append(final.name)
        self.rows = []

    def _close(self) -> None:
        self._flush()
        parquet_compact(self.path, self.parts)  # retried inputs were written again: keep the last
