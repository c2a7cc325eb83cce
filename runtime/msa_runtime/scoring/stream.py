"""Sliding windows over a long file or a live source, for :meth:`Analyzer.stream`.

One demux pass feeds two bounded buffers: raw audio covering the current window, and the
features of the frames in it. A frame is encoded once, when the first window containing it is
scored, and dropped when it leaves the last one, so memory stays flat however long the input.
With a face-crop pack, detection runs with the frame's encoding (once per frame), and the chosen
face carries over from window to window.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np

from msa_runtime import checks, media
from msa_runtime.asr.speech import wants_asr
from msa_runtime.asr.transcript import Cue, read_transcript
from msa_runtime.errors import InputError, MediaError
from msa_runtime.media import stdin
from msa_runtime.preprocess import FaceTrack, face_note, split_face_time
from msa_runtime.scoring.context import ScoringContext
from msa_runtime.scoring.core import Features, Job, Prediction, feature, text_for_span

if TYPE_CHECKING:
    from msa_runtime.asr.speech import StreamText

#: Seconds a track may trail the others before windows stop waiting for it (at least a window).
LAG = 2.0


class _Windows:
    def __init__(
        self,
        an: ScoringContext,
        window: float,
        hop: float,
        text: str | None,
        cues: list[Cue] | None,
        speech: StreamText | None = None,
        decode_rate: int = 0,
    ) -> None:
        self.an, self.window, self.hop, self.text, self.cues = an, window, hop, text, cues
        self.decode_rate = decode_rate  # the audio's rate as decoded (0: no audio decoded)
        self.speech = speech  # live ASR: fed the same decoded audio as the audio encoder
        self.asr_ms = 0.0  # ASR time spent since the last window
        self.rate = an.sample_rate or 0
        self.fps = an.fps or 0.0
        self.audio = np.zeros(0, np.float32)
        self.audio_start = 0.0
        self.pending: list[media.Frame] = []
        # (time, features, face found; True for centre-crop packs)
        self.cached: deque[tuple[float, np.ndarray, bool]] = deque()
        self.encoded_frames = 0
        self.track = FaceTrack()

    def add(self, item: media.AudioChunk | media.Frame) -> None:
        if isinstance(item, media.Frame):
            self.pending.append(item)
        else:
            if self.speech is not None:
                self.speech.add(item.samples, item.start)
                self.asr_ms += self.speech.cues_until(self.speech.live.end)[1]
            if not self.rate:  # audio decoded for ASR alone (the pack has no audio encoder)
                return
            if not self.audio.size:
                self.audio_start = item.start
            self.audio = np.concatenate([self.audio, item.samples])

    def score(self, start: float, end: float) -> Iterator[Prediction]:
        """The prediction of window [start, end); nothing (and a warning) if the window holds
        nothing the pack can score, e.g. a gap in a live source."""
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        jobs: dict[str, Job] = {}
        frames: Future[None] | None = None
        if self.pending:  # only frames not seen by an earlier window are encoded (and detected)
            # a concurrent Analyzer encodes them beside the audio and text encoders (a Future)
            frames = self.an.run_beside(self._encode_frames, self.pending, timings)
            self.pending = []
        if self.rate and self.audio.size:
            a = max(0, round((start - self.audio_start) * self.rate))
            b = max(0, round((end - self.audio_start) * self.rate))
            clip = self.audio[a:b]
            if clip.size:
                jobs["audio"] = lambda: self.an.encode_audio(clip)
        source = None if self.cues is None and self.text is None else "given"
        pending = self.asr_ms  # ASR run as audio arrived since the last window (before t0)
        if self.speech is not None:
            cues, ms = self.speech.cues_until(end)
            timings["asr"] = pending + ms
            self.asr_ms, source = 0.0, "asr"
            words: str | None = text_for_span(cues, start, end)
        else:
            words = text_for_span(self.cues, start, end) if self.cues is not None else self.text
        if words and words.strip() and "text" in self.an.sessions:
            jobs["text"] = lambda: self.an.encode_text(words)
        feats_by_mod: Features = self.an.encode(jobs, timings) if jobs else {}
        if frames is not None:
            frames.result()
        inside = [(f, found) for t, f, found in self.cached if start <= t < end]
        notes: tuple[str, ...] = ()
        if inside:
            feats_by_mod["vision"] = feature(np.stack([f for f, _ in inside]))
            note = face_note(np.asarray([found for _, found in inside], bool))
            notes = (note,) if note else ()
        if not feats_by_mod:
            warnings.warn(
                f"window {start:.1f}-{end:.1f} s has nothing this pack can score "
                f"(no {' or '.join(self.an.modalities)}): skipped",
                UserWarning,
                stacklevel=2,
            )
            return
        latency = (time.perf_counter() - t0) * 1e3 + pending
        yield self.an.score_features(
            feats_by_mod,
            timings,
            notes=notes,
            start=round(start, 3),
            end=round(end, 3),
            latency_ms=round(latency, 2),
            text=words,
            transcript_source=source,
        )

    def _encode_frames(self, frames: list[media.Frame], timings: dict[str, float]) -> None:
        """Encode (and face-crop) ``frames`` into the cache; their ms go to ``timings``."""
        t0 = time.perf_counter()
        face_ms = self.track.crop_ms
        new, found = self.an.encode_frames([f.rgb for f in frames], self.track)
        face = found if found is not None else np.ones(len(frames), bool)
        self.cached.extend(zip((f.time for f in frames), new, face.tolist()))
        self.encoded_frames += len(frames)
        timings["vision"] = (time.perf_counter() - t0) * 1e3
        if self.an.face_detector is not None:
            split_face_time(timings, self.track.crop_ms - face_ms)

    def forget_before(self, t: float) -> None:
        if self.speech is not None:
            self.speech.forget_before(t)
        while self.cached and self.cached[0][0] < t:
            self.cached.popleft()
        if self.rate and self.audio.size:
            drop = round((t - self.audio_start) * self.rate)
            if drop > 0:
                self.audio = self.audio[drop:]
                self.audio_start += drop / self.rate


def start_stream(
    an: ScoringContext,
    source: str | os.PathLike[str],
    *,
    text: str | None,
    transcript: str | os.PathLike[str] | None,
    window: float,
    hop: float,
    format: str | None,
    options: dict[str, str] | None,
    asr: bool | None,
) -> Iterator[Prediction]:
    """:meth:`Analyzer.stream` on an open Analyzer: its arguments checked now, the source opened,
    OpenVINO warmed up (:meth:`Analyzer.warm_up`), then the windows, lazily."""
    source = checks.source("source", source)
    text, asr = checks.text("text", text), checks.flag("asr", asr)
    if transcript is not None:
        transcript = checks.source("transcript", transcript)
    checks.ffmpeg(format, options)
    state, items, kinds = prepare(
        an,
        source,
        text=text,
        transcript=transcript,
        window=window,
        hop=hop,
        format=format,
        options=options,
        asr=wants_asr(an.recognizer, asr, text, transcript),
    )
    an.warm_up()
    return run_windows(state, items, kinds)


def prepare(
    an: ScoringContext,
    source: str | os.PathLike[str],
    *,
    text: str | None,
    transcript: str | os.PathLike[str] | None,
    window: float,
    hop: float,
    format: str | None = None,
    options: dict[str, str] | None = None,
    asr: bool = False,
    start: float = 0.0,
    end: float | None = None,
) -> tuple[_Windows, Iterable[media.AudioChunk | media.Frame], set[str] | None]:
    """The window state, the decoded items and the tracks expected, for :func:`run_windows`
    (streams; long files scored in windows, :mod:`msa_runtime.scoring.long`).

    The state's ``speech`` is the stream's live transcription (None without ASR): the words
    committed so far, kept for the state's lifetime."""
    fps = an.fps
    window, hop = checks.window_hop(window, hop, fps=fps)
    if text is not None and transcript is not None:
        raise InputError("give text or transcript, not both")
    cues = read_transcript(transcript) if transcript is not None else None
    rate = an.sample_rate
    speech = None
    if asr and an.recognizer is not None:  # wants_asr() said there is one
        from msa_runtime.asr.recognizer import SAMPLE_RATE
        from msa_runtime.asr.speech import StreamText

        rate = rate or SAMPLE_RATE  # a pack without an audio encoder: audio for ASR alone
        speech = StreamText(an.recognizer, rate)
    if fps is None and rate is None:
        raise InputError("streaming needs a pack with an audio or vision encoder (or asr)")
    name = os.fspath(source)
    chunk = min(hop, 1.0)
    items: Iterable[media.AudioChunk | media.Frame]
    if format == media.RECORDS:
        items, kinds = _record_items(name, fps, rate, chunk), None
    elif name == "-":
        items, kinds = _piped_items(fps, rate, chunk, format, options)
    else:
        kinds = _file_kinds(an, name, fps, rate) if format is None and os.path.isfile(name) else None
        items = media.iter_media(
            name,
            fps=fps,
            sample_rate=rate,
            start=start,
            end=end,
            chunk_seconds=chunk,
            format=format,
            options=options,
        )
    return _Windows(an, window, hop, text, cues, speech, rate or 0), items, kinds


def _record_items(
    name: str, fps: float | None, rate: int | None, chunk: float
) -> Iterator[media.AudioChunk | media.Frame]:
    """The decoded items of a ``pcm+jpeg`` record stream (:mod:`msa_runtime.media.records`) in a
    file, a pipe or standard input (``-``), the file closed however iteration ends."""
    if name == "-":
        yield from media.iter_records(stdin.standard_input(), fps=fps, sample_rate=rate, chunk_seconds=chunk)
        return
    try:
        f = open(name, "rb")  # noqa: SIM115 (closed below, after the last item)
    except OSError as exc:
        raise MediaError(f"{name} cannot be read ({exc.strerror}): check the path") from None
    with f:
        yield from media.iter_records(f, fps=fps, sample_rate=rate, chunk_seconds=chunk, label=name)


def _piped_items(
    fps: float | None, rate: int | None, chunk: float, format: str | None, options: dict[str, str] | None
) -> tuple[Iterable[media.AudioChunk | media.Frame], set[str] | None]:
    """Standard input's decoded items and the tracks expected (``{"audio"}`` for raw PCM, else
    unknown: None)."""
    piped = stdin.open_stdin(stdin.standard_input(), format)
    if piped.raw:
        if rate is None:
            piped.close()
            raise InputError("raw PCM on standard input needs a pack with an audio encoder")
        return media.iter_pcm(piped.file or stdin.standard_input(), sample_rate=rate), {"audio"}
    items = media.iter_media(
        piped.source,
        fps=fps,
        sample_rate=rate,
        chunk_seconds=chunk,
        format=piped.format,
        options=options,
        label=stdin.LABEL,
    )
    return _closing(items, piped), None


def _file_kinds(an: ScoringContext, name: str, fps: float | None, rate: int | None) -> set[str]:
    """The tracks of local file ``name`` that windows wait for: those it has and the pack (or
    ASR) decodes; a file with none of them is a :class:`MediaError`."""
    info = media.probe(name)
    kinds = {k for k, has in (("audio", info.has_audio and rate), ("vision", info.has_video and fps)) if has}
    if not kinds:
        needed = " or ".join(k for k, v in (("audio", rate), ("video", fps)) if v)
        raise MediaError(
            f"{name} has no {needed} track, and this pack scores "
            f"{', '.join(an.modalities)}: give a file with {needed}"
        )
    return kinds


def _closing(
    items: Iterator[media.AudioChunk | media.Frame], piped: stdin.Piped
) -> Iterator[media.AudioChunk | media.Frame]:
    """``items``, then ``piped.close()`` (its temporary copy removed) however iteration ends."""
    try:
        yield from items
    finally:
        piped.close()


def run_windows(
    state: _Windows,
    items: Iterable[media.AudioChunk | media.Frame],
    kinds: set[str] | None,
    *,
    origin: float = 0.0,
    tail: float | None = None,
) -> Iterator[Prediction]:
    """Emit every window as soon as all expected tracks have reached its end.

    A track that falls more than ``max(window, LAG)`` seconds behind the others (it ended early,
    starts late or never arrives) stops holding the windows back, so the frame buffer stays
    bounded. After the input ends, the remaining full windows and a last partial one follow
    if it is at least half a hop long (``tail`` seconds when given). Windows start at ``origin``.
    """
    reached: dict[str, float] = {}
    lag = max(state.window, LAG)
    next_end = origin + state.window
    emitted_end = origin
    frame_step = 1.0 / state.fps if state.fps else 0.0
    for item in items:
        state.add(item)
        if isinstance(item, media.Frame):
            reached["vision"] = item.time + frame_step  # the frame covers [time, time + 1/fps)
        else:
            reached["audio"] = item.start + len(item.samples) / max(state.decode_rate, 1)
        expected = kinds if kinds is not None else set(reached)
        if not expected or not reached:
            continue
        ahead = max(reached.values())
        now = max(min(reached.get(k, -math.inf) for k in expected), ahead - lag)
        while now >= next_end:
            yield from state.score(next_end - state.window, next_end)
            emitted_end = next_end
            next_end += state.hop
            state.forget_before(next_end - state.window)
    if state.speech is not None:  # the input ended (maybe mid-word): commit what is left
        state.asr_ms += state.speech.finish()
    last = max(reached.values(), default=0.0)
    while last >= next_end:  # windows held back by a lagging track
        yield from state.score(next_end - state.window, next_end)
        emitted_end = next_end
        next_end += state.hop
        state.forget_before(next_end - state.window)
    start = max(origin, next_end - state.window)
    if (
        last > start + 1e-6
        and last > emitted_end + 1e-6
        and (emitted_end == origin or last - emitted_end >= (state.hop / 2 if tail is None else tail))
    ):
        yield from state.score(start, last)
