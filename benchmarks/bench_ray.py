"""Throughput of Ray Data (``msa-run --ray``) against a plain ``msa-run`` loop, same clips, same pack.

N clips are generated (160x120 at 15 fps H.264 + 16 kHz AAC, ``--seconds`` long each); then,
alternating, ``--repeats`` times:

- ``loop``: ``msa-run CLIPS --pack P --format jsonl`` (one process, one Analyzer, clips in turn,
  ONNX Runtime's default threads);
- ``ray``: ``msa-run --ray local CLIPS --pack P --out X.jsonl --actors A`` (a fresh single-node Ray
  on 127.0.0.1, an actor pool of A actors, each loading the pack once and running its sessions
  with ``--threads`` threads).

Each run is a fresh process, timed from start to exit (pack loading and Ray start-up included),
and the scores of the two are compared. Other processes' share of the CPU while each run was
timed is recorded (from /proc/stat, minus the run's process tree, sampled with psutil). Results:
``results/ray-<host>.{md,json}``::

    python benchmarks/bench_ray.py --pack packs/edge --clips 24 --actors 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"

from bench_stream_memory import export_tiny, make_long_clip  # noqa: E402


def _busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    d = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (d[0] + d[1] + d[2] + d[5] + d[6]) / hz, sum(d[:8]) / hz


class TreeCpu:
    """CPU seconds of a process and all its descendants (Ray's GCS, raylet and workers are
    not reaped into RUSAGE_CHILDREN): every descendant's latest user+system time, sampled every
    0.2 s while it runs."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import psutil

        while not self._stop.wait(0.2):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                continue
            for p in procs:
                try:
                    t = p.cpu_times()
                    self.seen[p.pid] = t.user + t.system
                except psutil.Error:
                    pass

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self.seen.values())


def _msa_run() -> list[str]:
    return [sys.executable, "-c", "from msa_runtime.cli.run import main; main()"]


def run(mode: str, pack: str, clips: list[str], out: Path, actors: int, threads: int) -> dict[str, Any]:
    """One timed run; returns wall time, clips per second, others' CPU share and the scores."""
    if out.exists():
        out.unlink()
    if mode == "loop":
        cmd = [*_msa_run(), *clips, "--pack", pack, "--format", "jsonl"]
    else:
        cmd = [*_msa_run(), "--ray", "local", *clips, "--pack", pack, "--out", str(out)]
        cmd += ["--actors", str(actors), "--threads", str(threads)]
    busy0, total0 = _busy()
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tree = TreeCpu(child.pid)
    stdout, stderr = child.communicate()
    wall = time.perf_counter() - t0
    own = tree.stop()
    busy1, total1 = _busy()
    others = max(0.0, (busy1 - busy0) - own) / max(total1 - total0, 1e-9)
    proc = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
    text = proc.stdout if mode == "loop" else (out.read_text() if out.exists() else "")
    recs = [json.loads(line) for line in text.splitlines() if line.strip()]
    scores = {r["input"]: r["score"] for r in recs if "score" in r}
    if proc.returncode != 0 or len(scores) != len(clips):
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
        return {"mode": mode, "ok": False, "error": f"exit {proc.returncode}, {len(scores)} scores: {tail}"}
    return {
        "mode": mode,
        "ok": True,
        "wall_s": round(wall, 2),
        "clips_per_s": round(len(clips) / wall, 3),
        "own_cpu_s": round(own, 1),
        "others_cpu_share": round(others, 3),
        "scores": scores,
    }


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"## Ray Data vs a plain msa-run loop: {meta['host']} ({meta['date']})",
        "",
        f"Pack `{meta['pack']}`, {meta['clips']} clips of {meta['seconds']:g} s (160x120 15 fps H.264 + "
        f"16 kHz AAC), {meta['cpus']} CPUs. `loop` = `msa-run CLIPS --format jsonl`; `ray` = "
        f"`msa-run --ray local CLIPS --out X.jsonl --actors {meta['actors']} --threads {meta['threads']}`. "
        "Each a fresh process, wall time from start to exit (pack loading and Ray start-up included).",
        "",
        "| run | mode | wall | clips/s | CPU of the run | others' CPU share |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rows):
        if not r["ok"]:
            lines.append(f"| {i // 2 + 1} | {r['mode']} | failed: {r['error']} | | | |")
            continue
        lines.append(
            f"| {i // 2 + 1} | {r['mode']} | {r['wall_s']:.1f} s | {r['clips_per_s']:.2f} | "
            f"{r['own_cpu_s']:.0f} s | {r['others_cpu_share']:.0%} |"
        )
    lines += ["", meta["summary"]]
    return "\n".join(lines) + "\n"


def _summary(rows: list[dict[str, Any]]) -> str:
    ok = [r for r in rows if r["ok"]]
    by = {m: [r for r in ok if r["mode"] == m] for m in ("loop", "ray")}
    if not by["loop"] or not by["ray"]:
        return "Not both contenders completed: no ratio."
    best = {m: min(r["wall_s"] for r in rs) for m, rs in by.items()}
    ref = by["loop"][0]["scores"]
    diff = max(abs(ref[k] - r["scores"][k]) for r in ok for k in ref)
    return (
        f"Best of each: loop {best['loop']:.1f} s, ray {best['ray']:.1f} s: Ray Data takes "
        f"{best['ray'] / best['loop']:.2f}x the loop's time on this box. Largest score difference "
        f"between any two runs: {diff:.4f} (records rounded to 4 digits)."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pack", help="Pack folder (default: export the tiny preset).")
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="Threads per session in each actor.")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    host = socket.gethostname()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        pack = args.pack or str(export_tiny(Path(tmp) / "tiny"))
        first = Path(tmp) / "clip-000.mp4"
        make_long_clip(first, args.seconds)
        clips = [str(first)]
        for i in range(1, args.clips):  # the same content under N names: same work per clip
            dst = Path(tmp) / f"clip-{i:03d}.mp4"
            os.link(first, dst)
            clips.append(str(dst))
        for _ in range(args.repeats):
            for mode in ("loop", "ray"):
                r = run(mode, pack, clips, Path(tmp) / "out.jsonl", args.actors, args.threads)
                print(json.dumps({k: v for k, v in r.items() if k != "scores"}), file=sys.stderr)
                rows.append(r)
        from msa_runtime.pack import load_manifest

        meta = {
            "host": host,
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "cpus": os.cpu_count(),
            "pack": load_manifest(pack, verify=False).name,
            "clips": args.clips,
            "seconds": args.seconds,
            "actors": args.actors,
            "threads": args.threads,
            "summary": _summary(rows),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    slim = [{k: v for k, v in r.items() if k != "scores"} for r in rows]
    (RESULTS / f"ray-{host}.json").write_text(json.dumps({"meta": meta, "rows": slim}, indent=2) + "\n")
    (RESULTS / f"ray-{host}.md").write_text(markdown(rows, meta))
    from charts import chart_for  # results/ray-<host>.png beside the table

    chart_for(RESULTS / f"ray-{host}.md")
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
