"""Throughput of one box serving a pack on Triton (msa-serve's form b) against a plain loop.

    .venv-serve/bin/python benchmarks/bench_serve.py --pack packs/edge [--clips 12] [--clients 4]

Contenders, in one run on the same generated clips (5 s, 640x480 at 25 fps, 44.1 kHz stereo,
H.264/AAC; each request = one clip by path + a sentence):

- ``loop``: what ``msa-run`` does, one ``Analyzer.predict`` after the other in one process;
- Triton, 1 instance: the PyPI Triton (nvidia-pytriton), ``--clients`` concurrent HTTP clients
  sending the clips;
- Triton, 2 instances, 1 ORT thread each (two stub processes, each its own Analyzer);
- Triton, 2 instances, ONNX Runtime's default threads each (oversubscribed on 2 cores).

Per contender: clips/s, p50/p99 latency per request (a client's view, queueing included; for the
loop, per clip), the server's resident memory, and the share of the CPU other processes took
meanwhile (/proc/stat minus our process tree). Needs the serve extra (its own venv, numpy < 2);
writes ``results/serve-<host>.json`` and ``results/serve-<host>.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import shlex
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from hostinfo import cpu_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
TEXT = b"honestly the second half was much better than i expected"


def log(msg: str) -> None:
    print(f"[bench_serve {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class CpuShare:
    """Others' share of all CPUs between construction and :meth:`result` (busy jiffies from
    /proc/stat minus the CPU time of ``procs`` and their children)."""

    def __init__(self, procs: list[psutil.Process]) -> None:
        self.procs = procs
        self.start = self._read()

    def _tree_cpu(self) -> float:
        seen: dict[int, psutil.Process] = {}  # the server is our child: count each process once
        for root in self.procs:
            for p in [root, *root.children(recursive=True)]:
                seen.setdefault(p.pid, p)
        total = 0.0
        for p in seen.values():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        return total

    def _read(self) -> tuple[list[int], float]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields, self._tree_cpu()

    def result(self) -> dict[str, float]:
        (a, own_a), (b, own_b) = self.start, self._read()
        d = [y - x for x, y in zip(a, b)]
        hz = os.sysconf("SC_CLK_TCK")
        total = sum(d[:8]) / hz
        busy = (d[0] + d[1] + d[2] + d[5] + d[6]) / hz
        own = own_b - own_a
        return {
            "own_cpu_s": round(own, 1),
            "others_cpu_share": round(max(0.0, busy - own) / max(total, 1e-9), 3),
        }


def summarize(
    name: str, latencies: list[float], wall: float, failed: int, extra: dict[str, Any]
) -> dict[str, Any]:
    ms = np.array(latencies) * 1e3
    row = {
        "contender": name,
        "requests": len(latencies),
        "failed": failed,
        "wall_s": round(wall, 2),
        "clips_per_s": round(len(latencies) / wall, 3),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        **extra,
    }
    log(f"{name}: {row['clips_per_s']} clips/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, {extra}")
    return row


def run_loop(pack: Path, clips: list[Path]) -> dict[str, Any]:
    from msa_runtime import Analyzer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an = Analyzer(pack, providers="cpu", tuning=False)
    an.predict(clips[0], text=TEXT.decode())  # warm-up
    me = psutil.Process()
    share = CpuShare([me])
    times = []
    t0 = time.perf_counter()
    for clip in clips:
        t = time.perf_counter()
        an.predict(clip, text=TEXT.decode())
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    rss = me.memory_info().rss / 2**20
    an.close()
    return summarize("loop (msa-run)", times, wall, 0, {**share.result(), "rss_mb": round(rss)})


def run_triton(
    pack: Path, clips: list[Path], instances: int, threads: int | None, clients: int
) -> dict[str, Any]:
    import tritonclient.http as httpclient

    from msa_runtime.serve import TritonServer, write_python_repository

    name = f"Triton, {instances} instance{'s' if instances > 1 else ''}, {threads or 'default'} ORT threads"
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        repo = write_python_repository(
            pack, Path(tmp) / "models", instances=instances, threads=threads, input_root=clips[0].parent
        )
        with TritonServer(repo, http_port=0, grpc_port=0) as server:
            assert server.process is not None
            root = psutil.Process(server.process.pid)

            def one(client: Any, clip: Path) -> float:
                inputs = []
                for key, value in (("PATH", clip.name.encode()), ("TEXT", TEXT)):
                    tensor = httpclient.InferInput(key, [1], "BYTES")
                    tensor.set_data_from_numpy(np.array([value], dtype=np.object_))
                    inputs.append(tensor)
                t = time.perf_counter()
                client.infer("msa", inputs)
                return time.perf_counter() - t

            warm = httpclient.InferenceServerClient(server.http_url)
            for _ in range(instances * 2):  # every instance warmed up
                one(warm, clips[0])
            share = CpuShare([psutil.Process(), root])
            failed = 0
            times: list[float] = []
            queue = list(clips)

            def worker(_: int) -> None:
                nonlocal failed
                client = httpclient.InferenceServerClient(
                    server.http_url, connection_timeout=600, network_timeout=600
                )
                while queue:
                    try:
                        clip = queue.pop()
                    except IndexError:
                        return
                    try:
                        times.append(one(client, clip))
                    except Exception as exc:  # counted and reported: the run must show failures
                        log(f"request failed: {exc}")
                        failed += 1

            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                list(pool.map(worker, range(clients)))
            wall = time.perf_counter() - t0
            rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
            extra = {**share.result(), "rss_mb": round(rss), "instances": instances, "threads": threads}
            return summarize(name, times, wall, failed, extra)


def render(result: dict[str, Any]) -> str:
    rows = result["rows"]
    base = rows[0]["clips_per_s"]
    lines = [
        f"# Serving throughput ({result['host']}, {result['date']})",
        "",
        f"`{result['command']}`",
        "",
        f"Pack: {result['pack']}. {result['clips']} clips of 5 s (640x480, 25 fps, AAC) + a sentence per "
        f"request, by path; Triton clients: {result['clients']} concurrent HTTP clients. CPU: "
        f"{result['cpu']} ({result['cores']} cores). numpy {result['numpy']}, onnxruntime {result['ort']}.",
        "",
        "| contender | clips/s | vs loop | p50 ms | p99 ms | failed | CPU s/clip | RSS MB | others' CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['contender']} | {r['clips_per_s']:.2f} | {r['clips_per_s'] / base:.2f}x "
            f"| {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['failed']} "
            f"| {r['own_cpu_s'] / max(r['requests'], 1):.2f} | {r['rss_mb']} "
            f"| {r['others_cpu_share']:.0%} |"
        )
    lines += [
        "",
        "Latency for Triton is a client's view (queueing behind the other clients included); for",
        "the loop it is one clip's predict. CPU s/clip is the CPU time of this process and (for",
        "Triton) the server's process tree over the clips: the cost, less sensitive than clips/s",
        "to what else runs. RSS is the loop's process, or Triton's server plus its",
        'python stubs. "others\' CPU" is what other processes took while the contender ran',
        "(the machine is shared): compare contenders within this run only.",
        "",
    ]
    return "\n".join(lines)


def rerender(path: Path) -> None:
    """Rewrite the .md beside a results .json (after a change to :func:`render`)."""
    path.with_suffix(".md").write_text(render(json.loads(path.with_suffix(".json").read_text())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", required=True, type=Path)
    ap.add_argument("--label", help="what the pack is, for the results (default: its name)")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--out", type=Path, help="results .md (default results/serve-<host>.md)")
    args = ap.parse_args()
    import onnxruntime
    from media_factory import make_clip

    host = socket.gethostname().split(".")[0]
    host = "vm" if host.startswith(("vm", "localhost")) or len(host) > 20 else host
    out = args.out or HERE / "results" / f"serve-{host}.md"
    with tempfile.TemporaryDirectory(prefix="bench-serve-clips-") as tmp:
        clips = []
        for i in range(args.clips):
            clips.append(
                make_clip(
                    Path(tmp) / f"clip{i:03d}.mp4",
                    duration=5.0,
                    fps=25,
                    size=(640, 480),
                    tone_hz=200.0 + 20 * i,
                )
            )
        log(f"{len(clips)} clips written; pack {args.pack}")
        rows = [run_loop(args.pack, clips)]
        rows.append(run_triton(args.pack, clips, 1, None, args.clients))
        rows.append(run_triton(args.pack, clips, 2, 1, args.clients))
        rows.append(run_triton(args.pack, clips, 2, None, args.clients))
    cpu = cpu_model()
    result = {
        "host": host,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/bench_serve.py " + shlex.join(sys.argv[1:]),
        "pack": args.label or args.pack.name,
        "clips": args.clips,
        "clients": args.clients,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ort": onnxruntime.__version__,
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.write_text(render(result))
    log(f"wrote {out}")
    from charts import chart_for  # serve-<host>.png beside the table

    chart_for(out, log)


if __name__ == "__main__":
    main()
