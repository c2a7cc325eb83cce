"""Media decoding with PyAV: stream (:func:`iter_media`) and decode audio and video (probing and
opening: :mod:`msa_runtime.media.probe`, re-exported here).

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
from msa_runtime.limits import MAX_MEDIA_SECONDS
from msa_runtime.media.probe import (
    REDO,
    MediaInfo,
    Opened,
    check_audio_rate,
    check_bounds,
    check_exists,
    check_frame_size,
    describe,
    open_container,
    open_file,
    pick_streams,
    probe,
)
from msa_runtime.media.stdin import read_head
from msa_runtime.media.timeline import AudioChunk, Frame, frame_duration
from msa_runtime.media.timeline import AudioChunker as _AudioChunker
from msa_runtime.media.timeline import FrameSampler as _FrameSampler

__all__ = [
    "AudioChunk",
    "Decoded",
    "Frame",
    "MediaInfo",
    "Opened",
    "decode",
    "iter_media",
    "iter_pcm",
    "open_file",
    "probe",
]

_log = logging.getLogger(__name__)
_SEEK_MARGIN = 0.5  # seek this far before ``start``: decoder pre-roll, inexact demuxers


@dataclass(frozen=True)
class Decoded:
    """A whole clip in memory, as returned by :func:`decode`."""

    info: MediaInfo
    frames: np.ndarray  # (N, H, W, 3) uint8, N may be 0
    frame_times: np.ndarray  # (N,) float64
    audio: np.ndarray  # float32 mono, may be empty
    sample_rate: int


def _wav_shortfall(path: str) -> tuple[float, float] | None:
    """For a WAV file whose ``data`` chunk declares more bytes than the file holds (a truncated
    copy): (declared seconds, held seconds); else None. Streaming headers (size 0 or 0xFFFFFFFF)
    declare nothing."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        cid, length = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if cid == b"fmt " and pos + 20 <= len(head):
            byte_rate = int.from_bytes(head[pos + 16 : pos + 20], "little")
        if cid == b"data":
            held = size - (pos + 8)
            if byte_rate <= 0 or length in (0, 0xFFFFFFFF) or length <= held:
                return None
            return length / byte_rate, max(held, 0) / byte_rate
        pos += 8 + length + (length & 1)
    return None


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


def iter_media(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    fps: float | None,
    sample_rate: int | None,
    start: float = 0.0,
    end: float | None = None,
    chunk_seconds: float = 1.0,
    format: str | None = None,
    options: dict[str, str] | None = None,
    label: str | None = None,
) -> Iterator[AudioChunk | Frame]:
    """Stream a media file or live source as audio chunks and video frames, in time order.

    One demux pass: audio is downmixed to mono, resampled to ``sample_rate`` and cut into
    chunks of ``chunk_seconds`` (the last may be shorter) covering exactly [start, end); video
    frames are sampled at ``start + i / fps`` (the latest frame shown at that time) and
    converted to RGB at native size. ``fps=None`` skips video, ``sample_rate=None`` audio.
    ``format``/``options`` go to ``av.open`` (e.g. ``format="v4l2"`` for a camera).

    ``source`` may also be a readable binary file object (a pipe: see :mod:`msa_runtime.media.stdin`);
    ``label`` names the source in messages (default: the path, or ``standard input``).

    Arguments and the file's existence are checked at once, the rest on the first ``next()``.
    Raises :class:`MediaError` on any problem with the source.
    """
    _check_args(fps, sample_rate, start, end, chunk_seconds)
    file: Any
    if hasattr(source, "read"):
        name, file = label or "standard input", source
    else:
        path: str = os.fspath(source)
        check_exists(path, format)
        name, file = (path, None) if label is None else (label, path)  # a labelled path opens as is
    return _iterate(name, fps, sample_rate, start, end, chunk_seconds, format, options, file=file)


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
    file: Any = None,
    container: Any = None,
) -> Iterator[AudioChunk | Frame]:
    if container is None:
        container = open_container(name, format, options, file)
    try:
        info = describe(container, name)
        if info_out is not None:
            info_out.append(info)
        late = f"start ({start} s) is at or after the end of {name} (%.3f s): choose an earlier one"
        if info.duration is not None and start >= info.duration:
            raise MediaError(late % info.duration)
        if file is None and container.format.name == "wav" and os.path.isfile(name):
            _warn_short_wav(name)
        astream, vstream = pick_streams(container)
        audio = video = None
        if astream is not None and sample_rate is not None:
            audio = _AudioChunker(sample_rate, start, end, chunk_seconds)
        if vstream is not None and fps is not None:
            vstream.thread_type = "AUTO"
            video = _FrameSampler(fps, start, end, 1.0 / (info.fps or fps))
        if audio is None and video is None:
            return
        check_bounds(info, audio=audio is not None, video=video is not None)
        progress = _Progress(bounded=info.duration is not None)
        yield from _demux(container, name, start, astream, audio, vstream, video, progress)
        if not progress.decoded:
            raise MediaError(f"{name} has zero duration (nothing decodable): re-export it")
        if not progress.emitted and start > 0:
            raise MediaError(late % progress.time)
        # Truncated Matroska/WebM/MP3 decode without error, only shorter. Only a warning: some
        # containers just estimate their duration (MP3 without a header: from the bit rate).
        declared = info.duration
        if (
            progress.at_eof
            and declared is not None
            and declared - progress.media_end > max(0.5, declared / 20)
        ):
            _log.warning(
                "%s seems truncated: its media ends at %.2f s but it declares %.2f s; "
                "%s if that is not expected",
                name,
                progress.media_end,
                declared,
                REDO,
            )
    finally:
        container.close()


def _warn_short_wav(name: str) -> None:
    """Log a warning when WAV file ``name`` holds less audio than its header declares."""
    short = _wav_shortfall(name)
    if short is not None:
        _log.warning(
            "%s seems truncated: its WAV header declares %.2f s of audio but the file "
            "holds %.2f s; %s if that is not expected",
            name,
            *short,
            REDO,
        )


@dataclass
class _Progress:
    """How far :func:`_demux` got: whether anything decoded and anything was emitted, whether it
    reached the end of the input, the latest frame time and where the media decoded ends."""

    decoded: bool = False
    emitted: bool = False
    at_eof: bool = False
    time: float = 0.0
    media_end: float = 0.0
    bounded: bool = False
    """Whether decoded time is held to :data:`~msa_runtime.limits.MAX_MEDIA_SECONDS` (files that
    declare a duration; live sources run as long as they run)."""


def _seek(container: Any, start: float) -> tuple[float | None, bool]:
    """Seek ``container`` to just before ``start`` when it lies past the pre-roll margin and the
    input is seekable: the time origin (None: set by the first frame) and whether it seeked."""
    origin = container.start_time / av.time_base if container.start_time is not None else None
    if start > _SEEK_MARGIN:
        try:
            container.seek(int(((origin or 0.0) + start - _SEEK_MARGIN) * av.time_base))
            return origin or 0.0, True  # seekable: timestamps are file-relative
        except av.error.FFmpegError:
            pass  # not seekable (live source, pipe): decode from the start and discard
    return origin, False


def _demux(
    container: Any,
    name: str,
    start: float,
    astream: Any,
    audio: _AudioChunker | None,
    vstream: Any,
    video: _FrameSampler | None,
    progress: _Progress,
) -> Iterator[AudioChunk | Frame]:
    """One demux pass over the streams that have a sink (``audio``, ``video``), until both are
    done or the input ends, then what the sinks still hold; ``progress`` records how it went."""
    streams = [s for s, sink in ((astream, audio), (vstream, video)) if sink is not None]
    origin, seeked = _seek(container, start)
    packets = container.demux(*streams)
    while not ((audio is None or audio.done) and (video is None or video.done)):
        corrupt = f"{name} is truncated or corrupt: %s failed at {progress.time:.2f} s (%s): {REDO}"
        try:
            packet = next(packets, None)
        except av.error.FFmpegError as exc:
            raise MediaError(corrupt % ("reading", exc.strerror)) from exc
        if packet is None:
            progress.at_eof = True
            break
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            if seeked and not progress.emitted:
                continue  # a packet cut by the seek (MPEG-PS audio): still in pre-roll
            raise MediaError(corrupt % ("decoding", exc.strerror)) from exc
        for frame in frames:
            _check_frame(frame, name)
            progress.decoded = True
            if origin is None and frame.time is not None:
                origin = frame.time  # live sources: time starts at the first frame
            ftime = frame.time - (origin or 0.0) if frame.time is not None else None
            if ftime is not None:
                if progress.bounded and ftime > MAX_MEDIA_SECONDS:
                    raise MediaError(
                        f"{name} has media at {ftime:.0f} s, past the limit of {MAX_MEDIA_SECONDS:.0f} s: "
                        f"its timestamps are broken or it is too long; {REDO} or cut it into parts"
                    )
                progress.time = max(progress.time, ftime)
                progress.media_end = max(progress.media_end, ftime + frame_duration(frame))
            sink = audio if isinstance(frame, av.AudioFrame) else video
            for item in sink.push(frame, ftime) if sink is not None else ():
                progress.emitted = True
                yield item
    for done in (audio, video):
        for item in done.finish() if done is not None else ():
            progress.emitted = True
            yield item


def _check_frame(frame: Any, name: str) -> None:
    """A decoded frame within the bounds its stream declared: a stream may change its frame size
    or audio rate midway, after the up-front check."""
    if isinstance(frame, av.AudioFrame):
        check_audio_rate(name, frame.sample_rate)
    else:
        check_frame_size(name, frame.width, frame.height)


def decode(
    source: str | os.PathLike[str] | Opened,
    *,
    fps: float | None,
    sample_rate: int | None,
    start: float = 0.0,
    end: float | None = None,
    format: str | None = None,
    options: dict[str, str] | None = None,
    label: str | None = None,
) -> Decoded:
    """Decode a whole clip (or the window [start, end)) into arrays; see :func:`iter_media`
    (``label`` names the source in messages).

    ``source`` may be a file :func:`open_file` opened: decoding reads it without opening it
    again (``format``, ``options`` and ``label`` do not apply then). For long inputs prefer
    :func:`iter_media`, which keeps memory flat.
    """
    _check_args(fps, sample_rate, start, end, 1.0)
    container = None
    if isinstance(source, Opened):
        if format is not None or options is not None or label is not None:
            raise InputError("decode: format, options and label are for a path, not an opened file")
        name, container = source.name, source.take()
    else:
        name = os.fspath(source)
    if label is not None:
        check_exists(name, format)
    found: list[MediaInfo] = []
    frames: list[np.ndarray] = []
    times: list[float] = []
    audio: list[np.ndarray] = []
    target = None if label is None else name  # a labelled path (a spooled pipe) opens as is
    items = _iterate(
        label or name, fps, sample_rate, start, end, 10.0, format, options, found, target, container
    )
    for item in items:
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
        data = read_head(stream, size, label="raw PCM")
        if len(data) >= 2:
            samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32)
            yield AudioChunk(start=emitted / sample_rate, samples=samples / 32768)
            emitted += len(samples)
        if len(data) < size:
            return
