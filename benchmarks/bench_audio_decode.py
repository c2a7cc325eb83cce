"""Decoding a long audio file into stream chunks (``media.iter_media``: PyAV decode, resampling to
16 kHz mono, cutting into 1 s chunks), for two versions of the runtime side by side.

    python benchmarks/bench_audio_decode.py --runtime OLD/runtime --runtime runtime \
        [--minutes 10] [--rounds 5] [--out benchmarks/results/audio-decode-vm.md]

Each ``--runtime`` folder (a checkout's ``runtime/``, e.g. from ``git worktree add``) is timed in
its own process, the versions alternating round after round on the same generated file (a 48 kHz
stereo FLAC of a tone). Reported: median ms per minute of audio, and each version over the first.
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


def make_file(path: Path, minutes: float) -> Path:
    import av
    import numpy as np

    rate = 48000
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=rate, layout="stereo")
        step = rate
        for i in range(round(minutes * 60)):
            t = np.arange(i * step, (i + 1) * step) / rate
            tone = (np.sin(2 * np.pi * 220 * t) * 0.3).astype(np.float32)
            both = np.stack([tone, tone]).T.reshape(1, -1)  # packed stereo
            frame = av.AudioFrame.from_ndarray(both, format="flt", layout="stereo")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def time_once(path: str) -> None:
    """(in the worker) Decode ``path`` once and print the seconds it took and the samples."""
    from msa_runtime import media

    t0 = time.perf_counter()
    chunks = media.iter_media(path, fps=None, sample_rate=16000, chunk_seconds=1.0)
    samples = sum(len(c.samples) for c in chunks)
    print(json.dumps({"s": time.perf_counter() - t0, "samples": samples, "from": media.__file__}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtime", action="append", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        time_once(args.worker)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = make_file(Path(tmp) / "long.flac", args.minutes)
        times: dict[Path, list[float]] = {r: [] for r in args.runtime}
        counts: dict[Path, int] = {}
        for i in range(args.rounds):
            order = args.runtime if i % 2 == 0 else args.runtime[::-1]
            for runtime in order:
                env = {**os.environ, "PYTHONPATH": str(runtime.resolve())}
                argv = [sys.executable, __file__, "--runtime", str(runtime), "--worker", str(path)]
                out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
                got = json.loads(out.stdout.strip().splitlines()[-1])
                if not got["from"].startswith(str(runtime.resolve())):
                    raise SystemExit(f"{runtime}: the worker imported {got['from']} instead")
                times[runtime].append(got["s"] * 1e3 / args.minutes)
                counts[runtime] = got["samples"]
    load = os.getloadavg()
    first = statistics.median(times[args.runtime[0]])
    lines = [
        "# Decoding a long audio file into stream chunks (bench_audio_decode.py)",
        "",
        f"{cpu_model()}, {os.cpu_count()} cores; a {args.minutes:g} min 48 kHz stereo FLAC -> 16 kHz mono "
        f"1 s chunks; {args.rounds} rounds, versions alternating; load average {load[0]:.1f} at the end.",
        "",
        "| runtime | median ms per minute of audio | over the first | samples out |",
        "|---|---:|---:|---:|",
    ]
    for runtime in args.runtime:
        med = statistics.median(times[runtime])
        lines.append(f"| `{runtime}` | {med:,.1f} | {med / first:.3f}x | {counts[runtime]:,} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
