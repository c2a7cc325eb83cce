"""What ``--ray``'s outputs (:mod:`msa_runtime.cli.ray`) need beyond writing records: which
inputs an output already holds, so a run can resume (:func:`row_key`, :func:`jsonl_done`,
:func:`parquet_done`), one record per input after a resume (:func:`jsonl_compact`,
:func:`parquet_compact`), and the Parquet columns (:func:`parquet_schema`), derived from the one
record schema, :class:`msa_runtime.scoring.core.Record`. The writers themselves are in
:mod:`msa_runtime.cli.writers`. pyarrow (brought by ``msa-edge[ray]``) is imported only for
Parquet."""

from __future__ import annotations

import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msa_runtime.atomic import atomic_write_bytes
from msa_runtime.errors import InputError
from msa_runtime.scoring.core import Record

Key = tuple[str, float | None, float | None]

EXTRA = "pip install 'msa-edge[ray]'"


def row_key(rec: Mapping[str, Any]) -> Key:
    """What identifies an input in the output: its name and span (``start``/``end``, None when
    the whole file was scored)."""

    def num(x: Any) -> float | None:
        return None if x is None or x != x else round(float(x), 3)  # NaN (Parquet null) -> None

    start = num(rec.get("start"))
    return str(rec["input"]), None if start == 0.0 and rec.get("end") is None else start, num(rec.get("end"))


def record_types() -> dict[str, Any]:
    """The fields of :class:`Record`, in order, with their Python types (``Annotated`` kept)."""
    return typing.get_type_hints(Record, include_extras=True)


def import_pyarrow() -> Any:
    """``pyarrow``, or :class:`MissingExtraError` naming the extra that brings it."""
    from msa_runtime.errors import MissingExtraError

    try:
        import pyarrow
    except ImportError as exc:
        raise MissingExtraError(f"Parquet output needs pyarrow ({exc.name} is missing): {EXTRA}") from exc
    return pyarrow


def arrow_type(pa: Any, hint: Any) -> Any:
    """The Arrow type of a :class:`Record` field's Python type: ``str``, ``float``, ``X | None``
    (every column is nullable), ``list[str]`` and ``dict[str, float]`` (a map)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return arrow_type(pa, args[0])
    inner = [a for a in args if a is not type(None)]
    if origin in (types.UnionType, typing.Union) and len(inner) == 1:
        return arrow_type(pa, inner[0])
    if origin is list:
        return pa.list_(arrow_type(pa, args[0]))
    if origin is dict:
        return pa.map_(arrow_type(pa, args[0]), arrow_type(pa, args[1]))
    simple = {str: pa.string(), float: pa.float64(), int: pa.int64(), bool: pa.bool_()}
    if hint in simple:
        return simple[hint]
    raise TypeError(f"no Arrow type for a record field of type {hint!r}: add it to arrow_type")


def parquet_schema() -> Any:
    """The Parquet columns: every :class:`Record` field, in order, with its Arrow type (maps for
    ``gates`` and ``timings_ms``)."""
    pa = import_pyarrow()
    return pa.schema([(name, arrow_type(pa, hint)) for name, hint in record_types().items()])


def jsonl_done(path: Path) -> set[Key]:
    """The keys of the scored records of a JSONL file (failed ones are tried again). A
    half-written last line (a killed run) is cut off, so appending starts on a fresh line."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(keep)
        data = data[:keep]
    keys = set()
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line that is not a record (edited by hand) scores nothing
        if isinstance(rec, dict) and "input" in rec and "error" not in rec:
            keys.add(row_key(rec))
    return keys


def parquet_done(path: Path) -> set[Key]:
    """The keys of the scored records of a folder of ``part-*.parquet`` files."""
    if path.exists() and not path.is_dir():
        raise InputError(f"output {path} exists and is not a folder: a Parquet output is a folder")
    parts = sorted(path.glob("part-*.parquet")) if path.is_dir() else []
    if not parts:
        return set()
    import_pyarrow()
    import pyarrow.parquet as pq

    keys = set()
    for part in parts:
        table = pq.read_table(part, columns=["input", "start", "end", "error"])
        for rec in table.to_pylist():
            if rec["error"] is None:
                keys.add(row_key(rec))
    return keys


def _line_key(line: bytes) -> Key | None:
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return row_key(rec) if isinstance(rec, dict) and "input" in rec else None


def jsonl_compact(path: Path) -> None:
    """Keep one record per input in a JSONL output, its last attempt's: a resumed run appends
    the inputs it tries again, so a failure and its retry would both stay. Lines that are not
    records are kept; the file is rewritten atomically, and only when something is dropped."""
    if not path.is_file():
        return
    lines = path.read_bytes().splitlines(keepends=True)
    keys = [_line_key(line) for line in lines]
    last = {key: i for i, key in enumerate(keys) if key is not None}
    keep = [line for i, (line, key) in enumerate(zip(lines, keys)) if key is None or last[key] == i]
    if len(keep) < len(lines):
        atomic_write_bytes(path, b"".join(keep))


def parquet_compact(path: Path, written: list[str]) -> None:
    """Keep one record per input in a Parquet folder, the last attempt's: parts are read oldest
    first (earlier runs' by time, then ``written``, this run's part names in order) and a
    record replaces any earlier one of its input. Each part that loses rows is rewritten to a
    temporary name and renamed, or removed when none are left."""
    if not path.is_dir():
        return
    import pyarrow.parquet as pq

    order = {name: i for i, name in enumerate(written)}

    def age(part: Path) -> tuple[int, int, int, str]:
        if part.name in order:
            return 1, order[part.name], 0, part.name
        return 0, 0, part.stat().st_mtime_ns, part.name

    parts = sorted(path.glob("part-*.parquet"), key=age)
    tables = [pq.read_table(part) for part in parts]
    owner: dict[Key, tuple[int, int]] = {}
    for p, table in enumerate(tables):
        for r, rec in enumerate(table.select(["input", "start", "end"]).to_pylist()):
            owner[row_key(rec)] = (p, r)
    for p, (part, table) in enumerate(zip(parts, tables)):
        rows = table.select(["input", "start", "end"]).to_pylist()
        kept = [r for r, rec in enumerate(rows) if owner[row_key(rec)] == (p, r)]
        if len(kept) == len(rows):
            continue
        if not kept:
            part.unlink()
            continue
        tmp = part.with_name(f".{part.name}.tmp")
        pq.write_table(table.take(kept), tmp)
        os.replace(tmp, part)
