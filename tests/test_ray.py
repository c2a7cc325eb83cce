"""Batch scoring on Ray Data (``msa_runtime.cli.ray``, ``msa-run --ray``) with a real local Ray node.

One single-node cluster per module (2 CPUs, loopback only; about 5-10 s to start), reused by
every test: each ``score_archive`` call then starts its actor pool (each actor loads the pack).
Skipped when the ``ray`` extra is not installed.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from media_factory import make_clip, make_not_media

from msa_runtime.errors import MissingExtraError


def test_missing_extra_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import msa_runtime.cli.ray as mray

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    with pytest.raises(MissingExtraError, match=r"msa-edge\[ray\]"):
        mray.import_ray()


@pytest.fixture(scope="module")
def ray_node() -> Iterator[Any]:
    from msa_runtime.cli.ray import _connect, import_ray

    try:
        ray = import_ray()
    except MissingExtraError as exc:
        pytest.skip(f"the ray extra is not installed: {exc}")
    if ray.is_initialized():
        ray.shutdown()
    assert _connect(ray, None, 2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("archive")
    folder = root / "clips"
    folder.mkdir()
    good = [
        make_clip(folder / f"c{i}.mp4", duration=1.5, tone_hz=200 + 150 * i, color=(60 * i, 90, 140))
        for i in range(3)
    ]
    (folder / "c1.txt").write_text("what a lovely film\n")  # a sidecar, as msa-run finds it
    bad = make_not_media(folder / "broken.mp4")
    manifest = root / "manifest.csv"
    manifest.write_text("media,text,start,end\nclips/c0.mp4,i hated it,0.5,1.5\n")
    return {"folder": folder, "good": good, "bad": bad, "manifest": manifest}


def _expected(tiny_pack: Path, clips: dict[str, Any]) -> dict[tuple[str, Any, Any], float]:
    """Scores from a plain Analyzer loop, as msa-run rounds them."""
    from msa_runtime import Analyzer
    from msa_runtime.cli.records import sidecar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an = Analyzer(tiny_pack, threads=1)
    out = {}
    for path in clips["good"]:
        p = an.predict(str(path), transcript=sidecar(str(path)))
        out[(str(path), None, None)] = round(p.score, 4)
    span = an.predict(str(clips["good"][0]), text="i hated it", start=0.5, end=1.5)
    out[(str(clips["folder"] / "c0.mp4"), 0.5, 1.5)] = round(span.score, 4)
    return out


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_node_listens_on_loopback_only(ray_node: Any) -> None:
    import psutil

    assert ray_node.util.get_node_ip_address() == "127.0.0.1"
    procs = [psutil.Process(), *psutil.Process().children(recursive=True)]
    listening = [
        c.laddr for p in procs for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN
    ]
    assert listening, "no listening socket found among Ray's processes"
    # gRPC binds IPv6 sockets to the IPv4-mapped loopback (::ffff:127.0.0.1): loopback too
    assert {a.ip.removeprefix("::ffff:") for a in listening} == {"127.0.0.1"}, listening


def test_scores_failures_and_resume(
    ray_node: Any, tiny_pack: Path, clips: dict[str, Any], tmp_path: Path
) -> None:
    from msa_runtime.cli.ray import row_key, score_archive

    out = tmp_path / "scores.jsonl"
    lines: list[str] = []
    inputs = [str(clips["folder"]), str(clips["manifest"])]
    first = score_archive(inputs, tiny_pack, out, progress=lines.append)
    assert (first.total, first.scored, first.failed, first.skipped) == (5, 4, 1, 0)
    assert sum(line.startswith("[") for line in lines) == 5  # one progress line per record
    recs = _records(out)
    failures = [r for r in recs if "error" in r]
    assert [r["input"] for r in failures] == [str(clips["bad"])]
    assert "not a media file" in failures[0]["error"]
    expected = _expected(tiny_pack, clips)
    got = {row_key(r): r["score"] for r in recs if "error" not in r}
    assert got.keys() == expected.keys()
    for key, score in expected.items():
        assert got[key] == pytest.approx(score, abs=2e-4), key
    sidecar = next(r for r in recs if r["input"].endswith("c1.mp4"))
    assert sidecar["transcript_source"] == "sidecar"  # the msa-run record, unchanged
    # a run killed mid-line leaves half a record: resume cuts it and skips what was scored
    with open(out, "a") as f:
        f.write('{"input": "half')
    again = score_archive(inputs, tiny_pack, out)
    assert (again.skipped, again.scored, again.failed) == (4, 0, 1)  # the failure is tried again
    recs = _records(out)  # one record per input: the retry replaced the first failure
    assert len(recs) == 5 and sum("error" in r for r in recs) == 1
    assert len({row_key(r) for r in recs}) == 5


def test_cli_parquet_output(ray_node: Any, tiny_pack: Path, clips: dict[str, Any], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from msa_runtime.cli.ray import row_key
    from msa_runtime.cli.run import main

    out = tmp_path / "scores.parquet"
    args = ["--pack", str(tiny_pack), "--ray", str(clips["folder"]), "--out", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output  # one input failed
    assert "3 scored, 1 failed, 0 skipped" in res.output
    table = pq.read_table(out).to_pylist()
    assert len(table) == 4 and sum(r["error"] is not None for r in table) == 1
    expected = _expected(tiny_pack, clips)
    for r in table:
        if r["error"] is None:
            assert r["score"] == pytest.approx(expected[row_key(r)], abs=2e-4)
            assert r["modalities"] and dict(r["gates"])
    res = CliRunner().invoke(main, args)
    assert "0 scored, 1 failed, 3 skipped" in res.output, res.output
    table = pq.read_table(out).to_pylist()  # the retry replaced the first failure
    assert len(table) == 4 and sum(r["error"] is not None for r in table) == 1


def test_bad_output_name_is_an_input_error(tiny_pack: Path, clips: dict[str, Any], tmp_path: Path) -> None:
    from msa_runtime.cli.ray import score_archive
    from msa_runtime.errors import InputError

    with pytest.raises(InputError, match=r"\*\.jsonl"):
        score_archive([str(clips["folder"])], tiny_pack, tmp_path / "scores.txt")
    bad_csv = tmp_path / "m.csv"
    bad_csv.write_text("file,text\nx.mp4,hi\n")
    with pytest.raises(InputError, match="'media' column"):
        score_archive([str(bad_csv)], tiny_pack, tmp_path / "s.jsonl")
