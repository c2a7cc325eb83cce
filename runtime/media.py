"""Media decoding with PyAV: probe, stream (:func:`iter_media`) and decode audio and video.

One demux pass yields audio chunks and video frames as they are decoded: memory stays flat
however long the input, and live sources FFmpeg opens (devices, URLs, ``lavfi``) work too.
Times are seconds from the container's ``start_time`` (MPEG-PS files starting at 0.5 s start at 0).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import av
import numpy as np

from msa_runtime.errors import InputError, MediaError

_log = logging.getLogger(__name__)
_EPS = 1e-6
_SEEK_MARGIN = 0.5  # seek this far before ``start``: decoder pre-roll, inexact demuxers
_REDO = "re-encode or re-download it"


@dataclass(frozen=True)
class MediaInfo:
    """What a container holds, as FFmpeg reports it (None where unknown)."""

    path: str
    duration: float | None
    has_audio: bool
    has_video: bool
    sample_rate: int | None
    channels: int | None
    fps: float | None
    width: int | None
    height: int | None


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


@dataclass(frozen=True)
class Decoded:
    """A whole clip in memory, as returned by :func:`decode`."""

    info: MediaInfo
    frames: np.ndarray  # (N, H, W, 3) uint8, N may be 0
    frame_times: np.ndarray  # (N,) float64
    audio: np.ndarray  # float32 mono, may be empty
    sample_rate: int


_NOT_MEDIA = "is not a media file FFmpeg can read (or it is truncated/corrupt): give a video"
_OPEN_ERRORS: list[tuple[type[Exception], str]] = [
    (av.error.FileNotFoundError, "does not exist (no such file or device): check the path"),
    (av.error.PermissionError, "cannot be read (permission denied): check its permissions"),
    (av.error.InvalidDataError, f"{_NOT_MEDIA} or audio file such as .mp4, .webm, .mkv, .wav"),
    (av.error.EOFError, f"is truncated or corrupt (it ends unexpectedly): {_REDO}"),
]


def _check_exists(name: str, format: str | None) -> bool:
    """For a local file (no format, not a URL): raise if it is missing; return if local."""
    local = format is None and "://" not in name
    if local and not os.path.exists(name):
        raise MediaError(f"{name}: no such file: check the path")
    return local


def _open(name: str, format: str | None, options: dict[str, str] | None) -> Any:
    """Open ``name`` for reading, turning FFmpeg and OS errors into :class:`MediaError`."""
    if _check_exists(name, format):
        if os.path.isdir(name):
            raise MediaError(f"{name} is a folder, not a media file: give a video or audio file")
        if os.path.getsize(name) == 0:
            raise MediaError(f"{name} is empty (0 bytes): re-copy or re-export the file")
    try:
        return av.open(name, mode="r", format=format, options=options or {})
    except av.error.FFmpegError as exc:
        problem = next((p for kind, p in _OPEN_ERRORS if isinstance(exc, kind)), None)
        raise MediaError(f"{name} {problem or f'cannot be opened ({exc.strerror})'}") from exc
    except OSError as exc:
        raise MediaError(f"{name} cannot be opened ({exc.strerror or exc}): check it") from exc


def _pick_streams(container: Any) -> tuple[Any, Any]:
    """The first audio stream and the first real video stream (cover art excluded)."""
    audio = container.streams.audio[0] if container.streams.audio else None
    attached = av.stream.Disposition.attached_pic
    videos = [s for s in container.streams.video if not s.disposition & attached]
    return audio, (videos[0] if videos else None)


def _info(container: Any, name: str) -> MediaInfo:
    """Describe ``container``; raise if it has no audio/video stream or zero duration."""
    audio, video = _pick_streams(container)
    if container.duration is not None:
        duration: float | None = container.duration / av.time_base
    else:
        spans = [float(s.duration * s.time_base) for s in (audio, video) if s and s.duration]
        duration = max(spans) if spans else None
    if audio is None and video is None:
        raise MediaError(f"{name} has no audio and no video stream: give a file with either")
    if duration is not None and duration <= 0:
        raise MediaError(f"{name} has zero duration (no audio or video data): re-export it")
    rate = (video.average_rate or video.guessed_rate) if video is not None else None
    actx = audio.codec_context if audio is not None else None
    vctx = video.codec_context if video is not None else None
    return MediaInfo(
        path=name,
        duration=duration,
        has_audio=audio is not None,
        has_video=video is not None,
        sample_rate=(actx.sample_rate or None) if actx else None,
        channels=(actx.layout.nb_channels or None) if actx else None,
        fps=float(rate) if rate else None,
        width=(vctx.width or None) if vctx else None,
        height=(vctx.height or None) if vctx else None,
    )


def probe(source: str | os.PathLike[str]) -> MediaInfo:
    """Describe the streams of a media file without decoding it.

    Raises :class:`MediaError` if the file is missing, not media, or holds no audio/video.
    Only when the container states no duration is one packet read, to rule out an empty file.
    """
    name = os.fspath(source)
    container = _open(name, None, None)
    try:
        info = _info(container, name)
        if info.duration is None:
            streams = [s for s in _pick_streams(container) if s is not None]
            try:
                empty = not any(packet.size for packet in container.demux(*streams))
            except av.error.FFmpegError as exc:
                raise MediaError(f"{name} is truncated or corrupt: {_REDO}") from exc
            if empty:
                raise MediaError(f"{name} has zero duration (no audio or video data): re-export it")
    finally:
        container.close()
    return info


def _check_args(
    fps: float | None, sample_rate: int | None, start: float, end: float | None, chunk: float
) -> None:
    bad_rate = sample_rate is not None and not sample_rate > 0
    for bad, problem in [
        (fps is None and sample_rate is None, "nothing to decode: give fps and/or sample_rate"),
        (fps is not None and not fps > 0, f"fps must be positive, got {fps}: use e.g. fps=3"),
        (bad_rate, f"sample_rate must be positive, got {sample_rate}: use e.g. 16000"),
        (not chunk > 0, f"chunk_seconds must be positive, got {chunk}"),
        (start < 0, f"start must be >= 0 s, got {start}"),
        (end is not None and start >= end, f"start ({start} s) must be before end ({end} s)"),
    ]:
        if bad:
            raise InputError(problem)


def _frame_duration(frame: Any) -> float:
    if isinstance(frame, av.AudioFrame):
        return frame.samples / frame.sample_rate if frame.sample_rate else 0.0
    return float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0


class _AudioChunker:
    """Resamples frames to float32 mono and cuts [start, end) into fixed-size chunks.

    The output timeline is anchored at the time of the first decoded frame and then counts
    samples, so timestamp jitter in the container cannot tear or overlap the audio.
    """

    def __init__(self, rate: int, start: float, end: float | None, chunk_seconds: float) -> None:
        self.rate, self.start = rate, start
        self.chunk = max(1, round(chunk_seconds * rate))
        self.pos = round(start * rate)  # absolute index of the next output sample
        self.stop = round(end * rate) if end is not None else None
        self.cursor: int | None = None  # absolute index of the next resampled sample
        self.resampler: Any = None
        self.key: tuple[str, str, int] | None = None
        self.pending: list[np.ndarray] = []
        self.emitted, self.done = 0, False

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
        yield from self._emit(final=False)

    def finish(self) -> Iterator[AudioChunk]:
        if self.resampler is not None and not self.done:
            self._place_all(self.resampler.resample(None))
        yield from self._emit(final=True)

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
        if begin > self.pos and not self.emitted and not self.pending:
            # The audio starts after ``start``: pad with silence to keep A/V sync.
            self._append(np.zeros(begin - self.pos, dtype=np.float32)[: self._room()])
        self._append(samples[max(0, self.pos - begin) :][: self._room()])
        self.done = self.stop is not None and self.pos >= self.stop

    def _append(self, samples: np.ndarray) -> None:
        if len(samples):
            self.pending.append(samples)
            self.pos += len(samples)

    def _emit(self, final: bool) -> Iterator[AudioChunk]:
        count = sum(len(p) for p in self.pending)
        if count < self.chunk and not (final and count):
            return
        data, self.pending = np.concatenate(self.pending), []
        cut = len(data) if final else len(data) // self.chunk * self.chunk
        for offset in range(0, cut, self.chunk):
            samples = data[offset : min(offset + self.chunk, cut)].copy()
            yield AudioChunk(start=self.start + self.emitted / self.rate, samples=samples)
            self.emitted += len(samples)
        if cut < len(data):
            self.pending = [data[cut:].copy()]


class _FrameSampler:
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
        while self._target() < time - _EPS:
            if self.end is not None and self._target() >= self.end - _EPS:
                self.done = True
                return
            yield self._emit(self.prev if self.prev is not None else frame)
        self.prev, self.prev_time, self.prev_rgb = frame, time, None
        self.last_end = time + (_frame_duration(frame) or self.step)

    def finish(self) -> Iterator[Frame]:
        if self.done or self.prev is None or self.last_end is None:
            return
        stop = self.last_end if self.end is None else min(self.end, self.last_end)
        while self._target() < stop - _EPS:
            yield self._emit(self.prev)
        self.done = True

    def _emit(self, frame: Any) -> Frame:
        if frame is self.prev and self.prev_rgb is not None:
            rgb = self.prev_rgb.copy()  # a repeated frame: a fresh array the caller may modify
        else:
            rgb = frame.to_ndarray(format="rgb24")
            if frame is self.prev:
                self.prev_rgb = rgb
        self.index += 1
        return Frame(time=self.start + (self.index - 1) / self.fps, rgb=rgb)


def iter_media(
    source: str | os.PathLike[str],
    *,
    fps: float | None,
    sample_rate: int | None,
    start: float = 0.0,
    end: float | None = None,
    chunk_seconds: float = 1.0,
    format: str | None = None,
    options: dict[str, str] | None = None,
) -> Iterator[AudioChunk | Frame]:
    """Stream a media file or live source as audio chunks and video frames, in time order.

    One demux pass: audio is downmixed to mono, resampled to ``sample_rate`` and cut into
    chunks of ``chunk_seconds`` (the last may be shorter) covering exactly [start, end); video
    frames are sampled at ``start + i / fps`` (the latest frame shown at that time) and
    converted to RGB at native size. ``fps=None`` skips video, ``sample_rate=None`` audio.
    ``format``/``options`` go to ``av.open`` (e.g. ``format="v4l2"`` for a camera).

    Arguments and the file's existence are checked at once, the rest on the first ``next()``.
    Raises :class:`MediaError` on any problem with the source.
    """
    _check_args(fps, sample_rate, start, end, chunk_seconds)
    name = os.fspath(source)
    _check_exists(name, format)
    return _iterate(name, fps, sample_rate, start, end, chunk_seconds, format, options)


def _iterate(
    name: str, fps: float | None, sample_rate: int | None, start: float, end: float | None,
    chunk_seconds: float, format: str | None, options: dict[str, str] | None,
    info_out: list[MediaInfo] | None = None,
) -> Iterator[AudioChunk | Frame]:
    container = _open(name, format, options)
    try:
        info = _info(container, name)
        if info_out is not None:
            info_out.append(info)
        late = f"start ({start} s) is at or after the end of {name} (%.3f s): choose an earlier one"
        if info.duration is not None and start >= info.duration:
            raise MediaError(late % info.duration)
        astream, vstream = _pick_streams(container)
        audio = video = None
        if astream is not None and sample_rate is not None:
            audio = _AudioChunker(sample_rate, start, end, chunk_seconds)
        if vstream is not None and fps is not None:
            vstream.thread_type = "AUTO"
            video = _FrameSampler(fps, start, end, 1.0 / (info.fps or fps))
        streams = [s for s, sink in ((astream, audio), (vstream, video)) if sink is not None]
        if not streams:
            return
        origin = container.start_time / av.time_base if container.start_time is not None else None
        seeked = False
        if start > _SEEK_MARGIN:
            try:
                container.seek(int(((origin or 0.0) + start - _SEEK_MARGIN) * av.time_base))
                origin, seeked = origin or 0.0, True  # seekable: timestamps are file-relative
            except av.error.FFmpegError:
                pass  # not seekable (live source, pipe): decode from the start and discard
        decoded = emitted = at_eof = False
        time = media_end = 0.0
        packets = container.demux(*streams)
        while not ((audio is None or audio.done) and (video is None or video.done)):
            corrupt = f"{name} is truncated or corrupt: %s failed at {time:.2f} s (%s): {_REDO}"
            try:
                packet = next(packets, None)
            except av.error.FFmpegError as exc:
                raise MediaError(corrupt % ("reading", exc.strerror)) from exc
            if packet is None:
                at_eof = True
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                if seeked and not emitted:
                    continue  # a packet cut by the seek (MPEG-PS audio): still in pre-roll
                raise MediaError(corrupt % ("decoding", exc.strerror)) from exc
            for frame in frames:
                decoded = True
                if origin is None and frame.time is not None:
                    origin = frame.time  # live sources: time starts at the first frame
                ftime = frame.time - (origin or 0.0) if frame.time is not None else None
                if ftime is not None:
                    time = max(time, ftime)
                    media_end = max(media_end, ftime + _frame_duration(frame))
                sink = audio if isinstance(frame, av.AudioFrame) else video
                for item in sink.push(frame, ftime) if sink is not None else ():
                    emitted = True
                    yield item
        for sink in (audio, video):
            for item in sink.finish() if sink is not None else ():
                emitted = True
                yield item
        if not decoded:
            raise MediaError(f"{name} has zero duration (nothing decodable): re-export it")
        if not emitted and start > 0:
            raise MediaError(late % time)
        # Truncated Matroska/WebM/MP3 decode without error, only shorter. Only a warning: some
        # containers just estimate their duration (MP3 without a header: from the bit rate).
        declared = info.duration
        if at_eof and declared is not None and declared - media_end > max(0.5, declared / 20):
            _log.warning("%s seems truncated: its media ends at %.2f s but it declares %.2f s; "
                         "%s if that is not expected", name, media_end, declared, _REDO)
    finally:
        container.close()


def decode(
    source: str | os.PathLike[str],
    *,
    fps: float | None,
    sample_rate: int | None,
    start: float = 0.0,
    end: float | None = None,
    format: str | None = None,
    options: dict[str, str] | None = None,
) -> Decoded:
    """Decode a whole clip (or the window [start, end)) into arrays; see :func:`iter_media`.

    For long inputs prefer :func:`iter_media`, which keeps memory flat.
    """
    _check_args(fps, sample_rate, start, end, 1.0)
    name = os.fspath(source)
    found: list[MediaInfo] = []
    frames: list[np.ndarray] = []
    times: list[float] = []
    audio: list[np.ndarray] = []
    for item in _iterate(name, fps, sample_rate, start, end, 10.0, format, options, found):
        if isinstance(item, Frame):
            frames.append(item.rgb)
            times.append(item.time)
        else:
            audio.append(item.samples)
    info = found[0]
    empty = np.zeros((0, info.height or 0, info.width or 0, 3), dtype=np.uint8)
    return Decoded(
        info=info,
        frames=np.stack(frames) if frames else empty,
        frame_times=np.asarray(times, dtype=np.float64),
        audio=np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32),
        sample_rate=sample_rate or 0,
    )


def iter_pcm(
    stream: BinaryIO, *, sample_rate: int = 16000, chunk_seconds: float = 1.0
) -> Iterator[AudioChunk]:
    """Stream raw signed 16-bit little-endian mono PCM (e.g. ``sys.stdin.buffer``).

    Yields float32 chunks in [-1, 1) of ``chunk_seconds`` (the last may be shorter). Short
    reads (pipes) are retried until end of stream; a trailing odd byte is dropped. No
    resampling: ``sample_rate`` must be the rate of the input.
    """
    _check_args(None, sample_rate, 0.0, None, chunk_seconds)
    size = 2 * max(1, round(chunk_seconds * sample_rate))
    emitted = 0
    while True:
        data = bytearray()
        while len(data) < size:
            try:
                more = stream.read(size - len(data))
            except OSError as exc:
                raise MediaError(f"reading raw PCM failed ({exc}): check the input") from exc
            if isinstance(more, str):
                raise MediaError("iter_pcm needs a binary stream (sys.stdin.buffer), not text")
            if not more:
                break
            data += more
        if len(data) >= 2:
            samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32)
            yield AudioChunk(start=emitted / sample_rate, samples=samples / 32768)
            emitted += len(samples)
        if len(data) < size:
            return
