"""Device records: raw PCM and JPEG frames, timed by the sender, in one byte stream.

A device (a camera board, a phone app, ``msa-run --connect`` reading a camera and a microphone)
often has uncompressed audio and single JPEG images rather than a container. The ``pcm+jpeg``
format carries both: a sequence of records, each a 13-byte little-endian header, then its payload::

    kind   1 byte   b"A" (audio) or b"V" (video)
    time   float64  seconds since the stream began, on one clock for both kinds
    length uint32   payload bytes
    payload         A: signed 16-bit mono PCM at the receiver's sample rate
                    V: one JPEG image (baseline or progressive)

Audio is counted by its samples: a record's ``time`` only matters when it is more than
:data:`GAP_TOLERANCE` after the samples so far (the device lost audio), and the gap is then
filled with silence (at most :data:`MAX_GAP` seconds). Frame times must not go back. Build records
with :func:`audio_record`, :func:`frame_record` and a :class:`JpegEncoder`; :func:`iter_records`
decodes a stream of them into the :class:`~msa_runtime.media.timeline.AudioChunk` s and
:class:`~msa_runtime.media.timeline.Frame` s the stream windows take.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, BinaryIO

import av
import numpy as np

from msa_runtime.errors import MediaError
from msa_runtime.media.probe import check_frame_size
from msa_runtime.media.stdin import read_head
from msa_runtime.media.timeline import AudioChunk, Frame, FrameSampler, SampleChunks

FORMAT = "pcm+jpeg"
"""The format name (``--input-format``, ``Analyzer.stream(format=...)``, the live protocol)."""
HEADER = struct.Struct("<cdI")
MAX_RECORD_BYTES = 8 << 20
"""The largest payload: a 4096x2160 JPEG at high quality, or 4 minutes of 16 kHz PCM."""
GAP_TOLERANCE = 0.1
MAX_GAP = 30.0
_SOF = {0xC0, 0xC1, 0xC2}  # start-of-frame markers that carry the image size


def audio_record(pcm: bytes | np.ndarray, time: float) -> bytes:
    """An audio record: ``pcm`` (int16 samples or their bytes) starting at ``time`` seconds."""
    data = pcm if isinstance(pcm, bytes) else np.asarray(pcm, "<i2").tobytes()
    return HEADER.pack(b"A", time, len(data)) + data


def frame_record(jpeg: bytes, time: float) -> bytes:
    """A video record: one JPEG image shown from ``time`` seconds."""
    return HEADER.pack(b"V", time, len(jpeg)) + jpeg


class JpegEncoder:
    """Frames (RGB arrays or PyAV frames) to JPEG with FFmpeg's encoder; it keeps its context
    while the size repeats. ``quality``: FFmpeg's quantiser, 2 (near the best: a 640x480 frame
    is about 35 KB) to 31."""

    def __init__(self, quality: int = 2) -> None:
        self.quality = quality
        self.context: Any = None

    def __call__(self, frame: np.ndarray | av.VideoFrame) -> bytes:
        if isinstance(frame, np.ndarray):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, np.uint8), format="rgb24")
        ctx = self.context
        if ctx is None or (ctx.width, ctx.height) != (frame.width, frame.height):
            ctx = self.context = av.CodecContext.create("mjpeg", "w")
            ctx.width, ctx.height, ctx.pix_fmt = frame.width, frame.height, "yuvj420p"
            ctx.time_base = Fraction(1, 1000)
            ctx.qmin = ctx.qmax = self.quality
        image = frame.reformat(format="yuvj420p")
        image.pts = None
        return b"".join(bytes(p) for p in ctx.encode(image))


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment, or None when there is none."""
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


class _Audio:
    """Sample-counted audio from records, cut into chunks; gaps filled with silence."""

    def __init__(self, rate: int, chunk_seconds: float) -> None:
        self.rate = rate
        self.chunks = SampleChunks(rate, 0.0, chunk_seconds)
        self.count = 0  # samples placed so far

    def push(self, payload: bytes, time: float, label: str) -> Iterator[AudioChunk]:
        if len(payload) % 2:
            raise MediaError(
                f"{label}: an audio record of {len(payload)} bytes: 16-bit PCM has whole 2-byte samples"
            )
        gap = time - self.count / self.rate
        if gap > MAX_GAP:
            raise MediaError(
                f"{label}: audio jumps from {self.count / self.rate:.2f} s to {time:.2f} s "
                f"(over {MAX_GAP:g} s of lost audio): start a new stream"
            )
        if gap > GAP_TOLERANCE:
            self._add(np.zeros(round(gap * self.rate), np.float32))
        self._add(np.frombuffer(payload, "<i2").astype(np.float32) / 32768)
        yield from self.chunks.emit(final=False)

    def finish(self) -> Iterator[AudioChunk]:
        yield from self.chunks.emit(final=True)

    def _add(self, samples: np.ndarray) -> None:
        self.chunks.add(samples)
        self.count += samples.size


class _Video:
    """JPEG records decoded and sampled at ``fps`` (the latest frame shown at each time)."""

    def __init__(self, fps: float) -> None:
        self.sampler = FrameSampler(fps, 0.0, None, 1.0 / fps)
        self.decoder: Any = None
        self.last = -math.inf

    def push(self, payload: bytes, time: float, label: str) -> Iterator[Frame]:
        if time < self.last:
            raise MediaError(
                f"{label}: a frame at {time:.3f} s after one at {self.last:.3f} s: "
                "frame times must not go back"
            )
        self.last = time
        size = jpeg_size(payload) if payload[:2] == b"\xff\xd8" else None
        if size is None:
            raise MediaError(
                f"{label}: the frame at {time:.3f} s is not a JPEG image (first bytes {payload[:4].hex(' ')})"
            )
        check_frame_size(f"{label}: the frame at {time:.3f} s", *size)
        if self.decoder is None:
            self.decoder = av.CodecContext.create("mjpeg", "r")
        try:
            frames = self.decoder.decode(av.Packet(payload))
        except av.error.FFmpegError as exc:
            raise MediaError(
                f"{label}: the JPEG frame at {time:.3f} s does not decode ({exc.strerror})"
            ) from None
        for frame in frames:
            yield from self.sampler.push(frame, time)

    def finish(self) -> Iterator[Frame]:
        yield from self.sampler.finish()


def iter_records(
    stream: BinaryIO,
    *,
    fps: float | None,
    sample_rate: int | None,
    chunk_seconds: float = 1.0,
    label: str = FORMAT,
) -> Iterator[AudioChunk | Frame]:
    """Decode ``pcm+jpeg`` records from ``stream`` as they arrive (see the module doc): audio in
    ``chunk_seconds`` chunks at ``sample_rate`` (the rate the sender used), frames sampled at
    ``fps``. A kind the caller does not decode (None) is read and skipped. Raises
    :class:`MediaError` naming the first malformed record."""
    audio = _Audio(sample_rate, chunk_seconds) if sample_rate else None
    video = _Video(fps) if fps else None
    index = 0
    while True:
        head = read_head(stream, HEADER.size, label=label)
        if not head:
            break
        where = f"{label}, record {index}"
        if len(head) < HEADER.size:
            raise MediaError(
                f"{where}: the stream ended inside a record header ({len(head)} of {HEADER.size} bytes)"
            )
        kind, time, length = HEADER.unpack(head)
        if kind not in (b"A", b"V"):
            raise MediaError(
                f"{where}: kind byte {head[:1].hex()} is neither A (audio) nor V (video): "
                f"the stream is not {FORMAT} records (see msa_runtime.media.records)"
            )
        if not math.isfinite(time) or time < 0:
            raise MediaError(f"{where}: time {time!r} is not seconds since the stream began")
        if length > MAX_RECORD_BYTES:
            raise MediaError(
                f"{where}: a payload of {length:,} bytes is over the limit of {MAX_RECORD_BYTES:,}"
            )
        payload = read_head(stream, length, label=label)
        if len(payload) < length:
            raise MediaError(f"{where}: the stream ended inside a record ({len(payload)} of {length} bytes)")
        if kind == b"A" and audio is not None:
            yield from audio.push(payload, time, where)
        elif kind == b"V" and video is not None:
            yield from video.push(payload, time, where)
        index += 1
    if video is not None:
        yield from video.finish()
    if audio is not None:
        yield from audio.finish()
