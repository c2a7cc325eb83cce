"""Plots of records (msa_runtime.plot, msa-run --plot): what is drawn equals what was scored, the
PNG is a real PNG, the HTML is one self-contained file, and a missing extra names itself."""

from __future__ import annotations

import json
import math
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from msa_runtime.errors import InputError
from msa_runtime.plot import figure, plot_data, plot_records, read_records
from msa_runtime.plot.data import MAX_TIMELINES, new_words

CUES = [(0, 10, "what a wonderful bright day"), (10, 20, "then it went badly wrong"), (20, 30, "fine again")]


def windows(
    name: str = "talk.mp4", n: int = 13, window: float = 6.0, hop: float = 2.0
) -> list[dict[str, Any]]:
    """Records as ``msa-run --stream`` writes them: overlapping windows, gates, cue text."""
    out = []
    for k in range(n):
        start, end = k * hop, k * hop + window
        text = " ".join(c for a, b, c in CUES if a < end and b > start)
        score = round(2.5 * math.cos(start / 6), 4)
        gates = {
            "text": round(0.5 + 0.4 * math.sin(start), 4),
            "audio": 0.3,
            "vision": round(0.1 * k / n + 0.5, 4),
        }
        rec = {"input": name, "start": start, "end": end, "score": score}
        rec |= {
            "polarity": "positive" if score > 0 else "negative",
            "modalities": ["text", "audio", "vision"],
        }
        out.append(rec | {"gates": gates, "text": text, "transcript_source": "given"})
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_png_is_a_png_of_sane_size(tmp_path: Path) -> None:
    out = plot_records(windows(), tmp_path / "talk.png")
    width, height = png_size(out)
    assert 800 <= width <= 2000 and 300 <= height <= 2000
    assert 10_000 < out.stat().st_size < 1_000_000
    assert not list(tmp_path.glob(".*tmp*")), "the atomic write left its temporary file"


def test_drawn_scores_and_gates_are_the_records(tmp_path: Path) -> None:
    recs = windows()
    fig = figure(recs)
    score_axes = next(ax for ax in fig.axes if any(line.get_label() == "score" for line in ax.lines))
    line = next(line for line in score_axes.lines if line.get_label() == "score")
    assert list(line.get_ydata()) == [r["score"] for r in recs]
    assert list(line.get_xdata()) == [(r["start"] + r["end"]) / 2 for r in recs]
    gates = {
        ln.get_label(): list(ln.get_ydata())
        for ax in fig.axes
        for ln in ax.lines
        if ln.get_label() in {"text", "audio", "vision"}
    }
    assert gates == {m: [r["gates"][m] for r in recs] for m in ("text", "audio", "vision")}


def test_html_is_self_contained_with_windows_and_words(tmp_path: Path) -> None:
    recs = windows() + [{"input": "other.mp4", "error": "not media"}]
    html = plot_records(recs, tmp_path / "talk.html").read_text(encoding="utf-8")
    assert not re.search(r"https?:", html, re.I), "an external reference"
    assert not re.search(r"\b(src|href)\s*=", html, re.I) and "@import" not in html
    blob = re.search(r'<script type="application/json" id="msa-plot-data">(.*?)</script>', html, re.S)
    assert blob and json.loads(blob.group(1)) == recs
    drawn = [float(x) for x in re.findall(r'<circle [^>]*data-score="([^"]+)"', html)]
    assert drawn == [r["score"] for r in recs[:-1]]
    for _, _, words in CUES:
        assert words in html
    assert "1 failed record(s) not drawn" in html
    assert html.count("<tr>") == len(recs)  # a header row and one per window


def test_words_are_what_each_window_adds() -> None:
    assert new_words("a b c".split(), "b c d".split()) == ["d"]
    assert new_words("a b".split(), "a b".split()) == []
    assert new_words([], "x y".split()) == ["x", "y"]
    assert new_words("a b".split(), "c d".split()) == ["c", "d"]
    data = plot_data(windows())
    placed = [(w.start, w.end, w.text) for w in data.timelines[0].words]
    # the cue at 10 s is first in window [6, 12): it began after the window before ended (10)
    assert placed == [(0.0, 6.0, CUES[0][2]), (10.0, 12.0, CUES[1][2]), (20.0, 22.0, CUES[2][2])]


def test_whole_clips_are_bars_and_bad_records_are_refused(tmp_path: Path) -> None:
    clips = [{"input": f"c{i}.mp4", "score": i - 1.0, "polarity": "x"} for i in range(3)]
    data = plot_data(clips + [{"input": "bad.mp4", "error": "x"}])
    assert [b.score for b in data.bars] == [-1.0, 0.0, 1.0] and not data.timelines and data.failed == 1
    png_size(plot_records(clips, tmp_path / "clips.png"))
    with pytest.raises(InputError, match="nothing to plot: no record has a score"):
        plot_data([{"input": "a", "error": "x"}])
    with pytest.raises(InputError, match="score must be a finite number"):
        plot_data([{"input": "a", "score": float("nan")}])
    with pytest.raises(InputError, match=f"at most {MAX_TIMELINES}"):
        plot_data([r for i in range(MAX_TIMELINES + 1) for r in windows(f"s{i}", n=2)])
    with pytest.raises(InputError, match=r"\.png or \.html"):
        plot_records(clips, tmp_path / "clips.jpg")


def test_read_records_takes_json_and_jsonl(tmp_path: Path) -> None:
    recs = windows(n=3)
    (tmp_path / "a.json").write_text(json.dumps(recs))
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert read_records(tmp_path / "a.json") == recs == read_records(tmp_path / "a.jsonl")
    (tmp_path / "b.jsonl").write_text("score,polarity\n")
    with pytest.raises(InputError, match="not msa-run's json or jsonl"):
        read_records(tmp_path / "b.jsonl")


BLOCK_MATPLOTLIB = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
"""


def test_without_matplotlib_png_names_the_extra_and_html_still_works(tmp_path: Path) -> None:
    code = (
        BLOCK_MATPLOTLIB
        + f"""
from msa_runtime.errors import MissingExtraError
from msa_runtime.plot import plot_records
recs = [{{"input": "a", "start": 0, "end": 6, "score": 1.0}},
        {{"input": "a", "start": 2, "end": 8, "score": -1.0}}]
plot_records(recs, {str(tmp_path / "a.html")!r})
try:
    plot_records(recs, {str(tmp_path / "a.png")!r})
except MissingExtraError as exc:
    print("MISSING:", exc)
from msa_runtime.cli.run import main
main(["--pack", "nowhere", "--text", "hi", "--plot", {str(tmp_path / "b.png")!r}])
"""
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "MISSING:" in r.stdout and "pip install 'msa-edge[plot]'" in r.stdout
    assert (tmp_path / "a.html").is_file() and not (tmp_path / "a.png").exists()
    assert r.returncode == 2 and "msa-edge[plot]" in r.stderr and "--plot" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--plot", "out.jpg"], ".png or .html"),
        (["--plot", "missing/out.png"], "does not exist"),
        (["--plot", "out.png", "--ray", "local", "--out", "x.jsonl"], "not with --ray"),
    ],
)
def test_cli_plot_option_is_checked_before_scoring(tmp_path: Path, args: list[str], message: str) -> None:
    with CliRunner().isolated_filesystem(temp_dir=tmp_path):
        r = CliRunner().invoke(_main(), ["--pack", "nowhere", "clip.mp4", *args])
    assert r.exit_code == 2 and message in r.output, r.output


def _main() -> Any:
    from msa_runtime.cli.run import main

    return main


def test_cli_stream_plot_draws_what_it_wrote(tmp_path: Path, tiny_pack: Path) -> None:
    from media_factory import make_clip

    clip = make_clip(tmp_path / "talk.mp4", duration=12.0)
    srt = tmp_path / "talk.srt"
    srt.write_text(
        "1\n00:00:00,000 --> 00:00:06,000\ngood start\n\n2\n00:00:06,000 --> 00:00:12,000\nsad end\n"
    )
    html = tmp_path / "talk.html"
    args = [str(clip), "--pack", str(tiny_pack), "--stream", "--window", "4", "--hop", "2"]
    r = CliRunner().invoke(_main(), [*args, "--format", "jsonl", "--plot", str(html)])
    assert r.exit_code == 0, r.output
    written = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(written) >= 4 and all("gates" in w for w in written)
    blob = re.search(r'id="msa-plot-data">(.*?)</script>', html.read_text(encoding="utf-8"), re.S)
    assert blob and json.loads(blob.group(1)) == written
    assert "good start" in html.read_text(encoding="utf-8") and "sad end" in html.read_text(encoding="utf-8")
    png = tmp_path / "talk.png"
    r = CliRunner().invoke(_main(), [*args, "--plot", str(png)])
    assert r.exit_code == 0 and f"plot: wrote {png}" in r.output, r.output
    png_size(png)


def test_benchmark_charts_rebuild_from_results_files(tmp_path: Path) -> None:
    """benchmarks/charts.py draws a chart beside a results table from what the bench wrote (json
    or the markdown table), and links it from the markdown once."""
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        from charts import chart_for, md_tables, number
    finally:
        sys.path.pop(0)
    results = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
    for name in ("long-vm.json", "long-vm.md", "engines-vm.md"):
        shutil.copy(results / name, tmp_path / name)
    notes: list[str] = []
    for md in (tmp_path / "long-vm.md", tmp_path / "engines-vm.md"):
        png = chart_for(md, notes.append)
        assert png == md.with_suffix(".png")
        width, height = png_size(png)
        assert 600 <= width <= 2000 and 200 <= height <= 2000
        chart_for(md, notes.append)  # again: the same one image line
        assert md.read_text(encoding="utf-8").count(f"![{md.stem}]({md.stem}.png)") == 1
    rows = next(t for t in md_tables((tmp_path / "engines-vm.md").read_text()) if "median ms" in t[0])
    assert len(rows) >= 4 and all(number(r["median ms"]) > 0 for r in rows)
    assert number("**1,344.7**") == 1344.7
    (tmp_path / "other.md").write_text("# nothing\n")
    assert chart_for(tmp_path / "other.md", notes.append) is None and "no chart for other.md" in notes[-1]


def test_a_stopped_live_stream_is_still_drawn(tmp_path: Path, tiny_pack: Path) -> None:
    """SIGTERM (like Ctrl-C) ends a live stream with 143; the windows scored so far are drawn."""
    import os
    import signal
    import time

    import numpy as np

    html = tmp_path / "live.html"
    args = [
        "-",
        "--pack",
        str(tiny_pack),
        "--stream",
        "--input-format",
        "s16le",
        "--window",
        "2",
        "--hop",
        "1",
    ]
    argv = [
        sys.executable,
        "-m",
        "msa_runtime.cli",
        *args,
        "--text",
        "fine",
        "--format",
        "jsonl",
        "--plot",
        str(html),
    ]
    manifest = json.loads((tiny_pack / "manifest.json").read_text())
    rate = manifest["encoders"]["audio"]["preprocess"]["sample_rate"]
    pcm = (0.3 * np.sin(np.arange(rate * 5) * 0.05) * 32767).astype("<i2").tobytes()
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=False
    )
    assert proc.stdin and proc.stdout
    try:
        proc.stdin.write(pcm)  # 5 s now, the rest never comes: a live source
        proc.stdin.flush()
        lines = [proc.stdout.readline() for _ in range(2)]  # two windows scored
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    written = [json.loads(line) for line in [*lines, *out.splitlines()] if line.strip()]
    blob = re.search(r'id="msa-plot-data">(.*?)</script>', html.read_text(encoding="utf-8"), re.S)
    drawn = json.loads(blob.group(1)) if blob else []
    # a record scored as the stop came may be drawn and not written, never the other way round
    assert len(written) >= 2 and drawn[: len(written)] == written and len(drawn) <= len(written) + 1
