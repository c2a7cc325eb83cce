"""The scoring paths' speech-to-text step: which ASR model an :class:`~msa_runtime.Analyzer` uses,
a clip's transcript, and a stream's incrementally committed words (extra ``msa-edge[asr]``).

Audio reaches ASR as the scoring paths decoded it (once, at the pack's rate); it is resampled to
Whisper's 16 kHz only when the pack's rate differs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, Union

import numpy as np

from msa_runtime.asr.live import LiveTranscriber
from msa_runtime.asr.recognizer import SAMPLE_RATE, Recognizer, Transcript, pack_model
from msa_runtime.asr.transcript import Cue
from msa_runtime.errors import AsrError, InputError

AsrOption: TypeAlias = Union[str, "os.PathLike[str]", bool, Recognizer, None]
"""``None``/``False``: no ASR; ``True`` or ``"pack"``: the pack's model (``msa-export --asr``); a
size, hub id or folder; or a ready :class:`Recognizer`."""


def make_recognizer(
    asr: AsrOption,
    pack: Path,
    extras: dict[str, Any],
    *,
    language: str | None = None,
    threads: int | None = None,
    offline: bool | None = None,
) -> Recognizer | None:
    """The :class:`Recognizer` an Analyzer uses for ``asr`` (see :data:`AsrOption`)."""
    if asr is None or asr is False:
        return None
    if isinstance(asr, Recognizer):
        if language is not None and asr.check_language(language) != asr.language:
            raise InputError(
                f"language={language!r} with a ready Recognizer (language {asr.language!r}): "
                "give the language to Recognizer(..., language=...) instead"
            )
        return asr
    if asr is True or asr == "pack":
        folder = pack_model(pack, extras)
        if folder is None:
            raise AsrError(
                f"pack {pack} carries no ASR model: give one (--asr small, a hub id or "
                "a folder) or re-export the pack with msa-export --asr MODEL"
            )
        return Recognizer(folder, language=language, threads=threads, offline=True)
    return Recognizer(asr, language=language, threads=threads, offline=offline)


def wants_asr(recognizer: Recognizer | None, asr: bool | None, text: str | None, transcript: object) -> bool:
    """Whether a scoring path transcribes its input's speech: never when ``asr`` is False or text
    or a transcript is given; else when the Analyzer has a ``recognizer`` (``asr=True`` without
    one is an :class:`AsrError`)."""
    if asr is False or text is not None or transcript is not None:
        return False
    if recognizer is None:
        if asr:
            raise AsrError(
                "this Analyzer has no ASR model: give one (Analyzer(..., asr='small'), msa-run --asr small)"
            )
        return False
    return True


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mono float samples at ``rate`` -> 16 kHz (FFmpeg's resampler; a no-op at 16 kHz)."""
    if rate == SAMPLE_RATE:
        return samples
    from msa_runtime.media.resample import resample_audio

    return resample_audio(samples, rate, SAMPLE_RATE)


@dataclass(frozen=True)
class ClipText:
    """A clip's transcript as the scoring path uses it."""

    text: str
    notes: tuple[str, ...]
    ms: float
    transcript: Transcript | None


def clip_text(
    rec: Recognizer, audio: np.ndarray | None, rate: int | None, *, offset: float = 0.0
) -> ClipText:
    """Transcribe a decoded clip; no audio or no speech gives empty text and a note."""
    if audio is None or not len(audio) or not rate:
        return ClipText("", ("asr: the input has no audio track: nothing to transcribe",), 0.0, None)
    t0 = time.perf_counter()
    tr = rec.transcribe(to_16k(audio, rate), offset=offset)
    ms = (time.perf_counter() - t0) * 1e3
    if not tr.words:
        return ClipText("", ("asr: no speech found: scored without text",), ms, tr)
    lang = f", language {tr.language}" if tr.language else ""
    return ClipText(
        tr.text, (f"asr: {len(tr.words)} words from {tr.speech_seconds:.1f} s of speech{lang}",), ms, tr
    )


class StreamText:
    """A stream's words: audio chunks in (as decoded for the pack), committed words out.

    :meth:`cues_until` updates the live transcription up to a window's end and returns the
    committed cues; :meth:`finish` commits the rest when the input ends.
    """

    def __init__(self, rec: Recognizer, rate: int) -> None:
        self.live = LiveTranscriber(rec)
        self.rate = rate
        self._resampler: Any = None
        self.ms = 0.0

    def add(self, samples: np.ndarray, start: float) -> None:
        if self.rate != SAMPLE_RATE:
            samples = self._resample(samples)
        self.live.add(samples, start)

    def _resample(self, samples: np.ndarray) -> np.ndarray:
        import av

        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        frame = av.AudioFrame.from_ndarray(np.asarray(samples, np.float32)[None], format="flt", layout="mono")
        frame.sample_rate = self.rate
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def cues_until(self, end: float) -> tuple[list[Cue], float]:
        """Committed words after transcribing up to ``end``, and the ms this call took."""
        t0 = time.perf_counter()
        self.live.update(end)
        ms = (time.perf_counter() - t0) * 1e3
        self.ms += ms
        return self.live.cues(), ms

    def finish(self) -> float:
        t0 = time.perf_counter()
        self.live.finish()
        ms = (time.perf_counter() - t0) * 1e3
        self.ms += ms
        return ms

    def forget_before(self, t: float) -> None:
        self.live.forget_before(t)
