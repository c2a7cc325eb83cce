"""Memory and speed of :meth:`msa_runtime.Analyzer.stream` on long inputs.

For each length in ``--minutes`` a clip is generated with PyAV (160x120 at 15 fps H.264 + 16 kHz
mono AAC in MP4, encoded frame by frame straight to disk, so generation itself stays small) and
streamed through the pack in a fresh child process, which records:

- RSS after loading the pack, at every minute of input, and the peak (sampled every 50 ms and
  from the kernel's ``VmHWM``);
- wall time, the real-time factor (wall time / input duration; below 1 is faster than real
  time) and the per-window latency (median, p90) the runtime reports.

Results go to a JSON file and a markdown section in
``benchmarks/results/stream-memory-<hostname>.md``::

    python benchmarks/bench_stream_memory.py --minutes 5,60 [--pack DIR] [--out FILE]

Without ``--pack`` the ``tiny`` preset is exported once (torch side, in a subprocess so torch
never enters the measured process).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SIZE = (160, 120)
FPS = 15
RATE = 16000


def make_long_clip(
    path: str | os.PathLike[str],
    seconds: float,
    *,
    fps: int = FPS,
    size: tuple[int, int] = SIZE,
    rate: int = RATE,
) -> Path:
    """Write a ``seconds`` long MP4 (H.264 + AAC, mono) frame by frame: memory stays flat.

    The picture is a moving colour gradient, the audio a tone gliding between 150 and 400 Hz
    with a little noise, so neither encoder sees a constant input.
    """
    path = Path(path)
    width, height = size
    n_frames = round(seconds * fps)
    n_samples = round(seconds * rate)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    rows = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    with av.open(str(path), mode="w", format="mp4") as out:
        vstream: Any = out.add_stream("libx264", rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.codec_context.options = {"preset": "ultrafast", "crf": "32"}
        astream: Any = out.add_stream("aac", rate=rate, layout="mono")
        block = astream.codec_context.frame_size or 1024
        sample = 0
        phase = 0.0
        for i in range(n_frames):
            shift = (i * 3) % 256
            img = np.empty((height, width, 3), np.uint8)
            img[..., 0] = (ramp + shift) % 256
            img[..., 1] = (rows + 2 * shift) % 256
            img[..., 2] = 128 + 60 * math.sin(i / 50)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in vstream.encode(frame):
                out.mux(packet)
            stop = min(n_samples, round((i + 1) * rate / fps))
            while sample < stop and stop - sample >= block or (i == n_frames - 1 and sample < stop):
                count = min(block, stop - sample)
                t = (sample + np.arange(count)) / rate
                freq = 275 + 125 * np.sin(2 * np.pi * t / 7.0)
                phases = phase + 2 * np.pi * np.cumsum(freq) / rate
                phase = float(phases[-1])
                wave = 0.3 * np.sin(phases) + 0.02 * rng.standard_normal(count)
                aframe = av.AudioFrame.from_ndarray(
                    wave.astype(np.float32)[None], format="fltp", layout="mono"
                )
                aframe.sample_rate = rate
                aframe.pts = sample
                aframe.time_base = Fraction(1, rate)
                for packet in astream.encode(aframe):
                    out.mux(packet)
                sample += count
        for stream in (vstream, astream):
            for packet in stream.encode(None):
                out.mux(packet)
    return path


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def hwm_mb() -> float:
    """This process's own peak RSS (``VmHWM``). Not ``ru_maxrss``: on Linux a child started by
    fork/vfork + exec inherits its parent's high-water mark there (a pytest run that once held
    7 GB made every child report 7 GB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakSampler:
    """Samples this process's RSS in a background thread; ``peak`` is the highest seen (MB)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak = interval, rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakSampler:  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def measure_stream(
    an: Any, clip: str | os.PathLike[str], *, window: float = 6.0, hop: float = 2.0, mark_every: float = 60.0
) -> dict[str, Any]:
    """Run ``an.stream(clip)`` to the end; RSS (MB) at each ``mark_every`` seconds of input."""
    marks: list[dict[str, float]] = []
    latencies: list[float] = []
    next_mark = mark_every
    windows = 0
    last_end = 0.0
    rss_before = rss_mb()
    t0 = time.perf_counter()
    with PeakSampler() as sampler:
        for w in an.stream(clip, window=window, hop=hop):
            windows += 1
            latencies.append(float(w.latency_ms or 0.0))
            last_end = float(w.end or 0.0)
            if last_end >= next_mark - 1e-6:
                marks.append(
                    {
                        "input_min": round(last_end / 60, 2),
                        "rss_mb": round(rss_mb(), 1),
                        "wall_s": round(time.perf_counter() - t0, 1),
                    }
                )
                next_mark += mark_every
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies or [0.0])
    return {
        "input_s": round(last_end, 1),
        "windows": windows,
        "window_s": window,
        "hop_s": hop,
        "wall_s": round(wall, 2),
        "rtf": round(wall / last_end, 4) if last_end else None,
        "latency_ms_median": round(float(np.median(lat)), 2),
        "latency_ms_p90": round(float(np.percentile(lat, 90)), 2),
        "rss_before_mb": round(rss_before, 1),
        "rss_peak_mb": round(max(sampler.peak, hwm_mb()), 1),
        "rss_marks": marks,
    }


def _child(pack: str, clip: str, threads: int | None) -> None:
    """Measure one clip in this (fresh) process and print the result as JSON."""
    import warnings

    from msa_runtime import Analyzer

    warnings.simplefilter("ignore")
    rss_start = rss_mb()
    an = Analyzer(pack, threads=threads)
    result = measure_stream(an, clip)
    result["rss_process_start_mb"] = round(rss_start, 1)
    result["torch_loaded"] = "torch" in sys.modules
    result["precision"], result["providers"] = an.precision, ",".join(an.providers)
    result["load_avg_1min"] = round(os.getloadavg()[0], 2)  # other work competing for the CPUs
    print(json.dumps(result))


def export_tiny(out: Path) -> Path:
    """Export the tiny preset with msa-export in a subprocess (torch stays out of this one)."""
    cmd = [
        sys.executable,
        "-c",
        "from msa_export.cli import main; main()",
        "--preset",
        "tiny",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"## Stream memory: {meta['host']} ({meta['date']})",
        "",
        (
            f"Pack `{meta['pack_name']}` ({meta['precision']}, {meta['providers']}), "
            f"{meta['cpus']} CPUs, Python {meta['python']}, onnxruntime {meta['onnxruntime']}, "
            f"PyAV {meta['av']}. Input: generated {SIZE[0]}x{SIZE[1]} at {FPS} fps H.264 + "
            f"{RATE // 1000} kHz mono AAC (MP4), `Analyzer.stream(window=6, hop=2)`, "
            "one fresh process per length."
        ),
        "",
        (
            "| input | windows | wall | RTF | latency median / p90 | RSS after load | "
            "RSS peak | RSS growth after min 1 | load avg at end |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        marks = r["rss_marks"]
        growth = f"{marks[-1]['rss_mb'] - marks[0]['rss_mb']:+.1f} MB" if len(marks) > 1 else "n/a"
        lines.append(
            f"| {round(r['input_s'] / 60, 2):g} min | {r['windows']} | {r['wall_s']:.1f} s | "
            f"{r['rtf']:.4f} | {r['latency_ms_median']:.1f} / {r['latency_ms_p90']:.1f} ms | "
            f"{r['rss_before_mb']:.1f} MB | {r['rss_peak_mb']:.1f} MB | {growth} | "
            f"{r.get('load_avg_1min', 'n/a')} |"
        )
    longest = max(results, key=lambda r: r["input_s"])
    marks = longest["rss_marks"]
    if len(marks) > 13:  # minute 1, then every 5 minutes
        marks = [m for i, m in enumerate(marks) if i == 0 or (i + 1) % 5 == 0]
    if marks:
        lines += [
            "",
            f"RSS by minute of input ({round(longest['input_s'] / 60, 2):g}-minute run):",
            "",
            "| minute | " + " | ".join(f"{m['input_min']:g}" for m in marks) + " |",
            "|---" * (len(marks) + 1) + "|",
            "| RSS MB | " + " | ".join(f"{m['rss_mb']:.1f}" for m in marks) + " |",
        ]
    lines += [
        "",
        (
            "RTF = wall time / input duration (below 1: faster than real time); latency = "
            "the runtime's own per-window figure (encoders + head, after decoding). Wall "
            "time and latency depend on other load on the machine (load average column); "
            "RSS does not."
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", default="5,60", help="Input lengths, comma-separated.")
    parser.add_argument("--pack", help="Pack folder (default: export the tiny preset).")
    parser.add_argument("--out", help="JSON result file (default: beside the markdown).")
    parser.add_argument("--threads", type=int, default=None, help="Threads per session.")
    parser.add_argument("--workdir", help="Where the generated clips go (default: a temp dir).")
    parser.add_argument("--child", nargs=2, metavar=("PACK", "CLIP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1], args.threads)
        return
    try:
        minutes = [float(m) for m in args.minutes.split(",") if m.strip()]
    except ValueError:
        parser.error(f"--minutes: expected numbers like 5,60, got {args.minutes!r}")
    if not minutes or min(minutes) <= 0:
        parser.error("--minutes: give positive lengths like 5,60")
    host = socket.gethostname()
    RESULTS.mkdir(parents=True, exist_ok=True)
    md_path = RESULTS / f"stream-memory-{host}.md"
    json_path = Path(args.out) if args.out else md_path.with_suffix(".json")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        pack = args.pack or str(export_tiny(Path(tmp) / "tiny"))
        results = []
        for m in minutes:
            clip = Path(tmp) / f"long-{m:g}min.mp4"
            t0 = time.perf_counter()
            make_long_clip(clip, m * 60)
            gen_s = time.perf_counter() - t0
            print(
                f"{m:g} min: generated {clip.stat().st_size / 2**20:.1f} MB in {gen_s:.1f} s", file=sys.stderr
            )
            cmd = [sys.executable, __file__, "--child", pack, str(clip)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result.update(
                minutes=m, generate_s=round(gen_s, 1), clip_mb=round(clip.stat().st_size / 2**20, 1)
            )
            results.append(result)
            print(
                f"{m:g} min: wall {result['wall_s']} s, RTF {result['rtf']}, "
                f"peak RSS {result['rss_peak_mb']} MB",
                file=sys.stderr,
            )
            clip.unlink()
        import onnxruntime

        from msa_runtime.pack import load_manifest

        manifest = load_manifest(pack, verify=False)
        meta = {
            "host": host,
            "date": time.strftime("%Y-%m-%d"),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "av": av.__version__,
            "pack_name": manifest.name,
            "precision": results[0]["precision"],
            "providers": results[0]["providers"],
        }
    json_path.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    md_path.write_text(markdown(results, meta))
    from charts import chart_for  # stream-memory-<host>.png beside the table

    chart_for(md_path)
    print(md_path.read_text())


if __name__ == "__main__":
    main()
