"""The media timeline: decoded PyAV frames onto fixed time grids, for :mod:`msa_runtime.media.decoding`.

:class:`AudioChunker` resamples audio to float32 mono at the requested rate and cuts [start, end)
into fixed-size :class:`AudioChunk` s on a sample-counted timeline (:class:`SampleChunks`, also
used by device records); :class:`FrameSampler` samples video at ``start + i / fps`` (the latest
frame shown at that time) as RGB :class:`Frame` s.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

EPS = 1e-6
"""Tolerance of time comparisons (seconds)."""
_scalers = threading.local()


SWSCALE_THREADS = 1
"""swscale runs single-threaded: a context with slice threads deadlocks a child forked from
another thread (Python frees the parent's thread-locals in the child, and freeing waits for
slice threads that do not exist there; OpenVINO's telemetry forks that way). On 720p frames one
thread converts to RGB faster and resizes about as fast, measured on 2 cores."""


def reformatter() -> VideoReformatter:
    """This thread's swscale reformatter: it keeps its context while formats and sizes repeat
    (building one per frame costs more than converting or resizing it); one per thread, as
    swscale contexts are not thread-safe. Call it with ``threads=SWSCALE_THREADS``."""
    scaler = getattr(_scalers, "scaler", None)
    if scaler is None:
        scaler = _scalers.scaler = VideoReformatter()
    return scaler


@dataclass(frozen=True)
class AudioChunk:
    """Float32 mono samples at the requested rate; ``start`` is the time of the first one."""

    start: float
    samples: np.ndarray


@dataclass(frozen=True)
class Frame:
    """One sampled video frame: ``rgb`` is H x W x 3 uint8, ``time`` the sampling time."""

    time: float
    rgb: np.ndarray


def frame_duration(frame: Any) -> float:
    if isinstance(frame, av.AudioFrame):
        return frame.samples / frame.sample_rate if frame.sample_rate else 0.0
    return float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0


class SampleChunks:
    """Float32 mono samples at ``rate``, cut into :class:`AudioChunk` s of ``chunk_seconds`` on a
    sample-counted timeline that begins at ``start``."""

    def __init__(self, rate: int, start: float, chunk_seconds: float) -> None:
        self.rate, self.start = rate, start
        self.chunk = max(1, round(chunk_seconds * rate))
        self.pending: list[np.ndarray] = []
        self.waiting = 0  # samples in ``pending``
        self.emitted = 0

    def add(self, samples: np.ndarray) -> None:
        if len(samples):
            self.pending.append(samples)
            self.waiting += len(samples)

    def emit(self, final: bool) -> Iterator[AudioChunk]:
        """The whole chunks waiting (``final``: and the rest, as a shorter last chunk)."""
        if self.waiting < self.chunk and not (final and self.waiting):
            return
        data, self.pending = np.concatenate(self.pending), []
        cut = len(data) if final else len(data) // self.chunk * self.chunk
        for offset in range(0, cut, self.chunk):
            samples = data[offset : min(offset + self.chunk, cut)].copy()
            yield AudioChunk(start=self.start + self.emitted / self.rate, samples=samples)
            self.emitted += len(samples)
        if cut < len(data):
            self.pending = [data[cut:].copy()]
        self.waiting = len(data) - cut


class AudioChunker:
    """Resamples frames to float32 mono and cuts [start, end) into fixed-size chunks.

    The output timeline is anchored at the time of the first decoded frame and then counts
    samples, so timestamp jitter in the container cannot tear or overlap the audio.
    """

    def __init__(self, rate: int, start: float, end: float | None, chunk_seconds: float) -> None:
        self.rate = rate
        self.chunks = SampleChunks(rate, start, chunk_seconds)
        self.pos = round(start * rate)  # absolute index of the next output sample
        self.stop = round(end * rate) if end is not None else None
        self.cursor: int | None = None  # absolute index of the next resampled sample
        self.resampler: Any = None
        self.key: tuple[str, str, int] | None = None
        self.done = False

    def push(self, frame: Any, time: float | None) -> Iterator[AudioChunk]:
        if self.done:
            return
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self.resampler is not None and key != self.key:  # input format changed mid-stream
            self._place_all(self.resampler.resample(None))
            self.resampler = None
        if self.resampler is None:
            self.resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
            self.key = key
        if self.cursor is None:
            self.cursor = round((time or 0.0) * self.rate)
        self._place_all(self.resampler.resample(frame))
        yield from self.chunks.emit(final=False)

    def finish(self) -> Iterator[AudioChunk]:
        if self.resampler is not None and not self.done:
            self._place_all(self.resampler.resample(None))
        yield from self.chunks.emit(final=True)

    def _place_all(self, frames: list[Any]) -> None:
        for resampled in frames:
            self._place(resampled.to_ndarray().reshape(-1))

    def _room(self) -> int | None:
        return None if self.stop is None else max(0, self.stop - self.pos)

    def _place(self, samples: np.ndarray) -> None:
        assert self.cursor is not None
        begin, self.cursor = self.cursor, self.cursor + len(samples)
        if self.done:
            return
        if begin > self.pos and not self.chunks.emitted and not self.chunks.waiting:
            # The audio starts after ``start``: pad with silence to keep A/V sync.
            self._append(np.zeros(begin - self.pos, dtype=np.float32)[: self._room()])
        self._append(samples[max(0, self.pos - begin) :][: self._room()])
        self.done = self.stop is not None and self.pos >= self.stop

    def _append(self, samples: np.ndarray) -> None:
        self.chunks.add(samples)
        self.pos += len(samples)


class FrameSampler:
    """Samples frames at t_i = start + i / fps: the latest decoded frame with time <= t_i."""

    def __init__(self, fps: float, start: float, end: float | None, step: float) -> None:
        self.fps, self.start, self.end = fps, start, end
        self.step = step  # assumed frame duration when a frame does not say
        self.index, self.prev, self.prev_time, self.done = 0, None, 0.0, False
        self.prev_rgb: np.ndarray | None = None
        self.last_end: float | None = None

    def _target(self) -> float:
        return self.start + self.index / self.fps

    def push(self, frame: Any, time: float | None) -> Iterator[Frame]:
        if self.done:
            return
        if time is None:
            time = self.prev_time + self.step if self.prev is not None else 0.0
        # Targets before this frame show the previous one (before the first frame: this one).
        while self._target() < time - EPS:
            if self.end is not None and self._target() >= self.end - EPS:
                self.done = True
                return
            yield self._emit(self.prev if self.prev is not None else frame)
        self.prev, self.prev_time, self.prev_rgb = frame, time, None
        self.last_end = time + (frame_duration(frame) or self.step)

    def finish(self) -> Iterator[Frame]:
        if self.done or self.prev is None or self.last_end is None:
            return
        stop = self.last_end if self.end is None else min(self.end, self.last_end)
        while self._target() < stop - EPS:
            yield self._emit(self.prev)
        self.done = True

    def _emit(self, frame: Any) -> Frame:
        if frame is self.prev and self.prev_rgb is not None:
            rgb = self.prev_rgb.copy()  # a repeated frame: a fresh array the caller may modify
        else:
            rgb = reformatter().reformat(frame, format="rgb24", threads=SWSCALE_THREADS).to_ndarray()
            if frame is self.prev:
                self.prev_rgb = rgb
        self.index += 1
        return Frame(time=self.start + (self.index - 1) / self.fps, rgb=rgb)
