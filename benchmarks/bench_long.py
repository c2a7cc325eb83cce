"""Peak memory of scoring a long file WITHOUT ``--stream`` (``Analyzer.predict``), whole vs in
windows (``long_window``, :mod:`msa_runtime.scoring.long`).

For each length in ``--minutes`` a clip is generated (160x120 at 15 fps H.264 + 16 kHz AAC,
``bench_stream_memory.make_long_clip``) and scored by ``predict`` in a fresh child process per
mode, which records the peak RSS (sampled every 50 ms, and the kernel's ``VmHWM``) and the wall time:

- ``windows of <= 30 s``: the default, ``long_window=30`` (longer inputs scored in equal windows),
  and ``long_window=60``;
- ``whole``: ``long_window=60`` (the largest allowed, ``limits.MAX_LONG_WINDOW``), i.e. the
  one-piece path, only for lengths up to ``--whole-max`` minutes (its memory grows with the
  square of the length).

::

    python benchmarks/bench_long.py --minutes 1,3,10,60 [--pack DIR] [--whole-max 1]

Without ``--pack`` the ``tiny`` preset is exported once. Results: ``results/long-<host>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"

from bench_stream_memory import PeakSampler, export_tiny, hwm_mb, make_long_clip, rss_mb  # noqa: E402


def _child(pack: str, clip: str, long_window: float) -> None:
    import warnings

    from msa_runtime import Analyzer

    warnings.simplefilter("ignore")
    an = Analyzer(pack, long_window=long_window)
    loaded = rss_mb()
    t0 = time.perf_counter()
    with PeakSampler() as sampler:
        p = an.predict(clip)
    wall = time.perf_counter() - t0
    peak = max(sampler.peak, hwm_mb())
    note = next((n for n in p.notes if "windows" in n), "")
    windows = note.split("scored in ")[1].split(" (")[0] if note else "1 (whole)"
    print(
        json.dumps(
            {
                "ok": True,
                "score": round(p.score, 4),
                "rss_after_load_mb": round(loaded, 1),
                "peak_rss_mb": round(peak, 1),
                "wall_s": round(wall, 2),
                "windows": windows,
                "load_avg_1min": round(os.getloadavg()[0], 2),
            }
        )
    )


def measure(
    pack: str | os.PathLike[str], workdir: str | os.PathLike[str], *, minutes: float, long_window: float
) -> dict[str, Any]:
    """Generate a ``minutes`` long clip in ``workdir`` and score it in a child process."""
    clip = Path(workdir) / f"long-{minutes:g}min.mp4"
    if not clip.exists():
        make_long_clip(clip, minutes * 60)
    return _run_child(str(pack), clip, long_window)


def _run_child(pack: str, clip: Path, long_window: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", pack, str(clip), str(long_window)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
        return {"ok": False, "error": f"exit {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"## Long files without --stream: {meta['host']} ({meta['date']})",
        "",
        f"Pack `{meta['pack']}`, {meta['cpus']} CPUs; `Analyzer.predict(clip)` in a fresh process per row; "
        "generated 160x120 15 fps H.264 + 16 kHz AAC. Windows: `long_window=30` (the default) or 60; "
        "`whole` = `long_window=60` (one piece, the largest window allowed).",
        "",
        "| input | mode | windows | peak RSS | RSS after load | wall | load avg |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if not r.get("ok"):
            lines.append(f"| {r['minutes']:g} min | {r['mode']} | failed: {r.get('error')} | | | | |")
            continue
        lines.append(
            f"| {r['minutes']:g} min | {r['mode']} | {r['windows']} | {r['peak_rss_mb']:.0f} MB | "
            f"{r['rss_after_load_mb']:.0f} MB | {r['wall_s']:.1f} s | {r['load_avg_1min']} |"
        )
    return "\n".join(lines) + "\n"


def _pack_name(pack: str) -> str:
    from msa_runtime.pack import load_manifest

    return load_manifest(pack, verify=False).name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", default="1,3,10,60", help="Input lengths, comma-separated.")
    parser.add_argument("--pack", help="Pack folder (default: export the tiny preset).")
    parser.add_argument("--whole-max", type=float, default=1.0, help="Longest input also run whole (min).")
    parser.add_argument("--child", nargs=3, metavar=("PACK", "CLIP", "WINDOW"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1], float(args.child[2]))
        return
    minutes = [float(m) for m in args.minutes.split(",") if m.strip()]
    host = socket.gethostname()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        pack = args.pack or str(export_tiny(Path(tmp) / "tiny"))
        for m in minutes:
            clip = Path(tmp) / f"long-{m:g}min.mp4"
            make_long_clip(clip, m * 60)
            modes = [("windows of <= 30 s (default)", 30.0), ("windows of <= 60 s", 60.0)]
            modes += [("whole", 60.0)] if m <= args.whole_max else []
            for mode, window in modes:
                r = {"minutes": m, "mode": mode, **_run_child(pack, clip, window)}
                rows.append(r)
                print(json.dumps(r), file=sys.stderr)
            clip.unlink()
        meta = {
            "host": host,
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "cpus": os.cpu_count(),
            "pack": _pack_name(pack),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"long-{host}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (RESULTS / f"long-{host}.md").write_text(markdown(rows, meta))
    from charts import chart_for  # results/long-<host>.png beside the table

    chart_for(RESULTS / f"long-{host}.md")
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
