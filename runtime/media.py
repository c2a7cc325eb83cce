"""Media decoding with PyAV: probe, stream and decode audio and video.

Everything here streams: :func:`iter_media` makes one demux pass over the container and yields
audio chunks and video frames as they are decoded, so memory stays flat however long the input
is, and live sources that FFmpeg opens (devices, URLs, ``lavfi``) work too. :func:`decode` is a
convenience that collects the stream into arrays for short clips.

Times are in seconds relative to the start of the container (FFmpeg's ``start_time``), so a
file whose timestamps begin at 0.5 s (MPEG program streams) still starts at 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import av
import numpy as np
from msa_runtime.errors import MediaError

_log = logging.getLogger(__name__)

_EPS = 1e-6
# Seek this far before ``start`` so decoders get pre-roll and inexact demuxers land early.
_SEEK_MARGIN = 0.5


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


def _is_local(name: str, format: str | None) -> bool:
    return format is None and "://" not in name


def _open(name: str, format: str | None, options: dict[str, str] | None) -> Any:
    """Open ``name`` for reading, turning FFmpeg and OS errors into :class:`MediaError`."""
    if _is_local(name, format):
        if not os.path.exists(name):
            raise MediaError(f"{name}: no such file: check the path")
        if os.path.isdir(name):
            raise MediaError(f"{name} is a folder, not a media file: give a video or audio file")
        if os.path.getsize(name) == 0:
            raise MediaError(f"{name} is empty (0 bytes): re-copy or re-export the file")
    try:
        return av.open(name, mode="r", format=format, options=options or {})
    except av.error.FileNotFoundError as exc:
        raise MediaError(f"{name}: no such file or device: check the path") from exc
    except av.error.PermissionError as exc:
        raise MediaError(f"{name} cannot be read (permission denied): check its permissions") from exc
    except av.error.InvalidDataError as exc:
        raise MediaError(
            f"{name} is not a media file FFmpeg can read (or it is truncated/corrupt): "
            "give a video or audio file such as .mp4, .webm, .mkv, .wav"
        ) from exc
    except av.error.EOFError as exc:
        raise MediaError(
            f"{name} is truncated or corrupt (it ends unexpectedly): "
            "re-encode or re-download it"
        ) from exc
    except av.error.FFmpegError as exc:
        raise MediaError(f"{name} cannot be opened ({exc.strerror}): check the file or source") from exc
    except OSError as exc:
        raise MediaError(f"{name} cannot be opened ({exc.strerror or exc}): check the file") from exc


def _pick_streams(container: Any) -> tuple[Any, Any]:
    """The first audio stream and the first real video stream (cover art excluded)."""
    audio = container.streams.audio[0] if container.streams.audio else None
    video = None
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            video = stream
            break
    return audio, video


def _info(container: Any, name: str) -> MediaInfo:
    audio, video = _pick_streams(container)
    duration: float | None = None
    if container.duration is not None:
        duration = container.duration / av.time_base
    else:
        spans = [
            float(s.duration * s.time_base)
            for s in (audio, video)
            if s is not None and s.duration is not None and s.time_base is not None
        ]
        duration = max(spans) if spans else None
    fps = None
    if video is not None:
        rate = video.average_rate or video.guessed_rate
        fps = float(rate) if rate else None
    return MediaInfo(
        path=name,
        duration=duration,
        has_audio=audio is not None,
        has_video=video is not None,
        sample_rate=audio.codec_context.sample_rate or None if audio is not None else None,
        channels=audio.codec_context.layout.nb_channels or None if audio is not None else None,
        fps=fps,
        width=video.codec_context.width or None if video is not None else None,
        height=video.codec_context.height or None if video is not None else None,
    )


def _check_info(info: MediaInfo) -> None:
    if not info.has_audio and not info.has_video:
        raise MediaError(
            f"{info.path} has no audio and no video stream: give a file with sound or pictures"
        )
    if info.duration is not None and info.duration <= 0:
        raise MediaError(f"{info.path} has zero duration (no audio or video data): re-export it")


def _has_packets(container: Any, name: str) -> bool:
    """True if the audio/video streams hold at least one packet (reads one packet at most)."""
    streams = [s for s in _pick_streams(container) if s is not None]
    try:
        for packet in container.demux(*streams):
            if packet.size:
                return True
    except av.error.FFmpegError as exc:
        raise MediaError(
            f"{name} is truncated or corrupt ({exc.strerror}): re-encode or re-download it"
        ) from exc
    return False


def probe(source: str | os.PathLike[str]) -> MediaInfo:
    """Describe the streams of a media file without decoding it.

    Raises :class:`MediaError` if the file is missing, not media, or holds no audio/video.
    Only when the container does not state a duration is one packet read, to rule out an
    empty file.
    """
    name = os.fspath(source)
    container = _open(name, None, None)
    try:
        info = _info(container, name)
        _check_info(info)
        if info.duration is None and not _has_packets(container, name):
            raise MediaError(f"{name} has zero duration (no audio or video data): re-export it")
    finally:
        container.close()
    return info


def _check_args(
    fps: float | None, sample_rate: int | None, start: float, end: float | None, chunk: float
) -> None:
    if fps is None and sample_rate is None:
        raise MediaError("nothing to decode: give fps (video) and/or sample_rate (audio)")
    if fps is not None and not fps > 0:
        raise MediaError(f"fps must be positive, got {fps}: use e.g. fps=3")
    if sample_rate is not None and not sample_rate > 0:
        raise MediaError(f"sample_rate must be positive, got {sample_rate}: use e.g. 16000")
    if not chunk > 0:
        raise MediaError(f"chunk_seconds must be positive, got {chunk}")
    if start < 0:
        raise MediaError(f"start must be >= 0 s, got {start}")
    if end is not None and start >= end:
        raise MediaError(f"start ({start} s) must be before end ({end} s): fix the time window")


class _AudioChunker:
    """Resamples decoded frames to float32 mono and cuts [start, end) into fixed chunks."""

    def __init__(self, rate: int, start: float, end: float | None, chunk_seconds: float) -> None:
        self.rate = rate
        self.start = start
        self.chunk = max(1, round(chunk_seconds * rate))
        self.pos = round(start * rate)  # absolute index of the next output sample
        self.stop = round(end * rate) if end is not None else None
        self.cursor: int | None = None  # absolute index of the next resampled sample
        self.resampler: Any = None
        self.key: tuple[str, str, int] | None = None
        self.pending: list[np.ndarray] = []
        self.pending_n = 0
        self.emitted = 0
        self.done = False

    def push(self, frame: Any, time: float | None) -> Iterator[AudioChunk]:
        if self.done:
            return
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        out: list[Any] = []
        if self.resampler is not None and key != self.key:
            out += self.resampler.resample(None)  # the input format changed mid-stream
            self.resampler = None
        if self.resampler is None:
            self.resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
            self.key = key
        if self.cursor is None:
            # Anchor the output timeline at the first frame; afterwards count samples.
            self.cursor = round((time or 0.0) * self.rate)
        out += self.resampler.resample(frame)
        for resampled in out:
            self._place(resampled.to_ndarray().reshape(-1))
        yield from self._emit(final=False)

    def finish(self) -> Iterator[AudioChunk]:
        if self.resampler is not None and not self.done:
            for resampled in self.resampler.resample(None):
                self._place(resampled.to_ndarray().reshape(-1))
        yield from self._emit(final=True)

    def _place(self, samples: np.ndarray) -> None:
        assert self.cursor is not None
        begin = self.cursor
        self.cursor += len(samples)
        if self.done:
            return
        if begin > self.pos and self.emitted == 0 and self.pending_n == 0:
            # The audio starts after ``start``: pad with silence to keep A/V sync.
            gap = begin - self.pos
            if self.stop is not None:
                gap = min(gap, self.stop - self.pos)
            self._append(np.zeros(gap, dtype=np.float32))
        skip = max(0, self.pos - begin)
        samples = samples[skip:]
        if self.stop is not None:
            samples = samples[: max(0, self.stop - self.pos)]
        self._append(samples)
        if self.stop is not None and self.pos >= self.stop:
            self.done = True

    def _append(self, samples: np.ndarray) -> None:
        if len(samples):
            self.pending.append(samples.astype(np.float32, copy=False))
            self.pending_n += len(samples)
            self.pos += len(samples)

    def _emit(self, final: bool) -> Iterator[AudioChunk]:
        if self.pending_n < self.chunk and not (final and self.pending_n):
            return
        data = np.concatenate(self.pending)
        self.pending, self.pending_n = [], 0
        n_full = len(data) // self.chunk * self.chunk
        for offset in range(0, n_full, self.chunk):
            yield self._chunk(data[offset : offset + self.chunk])
        rest = data[n_full:]
        if final and len(rest):
            yield self._chunk(rest)
        elif len(rest):
            self.pending, self.pending_n = [rest.copy()], len(rest)

    def _chunk(self, samples: np.ndarray) -> AudioChunk:
        chunk = AudioChunk(start=self.start + self.emitted / self.rate, samples=samples.copy())
        self.emitted += len(samples)
        return chunk


class _FrameSampler:
    """Samples decoded frames at t_i = start + i / fps: the latest frame with time <= t_i."""

    def __init__(self, fps: float, start: float, end: float | None, step: float) -> None:
        self.fps = fps
        self.start = start
        self.end = end
        self.step = step  # assumed frame duration when a frame does not say
        self.index = 0
        self.prev: Any = None
        self.prev_time = 0.0
        self.prev_rgb: np.ndarray | None = None
        self.last_end: float | None = None
        self.done = False

    def _target(self) -> float:
        return self.start + self.index / self.fps

    def push(self, frame: Any, time: float | None) -> Iterator[Frame]:
        if self.done:
            return
        if time is None:
            time = self.prev_time + self.step if self.prev is not None else 0.0
        # Targets before this frame are answered by the previous frame (or, before the
        # first frame, by this one).
        while self._target() < time - _EPS:
            if self.end is not None and self._target() >= self.end - _EPS:
                self.done = True
                return
            yield self._emit(self.prev if self.prev is not None else frame)
        if frame is not self.prev:
            self.prev, self.prev_time, self.prev_rgb = frame, time, None
        duration = _frame_duration(frame)
        self.last_end = time + (duration if duration > 0 else self.step)

    def finish(self) -> Iterator[Frame]:
        if self.done or self.prev is None or self.last_end is None:
            return
        stop = self.last_end if self.end is None else min(self.end, self.last_end)
        while self._target() < stop - _EPS:
            yield self._emit(self.prev)
        self.done = True

    def _emit(self, frame: Any) -> Frame:
        if frame is self.prev and self.prev_rgb is not None:
            rgb = self.prev_rgb.copy()  # repeated frame: a fresh array the caller may modify
        else:
            rgb = frame.to_ndarray(format="rgb24")
            if frame is self.prev:
                self.prev_rgb = rgb
        out = Frame(time=self._target(), rgb=rgb)
        self.index += 1
        return out


def _frame_duration(frame: Any) -> float:
    if isinstance(frame, av.AudioFrame):
        return frame.samples / frame.sample_rate if frame.sample_rate else 0.0
    if frame.duration and frame.time_base:
        return float(frame.duration * frame.time_base)
    return 0.0


def _warn_if_short(name: str, media_end: float, declared: float) -> None:
    """Log a warning when the streams stop well before the duration the container declares.

    Truncated Matroska/WebM/MP3 files decode without any error, only shorter. Not an error:
    some containers only estimate their duration (MP3 without a header: from the bit rate).
    """
    if declared - media_end > max(0.5, 0.05 * declared):
        _log.warning(
            "%s seems truncated: its media ends at %.2f s but it declares %.2f s; "
            "re-download or re-encode it if that is not expected",
            name,
            media_end,
            declared,
        )


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
    chunks of about ``chunk_seconds`` starting exactly at ``start`` and ending at ``end``; video
    frames are sampled at ``start + i / fps`` (the latest frame shown at that time) and
    converted to RGB at native size. ``fps=None`` skips video, ``sample_rate=None`` audio.
    ``format``/``options`` go to ``av.open`` (e.g. ``format="v4l2"`` for a camera).

    Arguments are checked at once; the source is opened on the first ``next()``. Raises
    :class:`MediaError` on any problem with the source.
    """
    _check_args(fps, sample_rate, start, end, chunk_seconds)
    name = os.fspath(source)
    if _is_local(name, format) and not os.path.exists(name):
        raise MediaError(f"{name}: no such file: check the path")
    return _iterate(name, fps, sample_rate, start, end, chunk_seconds, format, options)


def _iterate(
    name: str,
    fps: float | None,
    sample_rate: int | None,
    start: float,
    end: float | None,
    chunk_seconds: float,
    format: str | None,
    options: dict[str, str] | None,
    info_out: list[MediaInfo] | None = None,
) -> Iterator[AudioChunk | Frame]:
    container = _open(name, format, options)
    try:
        info = _info(container, name)
        _check_info(info)
        if info_out is not None:
            info_out.append(info)
        if info.duration is not None and start >= info.duration:
            raise MediaError(
                f"start ({start} s) is at or after the end of {name} ({info.duration:.3f} s): "
                "choose an earlier start"
            )
        astream, vstream = _pick_streams(container)
        astream = astream if sample_rate is not None else None
        vstream = vstream if fps is not None else None
        streams = [s for s in (astream, vstream) if s is not None]
        if not streams:
            return
        audio = _AudioChunker(sample_rate, start, end, chunk_seconds) if sample_rate else None
        video = None
        if vstream is not None and fps is not None:
            vstream.thread_type = "AUTO"
            video = _FrameSampler(fps, start, end, 1.0 / (info.fps or fps))
        origin = container.start_time / av.time_base if container.start_time is not None else None
        decoded_any = False
        emitted_any = False
        seeked = False
        if start > _SEEK_MARGIN:
            try:
                container.seek(int(((origin or 0.0) + start - _SEEK_MARGIN) * av.time_base))
                origin = origin or 0.0  # seekable, so timestamps are file-relative
                seeked = True
            except av.error.FFmpegError:
                pass  # not seekable (live source, pipe): decode from the start and discard
        time = 0.0
        media_end = 0.0
        at_eof = False
        packets = container.demux(*streams)
        while True:
            corrupt = f"{name} is truncated or corrupt: %s failed at {time:.2f} s (%s): " + (
                "re-encode or re-download it"
            )
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
                if seeked and not emitted_any:
                    continue  # a packet cut by the seek (MPEG-PS audio): still in pre-roll
                raise MediaError(corrupt % ("decoding", exc.strerror)) from exc
            for frame in frames:
                decoded_any = True
                if origin is None and frame.time is not None:
                    origin = frame.time  # live sources: time starts at the first frame
                ftime = frame.time - (origin or 0.0) if frame.time is not None else None
                if ftime is not None:
                    time = max(time, ftime)
                    media_end = max(media_end, ftime + _frame_duration(frame))
                sink = audio if isinstance(frame, av.AudioFrame) else video
                if sink is not None:
                    for item in sink.push(frame, ftime):
                        emitted_any = True
                        yield item
            if (audio is None or audio.done) and (video is None or video.done):
                break
        for sink in (audio, video):
            if sink is not None:
                for item in sink.finish():
                    emitted_any = True
                    yield item
        if at_eof and info.duration is not None and decoded_any:
            _warn_if_short(name, media_end, info.duration)
        if not decoded_any:
            raise MediaError(
                f"{name} has zero duration (no decodable audio or video data): re-export it"
            )
        if not emitted_any and start > 0:
            raise MediaError(
                f"start ({start} s) is at or after the end of {name} ({time:.3f} s): "
                "choose an earlier start"
            )
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
    # Same generator as iter_media, with one open of the container for the info too.
    for item in _iterate(name, fps, sample_rate, start, end, 10.0, format, options, found):
        if isinstance(item, Frame):
            frames.append(item.rgb)
            times.append(item.time)
        else:
            audio.append(item.samples)
    info = found[0]
    if frames:
        frame_array = np.stack(frames)
    else:
        frame_array = np.zeros((0, info.height or 0, info.width or 0, 3), dtype=np.uint8)
    return Decoded(
        info=info,
        frames=frame_array,
        frame_times=np.asarray(times, dtype=np.float64),
        audio=np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32),
        sample_rate=sample_rate or 0,
    )


def _read_full(stream: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, looping over short reads (pipes); fewer only at end of stream."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        try:
            data = stream.read(size - got)
        except OSError as exc:
            raise MediaError(f"reading raw PCM failed ({exc}): check the input stream") from exc
        if isinstance(data, str):
            raise MediaError("iter_pcm needs a binary stream (e.g. sys.stdin.buffer), not text")
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def iter_pcm(
    stream: BinaryIO, *, sample_rate: int = 16000, chunk_seconds: float = 1.0
) -> Iterator[AudioChunk]:
    """Stream raw signed 16-bit little-endian mono PCM (e.g. ``sys.stdin.buffer``).

    Yields float32 chunks in [-1, 1) of ``chunk_seconds`` (the last one may be shorter); no
    resampling is done: ``sample_rate`` must be the rate of the input. A trailing odd byte is
    dropped.
    """
    if not sample_rate > 0:
        raise MediaError(f"sample_rate must be positive, got {sample_rate}: use e.g. 16000")
    if not chunk_seconds > 0:
        raise MediaError(f"chunk_seconds must be positive, got {chunk_seconds}")
    chunk_bytes = 2 * max(1, round(chunk_seconds * sample_rate))
    emitted = 0
    while True:
        data = _read_full(stream, chunk_bytes)
        usable = len(data) - len(data) % 2
        if usable:
            samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
            yield AudioChunk(start=emitted / sample_rate, samples=samples)
            emitted += len(samples)
        if len(data) < chunk_bytes:
            return
