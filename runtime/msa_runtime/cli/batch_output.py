"""Where batch records go (:mod:`msa_runtime.cli.ray`): a JSONL file appended line by line, or a
folder of Parquet part files written atomically; both tell which inputs are already scored, so a
run can resume. pyarrow (brought by ``msa-edge[ray]``) is imported only for Parquet."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import IO, Any

from msa_runtime.errors import InputError

Key = tuple[str, float | None, float | None]


def row_key(rec: dict[str, Any]) -> Key:
    """What identifies an input in the output: its name and span (``start``/``end``, None when
    the whole file was scored)."""

    def num(x: Any) -> float | None:
        return None if x is None or x != x else round(float(x), 3)  # NaN (Parquet null) -> None

    start = num(rec.get("start"))
    return str(rec["input"]), None if start == 0.0 and rec.get("end") is None else start, num(rec.get("end"))


def parquet_schema() -> Any:
    """The Parquet columns: the ``msa-run`` record's keys with fixed types (maps for ``gates``
    and ``timings_ms``)."""
    import pyarrow as pa

    num = pa.map_(pa.string(), pa.float64())
    return pa.schema(
        [
            ("input", pa.string()),
            ("start", pa.float64()),
            ("end", pa.float64()),
            ("score", pa.float64()),
            ("polarity", pa.string()),
            ("modalities", pa.list_(pa.string())),
            ("gates", num),
            ("timings_ms", num),
            ("notes", pa.list_(pa.string())),
            ("text", pa.string()),
            ("transcript_source", pa.string()),
            ("error", pa.string()),
        ]
    )


class Output:
    def done(self) -> set[Key]:
        raise NotImplementedError

    def write(self, rec: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def open_output(out: Path, flush_every: int) -> Output:
    name = out.name.lower()
    if name.endswith(".jsonl"):
        return JsonlOutput(out)
    if name.endswith(".parquet"):
        return ParquetOutput(out, max(1, flush_every))
    raise InputError(f"output {out}: name it *.jsonl (a file) or *.parquet (a folder of part files)")


class JsonlOutput(Output):
    """One record per line, appended and flushed; a half-written last line (a killed run) is
    cut off before appending."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f: IO[str] | None = None

    def done(self) -> set[Key]:
        if not self.path.exists():
            return set()
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(keep)
            data = data[:keep]
        keys = set()
        for line in data.decode("utf-8", "replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "input" in rec and "error" not in rec:
                keys.add(row_key(rec))
        return keys

    def write(self, rec: dict[str, Any]) -> None:
        if self.f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.f = open(self.path, "a", encoding="utf-8")  # closed in close()
        f = self.f
        f.write(json.dumps(rec) + "\n")
        f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


class ParquetOutput(Output):
    """A folder of ``part-*.parquet`` files, each written to a temporary name and renamed."""

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every = path, every
        self.rows: list[dict[str, Any]] = []

    def done(self) -> set[Key]:
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"output {self.path} exists and is not a folder: a Parquet output is a folder")
        parts = sorted(self.path.glob("part-*.parquet")) if self.path.is_dir() else []
        if not parts:
            return set()
        import pyarrow.parquet as pq

        keys = set()
        for part in parts:
            table = pq.read_table(part, columns=["input", "start", "end", "error"])
            for rec in table.to_pylist():
                if rec["error"] is None:
                    keys.add(row_key(rec))
        return keys

    def write(self, rec: dict[str, Any]) -> None:
        self.rows.append(rec)
        if len(self.rows) >= self.every:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = parquet_schema()
        table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in self.rows], schema=schema)
        self.path.mkdir(parents=True, exist_ok=True)
        final = self.path / f"part-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = final.with_name(f".{final.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, final)
        self.rows = []

    def close(self) -> None:
        self._flush()
