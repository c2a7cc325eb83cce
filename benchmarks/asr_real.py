"""What ``bench_asr.py`` measures with the real Whisper tiny.en on real speech (espeak-ng sentences,
``tests/real_speech.py``): word error rate per form of the clip, and packs' streams with ASR on
(real-time factor, window latency, the delay from a word's end to the first window carrying it).

Imported by ``bench_asr.py``; needs the ``speech-test`` extra and Debian's espeak-ng."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from asr_parts import HOP, RATE, ROOT, WINDOW, Cpu, log, stats

sys.path.insert(0, str(ROOT / "tests"))
import real_speech as rs  # noqa: E402


def available() -> str | None:
    """Why the real-speech measurements cannot run here (None when they can)."""
    return rs.skip_reason()


def p95(values: list[float]) -> float:
    v = sorted(values)
    return round(v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))], 1)


def _heard(rec: Any, path: Path) -> tuple[str, float]:
    """A file's text through the runtime's own path: decoded at 16 kHz mono, then transcribed."""
    from msa_runtime import media

    audio = media.decode(path, fps=None, sample_rate=RATE).audio
    tr = rec.transcribe(audio)
    return tr.text, tr.decode_ms


def quality(rec: Any) -> dict[str, Any]:
    """WER of the clip in every rate/channel/container form and with noise, then of every
    sentence alone at 16 and 8 kHz (which sentences tiny.en hears well)."""
    talk = rs.clip_talk()
    forms = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rate in rs.RATES:
            for channels in rs.CHANNELS:
                data = rs.render(talk, rate, channels)
                for kind, write in (("wav", rs.write_wav), ("mp4", rs.write_mp4)):
                    path = write(folder / f"clip.{kind}", data, rate)
                    text, ms = _heard(rec, path)
                    error = round(rs.wer(talk.text, text), 3)
                    name = f"{rs.form_name(rate, channels)} {kind}"
                    forms.append({"form": name, "wer": error, "decode_ms": round(ms), "text": text})
                    log(f"  {forms[-1]['form']}: WER {forms[-1]['wer']}")
        noisy = []
        for snr in (20.0, 15.0, 10.0):
            for seed in (1, 2):
                loud = rs.with_noise(talk, snr, seed)
                path = rs.write_wav(folder / "noisy.wav", rs.render(loud, 16000, 1), 16000)
                text, _ = _heard(rec, path)
                noisy.append(
                    {"snr_db": snr, "seed": seed, "wer": round(rs.wer(talk.text, text), 3), "text": text}
                )
    sentences = []
    for i, text in enumerate(rs.SENTENCES):
        row: dict[str, Any] = {"sentence": i, "text": text}
        for rate in (16000, 8000):
            one = rs.compose([text], lead=0.5, gaps=[], tail=0.5)
            data = rs.render(one, rate, 1)[0]
            from msa_runtime.asr.speech import to_16k

            row[f"wer_{rate // 1000}k"] = round(rs.wer(text, rec.transcribe(to_16k(data, rate)).text), 3)
        sentences.append(row)
    return {
        "clip": talk.text,
        "clip_s": round(talk.duration, 2),
        "forms": forms,
        "noise": noisy,
        "sentences": sentences,
    }


def _sample(live: Any, committed: list[Any]) -> int:
    """Append the words ``live`` committed since the last call to ``committed`` (its own list
    forgets old words, keeping at least the last 32, so the last word seen is still there)."""
    words = live.committed
    start = 0
    if committed:
        last = committed[-1]
        start = next((i + 1 for i in range(len(words) - 1, -1, -1) if words[i] is last), 0)
    committed.extend(words[start:])
    return len(committed)


def word_delays(windows: list[tuple[Any, int]], committed: list[Any]) -> dict[str, Any]:
    """For every committed word (its ASR end time), the first window in emission order that
    overlaps it and was scored after the word was committed: the stream-time delay from the
    word's end to that window's end, and how much of it the commit rule adds: the carrying
    window's end minus the end of the first window that could have carried the word (the first
    one ending after it; the rest of the delay is the window grid's)."""
    delay, late, never = [], [], []
    for i, word in enumerate(committed):
        could = next((w for w, _ in windows if w.end >= word.end and w.start < word.end), None)
        for w, known in windows:
            if known > i and w.start < word.end and w.end > word.start:
                delay.append(w.end - word.end)
                late.append(max(0.0, w.end - could.end) if could is not None else 0.0)
                break
        else:
            never.append(word.text)
    out: dict[str, Any] = {
        "words": len(committed),
        "never_carried": never,
        "first_possible": sum(v == 0.0 for v in late),
    }
    for key, values in (("stream_s", delay), ("asr_late_s", late)):
        if values:
            out[key] = {
                "median": round(float(np.median(values)), 2),
                "p95": round(p95(values), 2),
                "max": round(max(values), 2),
            }
    return out


def pack_stream_asr(name: str, folder: str, rec: Any, threads: int) -> dict[str, Any]:
    """A pack's ``Analyzer.stream`` with ASR over the stream talk (a 44.1 kHz stereo MP4 of a
    moving face, 640x360): wall-clock real-time factor, window latency, ASR ms per window, WER of
    the committed words, word delays."""
    import warnings

    from msa_runtime import Analyzer
    from msa_runtime.scoring.stream import prepare, run_windows

    talk = rs.stream_talk()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an = Analyzer(folder, providers="cpu", threads=threads, asr=rec)
    with tempfile.TemporaryDirectory() as tmp:
        path = rs.write_mp4(Path(tmp) / "stream.mp4", rs.render(talk, 44100, 2), 44100, size=(640, 360))
        an.warm_up()
        cpu = Cpu()
        t0 = time.perf_counter()
        state, items, kinds = prepare(an, path, text=None, transcript=None, window=WINDOW, hop=HOP, asr=True)
        live, committed = state.speech.live, []
        windows = [(w, _sample(live, committed)) for w in run_windows(state, items, kinds)]
        _sample(live, committed)
        wall = time.perf_counter() - t0
    an.close()
    lat = [w.latency_ms or 0.0 for w, _ in windows]
    asr = [w.timings_ms.get("asr", 0.0) for w, _ in windows]
    live = state.speech.live.stats
    return {
        "pack": name,
        "modalities": list(an.modalities),
        "stream_s": round(talk.duration, 2),
        "windows": len(windows),
        "rtf": round(wall / talk.duration, 3),
        "latency_ms": {**stats(lat), "p95": p95(lat)},
        "asr_ms": {**stats(asr), "p95": p95(asr)},
        "decodes": live.decodes,
        "skipped": live.skipped,
        "wer": round(rs.wer(talk.text, " ".join(w.text for w in committed)), 3),
        "delay": word_delays(windows, committed),
        "cpu": cpu.result(),
    }


def render_real(res: dict[str, Any]) -> list[str]:
    """The markdown of the real model's sections (quality, streams with ASR on)."""
    real = res.get("real") or {}
    if "skipped" in real:
        return ["## Real speech", "", f"Not measured in this run: {real['skipped']}.", ""]
    lines: list[str] = []
    q = real.get("quality")
    if q:
        lines += [
            "## Recognition: the real tiny.en on espeak-ng speech",
            "",
            f"The test clip ({q['clip_s']} s, three sentences with 1 and 1.5 s pauses; "
            "`tests/real_speech.py`) in every form, decoded by the runtime at 16 kHz mono, then "
            "transcribed. Stereo: the speech on the right channel only. Word error rate against "
            f'the text: "{q["clip"]}"',
            "",
            "| form | WER | decode ms | heard |",
            "|---|---:|---:|---|",
        ]
        lines += [f"| {f['form']} | {f['wer']:.3f} | {f['decode_ms']:,} | {f['text']} |" for f in q["forms"]]
        lines += ["", "White noise added at an SNR over the speech (16 kHz mono WAV):", "",
                  "| SNR dB | seed | WER |", "|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {n['snr_db']:g} | {n['seed']} | {n['wer']:.3f} |" for n in q["noise"]]
        lines += ["", "Each sentence alone (16 kHz, and band-limited to 8 kHz):", "",
                  "| # | sentence | WER 16 kHz | WER 8 kHz |", "|---:|---|---:|---:|"]  # fmt: skip
        lines += [
            f"| {r['sentence']} | {r['text']} | {r['wer_16k']:.3f} | {r['wer_8k']:.3f} |"
            for r in q["sentences"]
        ]
        lines.append("")
    streams = real.get("streams") or []
    if streams:
        lines += [
            "## Streams with ASR on (real tiny.en)",
            "",
            f"`Analyzer.stream` over a {streams[0]['stream_s']} s MP4 (640x360 moving face, "
            f"44.1 kHz stereo espeak-ng speech, a 4 s silent gap), {WINDOW:.0f} s windows every "
            f"{HOP:.0f} s, int8, one process, the file read as fast as it is scored. Word delay: "
            "from a committed word's end (its ASR time) to the end of the first window that "
            "carries it, in stream time; of which the commit rule's share: that window's end minus "
            "the end of the first window that ends after the word (the rest is the window grid). "
            "A live source adds each window's latency on top, and falls behind when the "
            "real-time factor is above 1.",
            "",
            "| pack | modalities | real-time factor | window latency ms (median / p95) | ASR ms per "
            "window (median / p95) | decodes / skipped | committed WER | word delay s (median / p95 "
            "/ max) | of which the commit rule s (median / p95 / max) | words in the first window "
            "that could carry them | words never carried | others' CPU |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in streams:
            d = s["delay"]
            ds, dl = d.get("stream_s", {}), d.get("asr_late_s", {})
            lines.append(
                f"| {s['pack']} | {', '.join(s['modalities'])} | {s['rtf']} | "
                f"{s['latency_ms']['median']:,} / {s['latency_ms']['p95']:,} | "
                f"{s['asr_ms']['median']:,} / {s['asr_ms']['p95']:,} | {s['decodes']} / {s['skipped']} | "
                f"{s['wer']:.3f} | {ds.get('median')} / {ds.get('p95')} / {ds.get('max')} | "
                f"{dl.get('median')} / {dl.get('p95')} / {dl.get('max')} | "
                f"{d['first_possible']} of {d['words']} | {len(d['never_carried'])} | "
                f"{s['cpu']['others_cpu_share']:.0%} |"
            )
        lines.append("")
    return lines
