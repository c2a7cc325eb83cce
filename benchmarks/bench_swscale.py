"""swscale threads: this tree's runtime against a git revision's, decoding and resizing, A/B.

    python benchmarks/bench_swscale.py --baseline REV [--rounds 6] [--repeat 3] [--out FILE.md]

Commit 7c70f23 made swscale single-threaded (``msa_runtime.media.timeline.SWSCALE_THREADS``: a
child forked from another thread froze on a threaded scaler). swscale does two jobs in the
runtime: the YUV -> RGB conversion of each sampled frame while decoding
(``media.timeline.FrameSampler``) and every resize (``preprocess.vision.resize_rgb``: the short
side to the encoder's size, a face crop to 256 px). This times both, with each revision's own
code: ``--baseline``'s ``runtime/`` is extracted to a temporary folder and imported in place of
this tree's (``PYTHONPATH``), in worker processes that take turns round after round (the order
reversed every other round), so a busy neighbour hits both alike. Cases: ``decode`` of generated
H.264 clips (10 s at 25 fps, 640x480 and 1280x720) at 3 fps and at 25 fps; ``resize`` of 15
frames, 640x480 and 1280x720 to a 224 px short side and a 400 px square to 256 (bicubic).
Reported: median ms per case over the rounds and the ratio of the baseline to this tree.
Then, in this process, PyAV's reformatter alone with ``threads`` 0 (swscale's automatic
choice, what the baseline used), 1 (this tree), 2 and 4, alternating within each round: the
swscale setting isolated from the rest of the code. (The face crop as a whole:
``bench_face_clip.py --baseline REV``.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hostinfo import cpu_model

ROOT = Path(__file__).resolve().parent.parent
SIZES = ((640, 480), (1280, 720))


def make_clip(path: Path, width: int, height: int, seconds: float = 10.0, fps: int = 25) -> None:
    """A moving gradient with a moving square, H.264 (yuv420p), no audio."""
    import av
    import numpy as np

    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * fps)):
            rgb = np.stack([(xx + 3 * i) % 256, (yy + 2 * i) % 256, (xx + yy) // 8 % 256], -1)
            x0, y0 = (40 + 7 * i) % (width - 120), (30 + 5 * i) % (height - 120)
            rgb[y0 : y0 + 120, x0 : x0 + 120] = (230, 180, 140)
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def cases(media: Path) -> dict[str, object]:
    """Each case's name and a function of no arguments that runs it once."""
    import numpy as np

    from msa_runtime.media import decode
    from msa_runtime.preprocess.vision import resize_rgb

    rng = np.random.default_rng(0)
    found: dict[str, object] = {}
    for w, h in SIZES:
        clip = media / f"clip_{w}x{h}.mp4"
        for fps in (3.0, 25.0):
            found[f"decode {w}x{h} at {fps:g} fps (10 s)"] = lambda c=clip, f=fps: decode(
                c, fps=f, sample_rate=None
            )
        frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(15)]
        short = (round(w * 224 / h), 224)
        found[f"resize 15 frames {w}x{h} -> {short[0]}x{short[1]}"] = lambda fr=frames, s=short: [
            resize_rgb(x, *s) for x in fr
        ]
    squares = [rng.integers(0, 256, (400, 400, 3), dtype=np.uint8) for _ in range(15)]
    found["resize 15 face squares 400 -> 256"] = lambda: [resize_rgb(x, 256, 256) for x in squares]
    return found


def worker(args: argparse.Namespace) -> None:
    """Warm up every case, then per line on stdin time each ``--repeat`` times; one JSON line."""
    import msa_runtime.media.timeline as timeline

    todo = cases(args.media)
    for run in todo.values():
        run()  # type: ignore[operator]
    threads = getattr(timeline, "SWSCALE_THREADS", "swscale default (auto)")
    print(json.dumps({"ready": True, "threads": threads, "module": timeline.__file__}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        out = {}
        for name, run in todo.items():
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                run()  # type: ignore[operator]
                times.append((time.perf_counter() - t0) * 1e3)
            out[name] = statistics.median(times)
        print(json.dumps(out), flush=True)


def start(args: argparse.Namespace, env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    cmd = [sys.executable, __file__, "--worker", "--media", str(args.media), "--repeat", str(args.repeat)]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, **env}
    )
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline() or "{}")
    if not ready.get("ready"):
        sys.exit("a worker failed to start")
    return proc, ready


def threads_sweep(rounds: int) -> str:
    """Bicubic resizes of 15 frames per ``threads`` value, alternating; a markdown table."""
    import av
    import numpy as np
    from av.video.reformatter import VideoReformatter

    rng = np.random.default_rng(0)
    jobs = {
        "15 frames 640x480 -> 299x224": ((480, 640), (299, 224)),
        "15 frames 1280x720 -> 398x224": ((720, 1280), (398, 224)),
        "15 face squares 400 -> 256": ((400, 400), (256, 256)),
    }
    values = (0, 1, 2, 4)
    times: dict[tuple[str, int], list[float]] = {}
    for name, (shape, (w, h)) in jobs.items():
        frames = [
            av.VideoFrame.from_ndarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8), format="rgb24")
            for _ in range(15)
        ]
        for r in range(rounds):
            for threads in values if r % 2 == 0 else values[::-1]:
                scaler = VideoReformatter()
                for x in frames[:2]:  # the context is built on the first call
                    scaler.reformat(x, width=w, height=h, interpolation="BICUBIC", threads=threads)
                t0 = time.perf_counter()
                for x in frames:
                    scaler.reformat(
                        x, width=w, height=h, interpolation="BICUBIC", threads=threads
                    ).to_ndarray()
                times.setdefault((name, threads), []).append((time.perf_counter() - t0) * 1e3)
    lines = [
        f"PyAV's reformatter alone, by `threads` ({rounds} rounds alternating; median ms (min)):",
        "",
        "| resize | " + " | ".join(f"threads={v}" for v in values) + " |",
        "|---|" + "---:|" * len(values),
    ]
    for name in jobs:
        cells = [f"{statistics.median(times[name, v]):,.1f} ({min(times[name, v]):,.1f})" for v in values]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="git revision to compare with (e.g. 7c70f23^)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, help="append the table to this markdown file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--media", type=Path, help=argparse.SUPPRESS)
    return ap.parse_args()


def extract(rev: str, into: Path) -> dict[str, str]:
    """``rev``'s runtime in ``into``; the environment that imports it."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "runtime"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return {"PYTHONPATH": str(into / "runtime")}


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        args.media = Path(tmp)
        for w, h in SIZES:
            make_clip(args.media / f"clip_{w}x{h}.mp4", w, h)
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        contenders = [(f"this tree ({head})", {"PYTHONPATH": str(ROOT / "runtime")})]
        if args.baseline:
            (Path(tmp) / "base").mkdir()
            contenders.append((args.baseline, extract(args.baseline, Path(tmp) / "base")))
        procs = [(name, *start(args, env)) for name, env in contenders]
        load0, wall0 = os.getloadavg(), time.perf_counter()
        results: dict[str, dict[str, list[float]]] = {name: {} for name, _, _ in procs}
        for r in range(args.rounds):
            for name, proc, _ in procs if r % 2 == 0 else procs[::-1]:
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
                for case, ms in json.loads(proc.stdout.readline()).items():
                    results[name].setdefault(case, []).append(ms)
        for _, proc, _ in procs:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()
        text = report(args, procs, results, load0, time.perf_counter() - wall0)
    text += "\n\n" + threads_sweep(args.rounds * 2)
    print(text)
    if args.out is not None:
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write("\n" + text + "\n")


def report(args: argparse.Namespace, procs: list, results: dict, load0: tuple, wall: float) -> str:  # type: ignore[type-arg]
    names = [name for name, _, _ in procs]
    cpu = cpu_model()
    lines = [
        f"swscale, decode and resize ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {cpu}, "
        f"{os.cpu_count()} cores; {args.rounds} rounds x {args.repeat} runs, contenders alternating; "
        f"load average {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end, {wall:.0f} s)",
        "",
        f"Command: `python benchmarks/bench_swscale.py {' '.join(sys.argv[1:])}`. swscale threads: "
        + "; ".join(f"{name}: {ready['threads']}" for name, _, ready in procs),
        "",
        "| case | "
        + " | ".join(f"{n}, ms (min..max)" for n in names)
        + " | "
        + " | ".join(f"{n} / {names[0]}" for n in names[1:])
        + " |",
        "|---|" + "---:|" * (2 * len(names) - 1),
    ]
    for case in results[names[0]]:
        med = [statistics.median(results[n][case]) for n in names]
        cells = [
            f"{m:,.1f} ({min(results[n][case]):,.1f}..{max(results[n][case]):,.1f})"
            for m, n in zip(med, names)
        ]
        ratios = [f"{m / med[0]:.2f}x" for m in med[1:]]
        lines.append(f"| {case} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
