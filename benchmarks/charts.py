"""Charts beside the benchmark results: ``results/NAME.png`` next to ``results/NAME.md``.

    python benchmarks/charts.py [results/NAME.md ...]     # default: every results file it knows

Each chart is drawn from what the benchmark wrote (``NAME.json`` where there is one, else the
table in ``NAME.md``), so it can be rebuilt at any time without measuring again; the bench
scripts call :func:`chart_for` after writing their results. A chart shows one run's side-by-side
comparison (ratios within one run are what count on a shared machine) and names the CPU, the
date and the load the results file records. The markdown gets one image line under its title
(``![NAME](NAME.png)``), added once. Needs matplotlib (``msa-edge[plot]``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from msa_runtime.atomic import atomic_write, atomic_write_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
E2E_LABELS = {
    "reference": "PyTorch, full depth (reference)",
    "torch_cut": "PyTorch, cut",
    "ort_fp32_full": "ORT fp32, full depth",
    "ort_fp32_cut": "ORT fp32, cut (pack)",
    "ort_int8_cut": "ORT int8, cut (pack)",
    "ov_bf16_cut": "OpenVINO EP fp32 files (bf16)",
    "ov_int8_cut": "OpenVINO EP ov-int8 files",
    "ov_int8_concurrent": "OpenVINO ov-int8, concurrent",
    "tuned_concurrent": "tuned, concurrent",
}


def _figure(rows: int = 1, cols: int = 1, height: float = 3.2, width: float = 8.0) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _bars(
    ax: Any,
    labels: Sequence[str],
    values: Sequence[float],
    unit: str,
    best: str = "low",
    groups: Sequence[str] | None = None,
) -> None:
    """Horizontal bars, first label on top, each with its value; the best one darker (the best
    of each group when ``groups`` names one per bar)."""
    ys = list(range(len(labels)))[::-1]
    keys = list(groups) if groups is not None else [""] * len(values)
    pick = {k: (min if best == "low" else max)(v for g, v in zip(keys, values) if g == k) for k in keys}
    colours = ["#1f5f99" if v == pick[g] else "#7fa7cc" for g, v in zip(keys, values)]
    ax.barh(ys, values, color=colours)
    ax.set_yticks(ys, list(labels), fontsize=7)
    top = max(values) if values else 1.0
    for y, v in zip(ys, values):
        ax.text(v + top * 0.01, y, f"{v:,.3g}" if v < 100 else f"{v:,.0f}", va="center", fontsize=7)
    ax.set_xlim(0, top * 1.15)
    ax.set_xlabel(unit, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)


def _save(fig: Any, path: Path, title: str, footnote: str) -> Path:
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.text(0.01, 0.0, footnote, fontsize=6.5, color="#555555", va="bottom")
    fig.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    return path


def md_tables(text: str) -> list[list[dict[str, str]]]:
    """The pipe tables of a markdown text, each as rows of {header: cell}."""
    tables: list[list[dict[str, str]]] = []
    lines = text.splitlines()
    i = 0
    while i + 1 < len(lines):
        if lines[i].startswith("|") and re.match(r"^\|[\s:|-]+\|\s*$", lines[i + 1]):
            head = [c.strip() for c in lines[i].strip().strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                rows.append(dict(zip(head, cells)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def number(cell: str) -> float:
    """``1,344.7`` or ``**2,001**`` or ``0.82x`` as a float."""
    found = re.search(r"-?[\d,]*\.?\d+", cell.replace("*", ""))
    if not found:
        raise ValueError(f"no number in {cell!r}")
    return float(found.group().replace(",", ""))


def cpu_line(md: str) -> str:
    """The CPU the markdown names (``CPU: **X**``), else its CPU count line, else ''."""
    found = re.search(r"CPU[^:\n]*:\s*\**([^*\n;,]+)", md)
    return found.group(1).strip() if found else ""


# -- one builder per results file kind: (md path, json or None) -> png path --------------------


def chart_e2e(md: Path, doc: dict[str, Any]) -> Path:
    runs = doc["runs"]
    fig, axes = _figure(len(runs), 1, height=0.6 + 2.2 * len(runs))
    for ax, (preset, r) in zip(axes[:, 0], runs.items()):
        cons = [c for c in E2E_LABELS if c in r["contenders"]]
        ms = [r["contenders"][c]["stages"]["total"]["median"] for c in cons]
        _bars(ax, [E2E_LABELS[c] for c in cons], ms, "ms per 5 s clip, end to end (median)")
        load = r.get("loadavg_at_start") or [float("nan")]
        ax.set_title(f"{preset} ({r['date']}, load {load[0]:.1f} at start)", fontsize=8, loc="left")
    m = doc["machine"]
    foot = f"{m['cpu']}, {m['cores']} cores; one clip end to end per contender, in one run (ratios count)."
    return _save(fig, md.with_suffix(".png"), "End to end per contender", foot)


def chart_long(md: Path, doc: dict[str, Any]) -> Path:
    rows, meta = doc["rows"], doc["meta"]
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    minutes = sorted({r["minutes"] for r in rows})
    fig, axes = _figure(1, 1, height=3.4)
    ax = axes[0, 0]
    width = 0.8 / len(modes)
    for k, mode in enumerate(modes):
        pts = [(minutes.index(r["minutes"]), r["peak_rss_mb"]) for r in rows if r["mode"] == mode and r["ok"]]
        ax.bar([x + k * width for x, _ in pts], [v for _, v in pts], width, label=mode)
    ax.set_xticks(
        [i + width * (len(modes) - 1) / 2 for i in range(len(minutes))], [f"{m:g} min" for m in minutes]
    )
    ax.set_ylabel("peak RSS, MB", fontsize=8)
    ax.legend(fontsize=7)
    loads = [r["load_avg_1min"] for r in rows if "load_avg_1min" in r]
    foot = (
        f"{meta['host']}, {meta['cpus']} cores, {meta['date']}, pack {meta['pack']}; "
        f"load average {min(loads):.0f}-{max(loads):.0f} (shared machine)."
    )
    return _save(fig, md.with_suffix(".png"), "Long files: peak memory by how they are cut", foot)


def chart_ray(md: Path, doc: dict[str, Any]) -> Path:
    rows, meta = doc["rows"], doc["meta"]
    labels = [f"{r['mode']} (run {i // 2 + 1})" for i, r in enumerate(rows)]
    fig, axes = _figure(1, 1, height=2.6)
    _bars(axes[0, 0], labels, [r["clips_per_s"] for r in rows], "clips per second", best="high")
    share = max(r["others_cpu_share"] for r in rows)
    foot = (
        f"{meta['host']}, {meta['cpus']} cores, {meta['date']}, pack {meta['pack']}; "
        f"others took up to {share:.0%} of the CPUs (shared machine)."
    )
    return _save(fig, md.with_suffix(".png"), "Archives: plain loop vs Ray Data", foot)


def chart_serve(md: Path, doc: dict[str, Any]) -> Path:
    rows = doc["rows"]
    fig, axes = _figure(1, 2, height=2.8, width=10)
    labels = [r["contender"] for r in rows]
    _bars(axes[0, 0], labels, [r["clips_per_s"] for r in rows], "clips per second", best="high")
    _bars(axes[0, 1], labels, [r["p50_ms"] / 1e3 for r in rows], "p50 per request, s")
    axes[0, 1].set_yticks([])
    share = max(r["others_cpu_share"] for r in rows)
    foot = (
        f"{doc['cpu']}, {doc['cores']} cores, {doc['date']}, {doc['clients']} clients; "
        f"others took up to {share:.0%} of the CPUs."
    )
    return _save(fig, md.with_suffix(".png"), "Serving on Triton vs the msa-run loop", foot)


def chart_stream_memory(md: Path, doc: dict[str, Any]) -> Path:
    meta = doc["meta"]
    fig, axes = _figure(1, 1, height=3.0)
    ax = axes[0, 0]
    for r in doc["results"]:
        marks = r["rss_marks"]
        ax.plot(
            [m["input_min"] for m in marks],
            [m["rss_mb"] for m in marks],
            "o-",
            ms=2,
            label=f"{r['input_s'] / 60:g} min stream",
        )
    ax.set_ylim(0, None)
    ax.set_xlabel("minutes of input streamed", fontsize=8)
    ax.set_ylabel("RSS, MB", fontsize=8)
    ax.legend(fontsize=7)
    pack = f"{meta.get('pack_name', '')} {meta.get('precision', '')}".strip()
    foot = f"{meta['host']}, {meta['cpus']} cores, {meta['date']}, {pack}."
    return _save(fig, md.with_suffix(".png"), "Stream memory over time", foot)


def chart_asr(md: Path, doc: dict[str, Any]) -> Path:
    sizes = doc["sizes"]
    fig, axes = _figure(1, 1, height=2.6)
    ax = axes[0, 0]
    _bars(
        ax,
        [f"Whisper {s['size']}" for s in sizes],
        [s["hop_ms"]["median"] for s in sizes],
        "ms per 2 s hop (median)",
    )
    ax.axvline(2000, color="#d1495b", ls="--", lw=1)
    ax.text(2000, 0.02, " real time (2 s)", color="#d1495b", fontsize=7, transform=ax.get_xaxis_transform())
    return _save(
        fig, md.with_suffix(".png"), "Live transcription per hop", f"{doc['machine']}; {doc['date']}."
    )


def chart_table(
    value: str, labels: Sequence[str], title: str, best: str = "low"
) -> Callable[[Path, Any], Path]:
    """A builder for results that are only a markdown table: ``value`` column per row."""

    def build(md: Path, _: Any) -> Path:
        text = md.read_text(encoding="utf-8")
        table = next(t for t in md_tables(text) if t and value in t[0])
        names = [" / ".join(row[c] for c in labels) for row in table]
        fig, axes = _figure(1, 1, height=0.8 + 0.22 * len(table))
        groups = [row[labels[0]] for row in table]
        _bars(axes[0, 0], names, [number(row[value]) for row in table], value, best, groups)
        heading = text.splitlines()[0].lstrip("# ").strip()
        return _save(
            fig, md.with_suffix(".png"), title, f"{cpu_line(text) or 'CPU: see ' + md.name}; {heading}."
        )

    return build


BUILDERS: dict[str, Callable[[Path, Any], Path]] = {
    "long-": chart_long,
    "ray-": chart_ray,
    "serve-": chart_serve,
    "stream-memory-": chart_stream_memory,
    "asr-": chart_asr,
    "engines-": chart_table(
        "median ms", ("encoder", "engine route", "file"), "Engines per encoder (darker: fastest per encoder)"
    ),
    "concurrent-": chart_table("predict_arrays median ms", ("mode",), "Encoders in sequence vs concurrently"),
}


def builder(md: Path) -> Callable[[Path, Any], Path] | None:
    """The chart of a results file, by its name (``<kind>-<host>.md``; ``<host>.md`` is bench_e2e)."""
    for prefix, build in BUILDERS.items():
        if md.name.startswith(prefix):
            return build
    doc = md.with_suffix(".json")
    if doc.is_file() and '"runs"' in doc.read_text(encoding="utf-8")[:200_000]:
        return chart_e2e
    return None


def link(md: Path, png: Path) -> None:
    """Put ``![name](name.png)`` under the markdown's first line, once."""
    text = md.read_text(encoding="utf-8")
    line = f"![{png.stem}]({png.name})"
    if line in text:
        return
    first, _, rest = text.partition("\n")
    atomic_write_text(md, f"{first}\n\n{line}\n{rest}")


def chart_for(md: str | Path, note: Callable[[str], None] = print) -> Path | None:
    """Draw the chart of one results file beside it and link it from the markdown; a note (not an
    error: the results stand without it) when there is no chart for it or matplotlib is missing."""
    md = Path(md)
    build = builder(md)
    if build is None:
        note(f"charts: no chart for {md.name}")
        return None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        note(f"charts: {md.name}: no chart, matplotlib is missing: pip install 'msa-edge[plot]'")
        return None
    doc_path = md.with_suffix(".json")
    doc = json.loads(doc_path.read_text(encoding="utf-8")) if doc_path.is_file() else None
    png = build(md, doc)
    link(md, png)
    note(f"charts: wrote {png}")
    return png


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rebuild the charts beside the benchmark results.")
    ap.add_argument("files", nargs="*", type=Path, help="results .md files (default: all in results/)")
    args = ap.parse_args(argv)
    files = args.files or sorted(RESULTS.glob("*.md"))
    failed = 0
    for md in files:
        if not md.is_file():
            print(f"charts: {md}: no such file", file=sys.stderr)
            failed += 1
        elif builder(md) is not None:
            chart_for(md)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
