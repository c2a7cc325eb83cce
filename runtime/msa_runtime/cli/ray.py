"""Score an archive with Ray Data: an actor pool, each actor loading the pack once (extra
``msa-edge[ray]``; ``msa-run --ray``).

::

    from msa_runtime.cli.ray import score_archive

    summary = score_archive(["clips/", "more/*.mp4", "manifest.csv"], "packs/edge", "scores.parquet")
    print(summary.scored, summary.failed, summary.skipped)

- **Inputs**: files, folders (searched for media), globs, and manifest CSVs: one row per clip
  with a ``media`` column (``input`` or ``path`` also accepted; relative paths are relative to
  the CSV) and optional ``text``, ``transcript``, ``start`` and ``end`` columns (a span of the
  file: MOSEI-style manifests list several clips per file).
- **Records**: the ones ``msa-run`` prints (:func:`msa_runtime.cli.records.score_record`, built on
  :meth:`msa_runtime.Prediction.to_dict`), with ``start``/``end`` for a span; an input that fails
  gives ``{"input", "error"}`` (:func:`msa_runtime.cli.records.failure_record`) and the rest go on.
- **Output**: ``*.jsonl`` (one record per line, appended and flushed as records arrive) or
  ``*.parquet`` (a folder of part files, each written atomically every ``flush_every`` records;
  ``pandas.read_parquet(folder)`` reads it; schema :func:`msa_runtime.cli.batch_output.parquet_schema`,
  derived from :class:`msa_runtime.scoring.core.Record`). Both are writers of the registry in
  :mod:`msa_runtime.cli.writers`, which ``msa-run --format`` uses too.
- **Resumable**: inputs (with their span) that already have a scored record in the output are
  skipped; failed ones are tried again. A killed run loses at most the records not yet flushed.
- **Cluster**: ``address=None`` starts a single-node Ray on 127.0.0.1 for this call
  (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, no dashboard; Ray binds the loopback address only)
  and stops it after; ``"auto"`` or ``"HOST:PORT"`` joins a running cluster.

Only this module imports ``ray`` (and pyarrow, which Ray Data brings).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msa_runtime.cli.batch_output import row_key
from msa_runtime.cli.ray_connect import connect as _connect
from msa_runtime.cli.ray_connect import parse_address
from msa_runtime.cli.writers import open_output
from msa_runtime.errors import InputError, MissingExtraError, MsaError
from msa_runtime.scoring.core import Record

EXTRA = "pip install 'msa-edge[ray]'"
FIELDS = ("media", "input", "path")
"""Column names a manifest CSV may give the media file in (the first present is used)."""

Row = dict[str, Any]


def import_ray() -> Any:
    """``ray`` with Ray Data, or :class:`MissingExtraError` naming the extra. Before the first
    import, a local node is kept on the loopback address (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``:
    otherwise Ray rewrites 127.0.0.1 to the machine's interface address)."""
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(f"scoring with Ray needs Ray Data ({exc.name} is missing): {EXTRA}") from exc
    return ray


@dataclass(frozen=True)
class ArchiveSummary:
    """What :func:`score_archive` did: inputs found, skipped (already in the output), scored,
    failed, the output path and the wall time."""

    total: int
    skipped: int
    scored: int
    failed: int
    output: Path
    seconds: float


def collect_inputs(inputs: Sequence[str]) -> list[Row]:
    """Rows ``{input, text, transcript, start, end}`` from files, folders, globs and manifest
    CSVs (see the module)."""
    from msa_runtime.cli.records import expand_inputs

    rows: list[Row] = []
    plain: list[str] = []
    for item in inputs:
        if item.lower().endswith(".csv") and os.path.isfile(item):
            rows.extend(_manifest_rows(Path(item)))
        else:
            plain.append(item)
    for name in expand_inputs(tuple(plain)):
        rows.append({"input": name, "text": None, "transcript": None, "start": None, "end": None})
    return rows


def _manifest_rows(path: Path) -> Iterator[Row]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            field = next((c for c in FIELDS if c in (reader.fieldnames or [])), None)
            if field is None:
                raise InputError(
                    f"{path}: a manifest CSV needs a 'media' column (the clip's file), "
                    f"got columns {reader.fieldnames}"
                )
            for line, rec in enumerate(reader, 2):
                media = (rec.get(field) or "").strip()
                if not media:
                    raise InputError(f"{path}, line {line}: empty '{field}'")
                full = media if os.path.isabs(media) or "://" in media else str(path.parent / media)
                yield {
                    "input": full,
                    "text": (rec.get("text") or None),
                    "transcript": _relative(path, rec.get("transcript")),
                    "start": _number(path, line, "start", rec.get("start")),
                    "end": _number(path, line, "end", rec.get("end")),
                }
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read the manifest CSV ({exc})") from exc


def _relative(csv_path: Path, value: str | None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    return value if os.path.isabs(value) else str(csv_path.parent / value)


def _number(path: Path, line: int, column: str, value: str | None) -> float | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        x = float(value)
    except ValueError:
        raise InputError(f"{path}, line {line}: {column} must be seconds, got {value!r}") from None
    if not x >= 0 or x == float("inf"):
        raise InputError(f"{path}, line {line}: {column} must be seconds >= 0, got {value!r}")
    return x


class Scorer:
    """The Ray Data actor: builds an :class:`~msa_runtime.Analyzer` once, then scores batches
    of rows into ``msa-run`` records (JSON strings, so blocks keep one simple schema)."""

    def __init__(self, pack: str, options: dict[str, Any]) -> None:
        import warnings

        from msa_runtime.analyzer import Analyzer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. an untrained head: the record's notes say so
            self.an = Analyzer(pack, **options)
        self.an.warm_up()  # OpenVINO's one-time setup before the first batch

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from msa_runtime.cli.records import failure_record, score_record

        out: list[str] = []
        for i, name in enumerate(batch["input"]):
            row = {k: _plain(batch[k][i]) for k in batch}
            try:
                rec = score_record(
                    self.an,
                    str(name),
                    row.get("text"),
                    row.get("transcript"),
                    row.get("start") or 0.0,
                    row.get("end"),
                )
            except Exception as exc:  # one bad input becomes a failure record; the batch goes on
                rec = failure_record(str(name), exc)
                if row.get("start") is not None or row.get("end") is not None:
                    rec["start"], rec["end"] = row.get("start") or 0.0, row.get("end")
            out.append(json.dumps(rec))
        return {"input": list(batch["input"]), "record": out}


def _plain(x: Any) -> Any:
    """A numpy scalar from a batch as a Python value (NaN and None as None)."""
    if x is None:
        return None
    if hasattr(x, "item"):
        x = x.item()
    if (isinstance(x, float) and x != x) or x == "":
        return None
    return x


def score_archive(
    inputs: Sequence[str],
    pack: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    address: str | None = None,
    actors: int | None = None,
    text: str | None = None,
    providers: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    long_window: float | None = None,
    flush_every: int = 256,
    progress: Callable[[str], None] | None = None,
    num_cpus: int | None = None,
    timeout: float | None = None,
) -> ArchiveSummary:
    """Score ``inputs`` with ``pack`` on Ray Data and write the records to ``output`` (see the
    module). ``actors``: actor pool size (default: the cluster's CPUs, at most the inputs; each
    actor reserves one CPU and runs its sessions with ``threads``, default 1). ``text`` is used
    for inputs without their own. ``num_cpus`` caps a local node's CPUs. ``progress`` gets one
    line per record. ``timeout``: seconds to reach and join a cluster (default
    ``MSA_EDGE_RAY_TIMEOUT``, else 30; :mod:`msa_runtime.cli.ray_connect`)."""
    t0 = time.perf_counter()
    _check_cluster(address, actors)
    out = Path(output)
    writer = open_output(out, flush_every)
    rows = collect_inputs(inputs)
    if not rows:
        raise InputError(f"no media files found in {', '.join(inputs)}")
    for row in rows:
        row["text"] = row["text"] if row["text"] is not None or row["transcript"] else text
    done = writer.done()
    todo = [r for r in rows if row_key(r) not in done]
    skipped = len(rows) - len(todo)
    say = progress or (lambda _m: None)
    if skipped:
        say(f"resume: {skipped} of {len(rows)} inputs already in {out}: skipped")
    scored = failed = 0
    if todo:
        ray = import_ray()
        started = _connect(ray, address, num_cpus, timeout)
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            size = max(1, min(actors or cpus, len(todo)))
            options = dict(
                providers=providers, precision=precision, threads=threads or 1, long_window=long_window
            )
            ds = ray.data.from_items(_columns(todo), override_num_blocks=min(len(todo), size * 4))
            ds = ds.map_batches(
                Scorer,
                fn_constructor_args=(str(pack), options),
                batch_size=1,
                num_cpus=1,
                compute=ray.data.ActorPoolStrategy(size=size),
                batch_format="numpy",
            )
            for i, item in enumerate(ds.iter_rows(), 1):
                rec: Record = json.loads(item["record"])
                writer.write(rec)
                ok = "error" not in rec
                scored, failed = scored + ok, failed + (not ok)
                what = f"{rec['score']:+.3f}" if ok else f"error: {rec['error']}"
                say(f"[{i}/{len(todo)}] {rec['input']}  {what}  ({_eta(t0, i, len(todo))})")
        except MsaError:
            raise
        except Exception as exc:  # Ray itself failed (an actor died, the cluster went away)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise InputError(
                f"the Ray job stopped after {scored + failed} of {len(todo)} inputs ({first}); "
                f"their records are in {out}: run again to resume"
            ) from exc
        finally:
            writer.close()
            if started:
                ray.shutdown()
    writer.close()
    return ArchiveSummary(len(rows), skipped, scored, failed, out, time.perf_counter() - t0)


def _check_cluster(address: str | None, actors: int | None) -> None:
    """A malformed address or actor count fails before any work."""
    parse_address(address, "address")
    if actors is not None and (isinstance(actors, bool) or not isinstance(actors, int) or actors < 1):
        raise InputError(f"actors must be a whole number >= 1, got {actors!r}")


def _columns(rows: list[Row]) -> list[Row]:
    """Rows with one type per column for Arrow (strings stay strings, spans floats)."""
    return [
        {
            "input": r["input"],
            "text": r["text"] or "",
            "transcript": r["transcript"] or "",
            "start": float("nan") if r["start"] is None else float(r["start"]),
            "end": float("nan") if r["end"] is None else float(r["end"]),
        }
        for r in rows
    ]


def _eta(t0: float, done: int, total: int) -> str:
    spent = time.perf_counter() - t0
    return f"{spent:.0f} s, ETA {spent / done * (total - done):.0f} s"


def run_cli(
    inputs: tuple[str, ...],
    pack: str,
    address: str | None,
    out: str | None,
    actors: int | None,
    text: str | None,
    providers: str | None,
    precision: str | None,
    threads: int | None,
    long_window: float | None,
    timeout: float | None = None,
) -> None:
    """``msa-run --ray``: the inputs scored on Ray Data into ``--out`` (see the module); exit 1
    when an input failed, 2 on an error that stopped the run."""
    import click

    address = address or "local"
    if address != "local" and (os.path.exists(address) or any(c in address for c in "*?[")):
        inputs, address = (address, *inputs), "local"  # `--ray clips/`: the value was an input
    if out is None:
        raise click.UsageError("--ray needs --out FILE.jsonl or --out FOLDER.parquet")
    if not inputs:
        raise click.UsageError("--ray needs INPUT files, folders, globs or manifest CSVs")
    try:
        parse_address(address, "--ray")  # named as typed, before anything is read or started
        summary = score_archive(
            inputs,
            pack,
            out,
            address=address,
            actors=actors,
            text=text,
            providers=providers,
            precision=precision,
            threads=threads,
            long_window=long_window,
            progress=lambda m: click.echo(m, err=True),
            timeout=timeout,
        )
    except MsaError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(
        f"ray: {summary.scored} scored, {summary.failed} failed, {summary.skipped} skipped "
        f"(already in the output) -> {summary.output} in {summary.seconds:.1f} s",
        err=True,
    )
    if summary.failed:
        sys.exit(1)


__all__ = ["ArchiveSummary", "Scorer", "collect_inputs", "import_ray", "row_key", "run_cli", "score_archive"]
