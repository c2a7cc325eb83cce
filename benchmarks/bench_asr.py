"""Speech recognition cost on this machine: Whisper tiny / base / small-sized models (seeded random
weights at the real sizes, converted offline with CTranslate2's converter) per clip and per stream
hop, side by side with the packs' encoders.

    python benchmarks/bench_asr.py [--sizes tiny,base,small] [--threads 2] [--repeat 5]
                                   [--pack edge=packs/edge] [--pack ando2022-mosi=packs/mosi]

Per size: model load time and size on disk (int8 compute, as the runtime loads it); the cost of
transcribing a 5 s clip (VAD + one decode with word timestamps); the cost of a live stream over
about 60 s of speech (``LiveTranscriber`` fed 1 s chunks as a stream delivers them, decoding at
most once a second; silence between utterances): ASR time per 2 s hop, decodes and VAD-skipped
updates, and the ASR real-time factor. Random weights do not
recognise anything: every decode runs to the runtime's token budget (8 tokens per second of
audio + 16), an upper bound of what real speech costs. The encoders' per-clip and per-hop cost
comes from ``--pack`` folders timed in this same run (``Analyzer.predict`` on the clip, and the
windows of ``Analyzer.stream`` over the same audio), else from the latest ``bench_e2e.py`` run
in ``results/<host>.json`` (labelled as such). "Fits real time" = encoders + ASR per 2 s hop
within 2 s on these cores, one after the other.

Writes ``results/asr-<host>.json`` and ``results/asr-<host>.md``. Speech comes from
``../shared/data/speech/*.ogg`` when present, else a generated tone sequence.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache" / "whisper"
SPEECH = ROOT.parent / "shared" / "data" / "speech"
RATE = 16000
HOP, WINDOW = 2.0, 6.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Cpu:
    """Share of the CPUs other processes (and the hypervisor) took meanwhile, from /proc/stat."""

    def __init__(self) -> None:
        self.a = self._read()

    @staticmethod
    def _read() -> tuple[list[int], float]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return fields, ru.ru_utime + ru.ru_stime

    def result(self) -> dict[str, float]:
        (a, own_a), (b, own_b) = self.a, self._read()
        d = [y - x for x, y in zip(a, b)]
        hz = os.sysconf("SC_CLK_TCK")
        total = max(sum(d[:8]) / hz, 1e-9)
        busy = (d[0] + d[1] + d[2] + d[5] + d[6]) / hz
        return {
            "others_cpu_share": round(max(0.0, busy - (own_b - own_a)) / total, 3),
            "steal_share": round((d[7] / hz if len(d) > 7 else 0.0) / total, 3),
        }


def stats(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {
        "median": round(statistics.median(v), 1),
        "p90": round(v[int(0.9 * (len(v) - 1))], 1),
        "min": round(v[0], 1),
        "n": len(v),
    }


def speech_audio() -> tuple[np.ndarray, str]:
    """About 60 s: the shared LibriSpeech utterances with 2 s of silence between them."""
    from msa_runtime import media

    files = sorted(SPEECH.glob("*.ogg"))
    if files:
        parts = []
        for f in files:
            parts += [media.decode(f, fps=None, sample_rate=RATE).audio, np.zeros(2 * RATE, np.float32)]
        audio = np.concatenate(parts)
        while len(audio) < 60 * RATE:
            audio = np.concatenate([audio, audio])
        return audio[: 60 * RATE], f"{len(files)} LibriSpeech utterances + 2 s silences, looped"
    t = np.arange(60 * RATE) / RATE
    env = (np.sin(2 * np.pi * 0.2 * t) > 0).astype(np.float32)
    tone = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))
    return (env * tone).astype(np.float32), "generated tones (no speech data found)"


def model_for(size: str) -> Path:
    folder = CACHE / size
    if not (folder / "model.bin").is_file():
        from msa_export.models.asr import build_random_whisper

        log(f"building a random-weight Whisper {size} (cached in {folder}) ...")
        build_random_whisper(folder, size, force=True)
    return folder


def load_size(size: str, threads: int) -> tuple[Any, dict[str, Any]]:
    from msa_runtime.asr.recognizer import Recognizer

    folder = model_for(size)
    t0 = time.perf_counter()
    rec = Recognizer(folder, language="en", threads=threads)
    return rec, {
        "size": size,
        "load_s": round(time.perf_counter() - t0, 2),
        "disk_mb": round(sum(f.stat().st_size for f in folder.iterdir()) / 1e6, 1),
    }


def stream_size(rec: Any, audio: np.ndarray) -> dict[str, Any]:
    """A live stream over ``audio`` in 1 s chunks: ASR time per 2 s hop, decodes, VAD skips."""
    from msa_runtime.asr.live import LiveTranscriber

    cpu = Cpu()
    live = LiveTranscriber(rec)
    hop_ms = []
    step = RATE  # 1 s chunks, as a stream delivers them; the transcriber decodes at most 1/s
    t_start = time.perf_counter()
    spent = 0.0
    for a in range(0, len(audio), step):
        live.add(audio[a : a + step], a / RATE)
        t1 = time.perf_counter()
        live.update()
        spent += (time.perf_counter() - t1) * 1e3
        if (a // step + 1) % round(HOP) == 0:  # per 2 s hop: the updates within it
            hop_ms.append(spent)
            spent = 0.0
    t1 = time.perf_counter()
    live.finish()
    finish_ms = (time.perf_counter() - t1) * 1e3
    wall = time.perf_counter() - t_start
    return {
        "hop_ms": stats(hop_ms),
        "finish_ms": round(finish_ms, 1),
        "decodes": live.stats.decodes,
        "skipped": live.stats.skipped,
        "vad_ms_per_hop": round(live.stats.vad_ms / max(len(hop_ms), 1), 1),
        "committed_words": len(live.committed),
        "stream_s": round(len(audio) / RATE, 1),
        "asr_rtf": round(wall / (len(audio) / RATE), 3),
        "stream_cpu": cpu.result(),
    }


TEXT = "the movie was really wonderful and i loved it"


def pack_clip_job(folder: str, clip: np.ndarray, threads: int) -> tuple[Any, Any]:
    """A pack's encoders + head on the clip (its audio, 15 frames of noise when the pack has
    vision, a sentence), as a callable timed beside the ASR models."""
    from msa_runtime import Analyzer

    an = Analyzer(folder, providers="cpu", threads=threads)
    frames = None
    if "vision" in an.modalities:
        frames = np.random.default_rng(0).integers(0, 256, (15, 480, 640, 3), dtype=np.uint8)

    def job() -> None:
        an.predict_arrays(frames=frames, audio=clip, sample_rate=RATE, text=TEXT)

    return an, job


def pack_stream(name: str, an: Any, audio: np.ndarray, tmp: Path) -> dict[str, float]:
    """Window latency of ``Analyzer.stream`` over 30 s of the audio (a WAV file: audio + text)."""
    import av

    wav = tmp / f"{name}.wav"
    with av.open(str(wav), "w") as out:
        s = out.add_stream("pcm_s16le", rate=RATE, layout="mono")
        pcm = (np.clip(audio[: 30 * RATE], -1, 1) * 32767).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = RATE
        for p in s.encode(frame):
            out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    lat = [w.latency_ms or 0.0 for w in an.stream(str(wav), text=TEXT, window=WINDOW, hop=HOP)]
    return stats(lat)


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
        "greedy decoding, word timestamps; seeded random weights at the real sizes",
        f"- clip: {res['clip_s']} s of speech; stream: {res['stream_s']} s ({res['speech']}), "
        f"{HOP:.0f} s hops",
        "",
        "Random weights recognise nothing: each decode emits up to the runtime's token budget "
        "(8 tokens per second of audio + 16), so these are upper bounds of the decoding cost; "
        "the encoder pass (30 s of mel frames per decode, whatever the audio length) is the "
        "real one.",
        "",
        "## Whisper sizes",
        "",
        "| size | disk MB (fp32) | load s | clip ms (median / p90) | stream ASR ms per 2 s hop "
        "(median / p90) | decodes / skipped (VAD) | VAD ms per hop | ASR real-time factor "
        "| others' CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["sizes"]:
        lines.append(
            f"| {r['size']} | {r['disk_mb']:,} | {r['load_s']} | {r['clip_ms']['median']:,} / "
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
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,base,small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pack", action="append", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--stream-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
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
    # clips: every contender once per round, rounds repeated, so load swings hit all alike
    clip_ms: dict[str, list[float]] = {}
    words: dict[str, int] = {}
    cpu = Cpu()
    for rnd in range(args.repeat + 1):
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
    clip_cpu = cpu.result()
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
    import ctranslate2
    import faster_whisper
    import onnxruntime

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True, capture_output=True
    ).stdout.strip()
    res = {
        "host": socket.gethostname(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average at end {os.getloadavg()[0]:.2f}",
        "versions": f"faster-whisper {faster_whisper.__version__}, ctranslate2 "
        f"{ctranslate2.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"Python {platform.python_version()}, msa-edge commit {commit}",
        "threads": args.threads,
        "repeat": args.repeat,
        "clip_s": 5.0,
        "stream_s": round(len(audio) / RATE, 1),
        "speech": speech,
        "sizes": sizes,
        "packs": packs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"asr-{socket.gethostname()}"
    base.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    base.with_suffix(".md").write_text(render(res))
    print(render(res))


if __name__ == "__main__":
    main()
