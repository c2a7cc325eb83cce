"""Incremental speech recognition over a live stream's audio, for text that does not flicker.

:class:`LiveTranscriber` keeps the audio not yet transcribed for good (the same sample arrays the
stream decoded once for its audio encoder) and, at each :meth:`~LiveTranscriber.update`:

1. runs the VAD over the audio that arrived since the last update; without speech there and
   without words waiting for confirmation, nothing is decoded (silence costs only the VAD);
2. otherwise decodes the buffer (Whisper pads it to 30 s, so one decode costs about the same for
   any buffer length) with the confirmed text before the buffer as prompt;
3. **commits** the words on which this decode and the previous one agree, from the start (the
   longest common prefix, compared without case and punctuation): a word is final once two
   consecutive decodes give it, and never changes after;
4. drops the audio of committed words from the buffer once it is long (``trim_seconds``), and
   forces a commit if no agreement comes within ``max_seconds``.

:meth:`~LiveTranscriber.finish` (the input ended, possibly mid-word) decodes once more and
commits whatever that decode holds. Committed words carry times on the stream's clock, so
:func:`msa_runtime.asr.transcript.text_between` places them into windows.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np

from msa_runtime.asr.recognizer import SAMPLE_RATE, Recognizer, Word
from msa_runtime.asr.transcript import Cue

_NORM = re.compile(r"[^\w']+")


def _key(word: Word) -> str:
    return _NORM.sub("", word.text.lower())


@dataclass
class LiveStats:
    """Counters of a live transcription: decodes run, updates the VAD let pass without decoding,
    decoding time (ms), VAD time (ms)."""

    decodes: int = 0
    skipped: int = 0
    decode_ms: float = 0.0
    vad_ms: float = 0.0


class LiveTranscriber:
    """Commit words stable across two decodes of a growing audio buffer (see the module doc).

    ``recognizer``: a :class:`~msa_runtime.asr.recognizer.Recognizer`. ``min_step``: seconds of new audio
    an update needs before it decodes again. ``trim_seconds``: buffer length beyond which the
    audio of committed words is dropped. ``max_seconds``: buffer length at which the current
    hypothesis is committed without agreement (Whisper sees at most 30 s).
    """

    def __init__(
        self,
        recognizer: Recognizer,
        *,
        min_step: float = 1.0,
        trim_seconds: float = 12.0,
        max_seconds: float = 24.0,
    ) -> None:
        if not 0 < trim_seconds < max_seconds <= 30:
            raise ValueError("need 0 < trim_seconds < max_seconds <= 30")
        self.rec = recognizer
        self.min_step, self.trim_seconds, self.max_seconds = min_step, trim_seconds, max_seconds
        self.chunks: list[np.ndarray] = []
        self.buffer_start: float | None = None  # time of the buffer's first sample
        self.buffered = 0
        self.vad_done = 0.0  # stream time up to which the VAD has looked
        self.decoded_until = 0.0
        self.heard_speech = False  # speech since the last decode
        self.committed: list[Word] = []
        self.hypothesis: list[Word] = []
        self.stats = LiveStats()

    @property
    def end(self) -> float:
        """Stream time just after the last buffered sample."""
        return (self.buffer_start or 0.0) + self.buffered / SAMPLE_RATE

    def add(self, samples: np.ndarray, start: float) -> None:
        """Append 16 kHz mono samples that begin at stream time ``start`` (a gap is closed)."""
        if self.buffer_start is None:
            self.buffer_start = start
            self.vad_done = self.decoded_until = start
        self.chunks.append(np.asarray(samples, np.float32).reshape(-1))
        self.buffered += self.chunks[-1].size

    def forget_before(self, t: float) -> None:
        """Drop committed words that ended before ``t`` (the prompt keeps the last few)."""
        keep = 32
        while len(self.committed) > keep and self.committed[0].end < t:
            self.committed.pop(0)

    def cues(self) -> list[Cue]:
        """The committed words as cues (one per word)."""
        return [Cue(w.start, w.end, w.text) for w in self.committed]

    def update(self, until: float | None = None) -> list[Word]:
        """Transcribe the audio buffered up to ``until`` (default: all) when worth it; returns
        the words committed by this call."""
        if self.buffer_start is None:
            return []
        until = self.end if until is None else min(until, self.end)
        if until - self.decoded_until < self.min_step:
            return []
        self._vad(until)
        if not self.heard_speech and not self.hypothesis:
            self.stats.skipped += 1
            self.decoded_until = until
            self._drop_before(until - 0.5)  # keep a little context for a word starting now
            return []
        words = self._decode(until)
        agreed = 0
        for old, new in zip(self.hypothesis, words):
            if _key(old) != _key(new):
                break
            agreed += 1
        done = self._commit(words[:agreed])
        self.hypothesis = words[agreed:]
        if until - self.buffer_start >= self.max_seconds and self.hypothesis:
            done += self._commit(self.hypothesis)
            self.hypothesis = []
        self._trim()
        return done

    def finish(self) -> list[Word]:
        """The input ended: decode what is left once and commit all of it."""
        if self.buffer_start is None or self.end <= self.decoded_until:
            done = self._commit(self.hypothesis)
            self.hypothesis = []
            return done
        self._vad(self.end)
        if not self.heard_speech and not self.hypothesis:
            self.stats.skipped += 1
            return []
        done = self._commit(self._decode(self.end))
        self.hypothesis = []
        return done

    # -- internals --------------------------------------------------------------------------

    def _audio(self, start: float, end: float) -> np.ndarray:
        data = np.concatenate(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
        self.chunks = [data]
        a = max(0, round((start - (self.buffer_start or 0.0)) * SAMPLE_RATE))
        b = max(a, round((end - (self.buffer_start or 0.0)) * SAMPLE_RATE))
        return data[a:b]

    def _vad(self, until: float) -> None:
        """Look for speech in the audio since the VAD last looked (with 0.5 s of context)."""
        t0 = time.perf_counter()
        start = max(self.buffer_start or 0.0, self.vad_done - 0.5)
        if until > self.vad_done and self.rec.speech(self._audio(start, until)):
            self.heard_speech = True
        self.vad_done = max(self.vad_done, until)
        self.stats.vad_ms += (time.perf_counter() - t0) * 1e3

    def _decode(self, until: float) -> list[Word]:
        start = self.buffer_start or 0.0
        prompt = " ".join(w.text for w in self.committed if w.end <= start)[-200:]
        result = self.rec.transcribe(
            self._audio(start, until), offset=start, vad=False, prompt=prompt or None
        )
        self.stats.decodes += 1
        self.stats.decode_ms += result.decode_ms
        self.decoded_until, self.heard_speech = until, False
        last = self.committed[-1].end if self.committed else -1.0
        # Words already committed are heard again while their audio stays buffered: skip them.
        return [w for w in result.words if w.start >= last - 0.05 and w.end > last]

    def _commit(self, words: list[Word]) -> list[Word]:
        self.committed.extend(words)
        return list(words)

    def _trim(self) -> None:
        if self.buffer_start is None or self.end - self.buffer_start < self.trim_seconds:
            return
        if self.committed:
            self._drop_before(self.committed[-1].end)
        if self.end - self.buffer_start > self.max_seconds:  # speech the model gives no words for
            self._drop_before(self.end - self.trim_seconds)

    def _drop_before(self, t: float) -> None:
        if self.buffer_start is None or t <= self.buffer_start:
            return
        data = self._audio(self.buffer_start, self.end)
        n = min(data.size, round((t - self.buffer_start) * SAMPLE_RATE))
        self.chunks = [data[n:]]
        self.buffered = data.size - n
        self.buffer_start += n / SAMPLE_RATE
