"""Media on standard input (``msa-run - ...``, ``Analyzer.predict("-")``/``stream("-")``).

The first bytes are sniffed for a container's magic number (:func:`sniff`): WAV/RF64, AVI,
MP4/MOV (``ftyp``), Matroska/WebM (EBML), Ogg, FLAC, MP3 (ID3 or frame sync), AAC (ADTS),
MPEG-TS/PS, AIFF, AU, CAF, AMR, FLV, ASF. A container is decoded by FFmpeg through PyAV, read
from the pipe as it arrives; MP4/MOV, whose index may sit at the end of the file, is first
copied to a temporary file. Bytes that match no container are refused unless the caller names
the format: ``s16le`` is raw signed 16-bit little-endian mono PCM at the pack's sample rate, any
other name is an FFmpeg demuxer (``ffmpeg -formats``). Empty input is a :class:`MediaError`.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from msa_runtime.errors import InputError, MediaError

#: The name ``-`` stands for, in messages and records.
LABEL = "standard input"
#: ``format`` for raw signed 16-bit little-endian mono PCM at the pack's sample rate.
RAW_PCM = "s16le"
#: How many bytes :func:`open_stdin` reads before deciding (MPEG-TS needs two 188-byte packets).
HEAD = 512
#: Containers that need to seek (their index may come last): copied to a temporary file first.
SPOOLED = {"mp4"}
_KNOWN = "WAV, MP4/MOV, Matroska/WebM, Ogg, FLAC, MP3, AAC, MPEG-TS/PS, AIFF, AU, CAF, AMR, FLV, ASF, AVI"


def sniff(head: bytes) -> str | None:
    """The container ``head`` (the first bytes of a stream) starts, or None when no known magic
    number matches (raw PCM, text, garbage)."""
    h = head
    if h[:4] in (b"RIFF", b"RF64") and h[8:12] == b"WAVE":
        return "wav"
    if h[:4] == b"RIFF" and h[8:12] == b"AVI ":
        return "avi"
    if h[4:8] == b"ftyp" or (h[4:8] in (b"moov", b"mdat", b"free", b"wide") and len(h) >= 8):
        return "mp4"
    if h[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if h[:4] == b"OggS":
        return "ogg"
    if h[:4] == b"fLaC":
        return "flac"
    if h[:3] == b"ID3":
        return "mp3"
    if len(h) >= 4 and h[0] == 0xFF and (h[1] & 0xE0) == 0xE0:
        layer, version = (h[1] >> 1) & 3, (h[1] >> 3) & 3
        if layer == 0 and (h[1] & 0xF6) == 0xF0:
            return "aac"  # ADTS
        bitrate, rate = h[2] >> 4, (h[2] >> 2) & 3
        if layer != 0 and version != 1 and bitrate not in (0, 15) and rate != 3:
            return "mp3"  # an MPEG audio frame header
    if len(h) > 188 and h[0] == 0x47 and h[188] == 0x47:
        return "mpegts"
    if h[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpeg"
    if h[:4] == b"FORM" and h[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if h[:4] == b".snd":
        return "au"
    if h[:4] == b"caff":
        return "caf"
    if h[:5] == b"#!AMR":
        return "amr"
    if h[:3] == b"FLV":
        return "flv"
    if h[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":
        return "asf"
    return None


class Prefixed(io.RawIOBase):
    """A read-only, non-seekable stream: ``head`` (bytes already read), then the rest of
    ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        super().__init__()
        self._head, self._stream = memoryview(bytes(head)), stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if len(self._head):
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(buffer))
        if not data:
            return 0
        if isinstance(data, str):
            raise MediaError("standard input must be read as a binary stream (sys.stdin.buffer), not text")
        buffer[: len(data)] = data
        return len(data)


@dataclass
class Piped:
    """What standard input holds: ``kind`` (a container from :func:`sniff`, :data:`RAW_PCM` or
    another FFmpeg format the caller named) and the stream to decode: ``file`` (the bytes as they
    arrive, head included) or ``path`` (a temporary copy, removed by :meth:`close`)."""

    kind: str
    file: BinaryIO | None = None
    path: str | None = None
    format: str | None = None  # FFmpeg format name to force (None: FFmpeg probes)

    @property
    def raw(self) -> bool:
        return self.kind == RAW_PCM

    @property
    def source(self) -> str | BinaryIO:
        """What to decode: the temporary copy's path, or the stream."""
        if self.path is not None:
            return self.path
        if self.file is None:
            raise MediaError("standard input was closed before it was read")
        return self.file

    def close(self) -> None:
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None


def standard_input() -> BinaryIO:
    """The process's standard input as a binary stream, or a :class:`MediaError` when it is
    closed (``msa-run - <&-``: Python then has no ``sys.stdin``)."""
    import sys

    stream = sys.stdin
    buffer = getattr(stream, "buffer", None)
    if stream is None or buffer is None or getattr(stream, "closed", False):
        raise MediaError(f"{LABEL} is closed: pipe media into it (cat clip.mp4 | msa-run - ...)")
    return buffer


def read_head(stream: BinaryIO, size: int = HEAD, label: str = LABEL) -> bytes:
    """Up to ``size`` bytes, retrying short reads (pipes) until ``size`` or end of input."""
    head = bytearray()
    while len(head) < size:
        try:
            more = stream.read(size - len(head))
        except OSError as exc:
            raise MediaError(f"reading {label} failed ({exc.strerror or exc}): check the input") from exc
        if isinstance(more, str):
            raise MediaError(f"{label} must be read as a binary stream (sys.stdin.buffer), not text")
        if not more:
            break
        head += more
    return bytes(head)


def open_stdin(
    stream: BinaryIO, format: str | None = None, *, spool: bool = False, pcm_rate: int = 16000
) -> Piped:
    """Sniff ``stream`` (``sys.stdin.buffer``) and say how to decode it.

    ``format``: None (sniff; unknown bytes are an error), :data:`RAW_PCM`, or an FFmpeg format
    name. ``spool`` copies the input to a temporary file (whole-clip decoding, which may seek);
    raw PCM is then written as a WAV file at ``pcm_rate``, so it decodes like any file. Raises
    :class:`MediaError` for empty input or bytes that match no container.
    """
    if format is not None and (not isinstance(format, str) or not format.strip()):
        raise InputError(f"format must be an FFmpeg format name or {RAW_PCM!r}, got {format!r}")
    if hasattr(stream, "isatty") and stream.isatty():
        raise MediaError(f"{LABEL} is a terminal: pipe media into it (cat clip.mp4 | msa-run - ...)")
    head = read_head(stream)
    if not head:
        raise MediaError(f"{LABEL} is empty: pipe a media file or raw PCM into it")
    if format == RAW_PCM and len(head) < 2:  # a short head is the whole input
        raise MediaError(
            f"{LABEL} ended after {len(head)} byte: raw {RAW_PCM} PCM needs whole 2-byte samples; "
            "pipe at least a few milliseconds of audio"
        )
    kind = format if format is not None else sniff(head)
    if kind is None:
        raise MediaError(
            f"{LABEL} does not start with a known container ({_KNOWN}; first bytes "
            f"{head[:8].hex(' ')}): for raw 16-bit mono PCM at the pack's rate give "
            f"--input-format {RAW_PCM} (format='{RAW_PCM}')"
        )
    piped = Piped(kind, format=format)
    rest = Prefixed(head, stream)
    if not (spool or kind in SPOOLED):
        piped.file = io.BufferedReader(rest, 1 << 16)
        return piped
    raw = kind == RAW_PCM
    fd, piped.path = tempfile.mkstemp(prefix="msa-stdin-", suffix=".wav" if raw else f".{kind}")
    try:
        with os.fdopen(fd, "wb") as out:
            if raw:
                _write_wav(rest, out, pcm_rate)
                piped.kind, piped.format = "wav", None
            else:
                shutil.copyfileobj(rest, out, 1 << 20)
    except OSError as exc:
        piped.close()
        raise MediaError(f"copying {LABEL} to a temporary file failed ({exc.strerror or exc})") from exc
    return piped


def _write_wav(data: io.RawIOBase, out: BinaryIO, rate: int) -> None:
    """Raw 16-bit mono little-endian PCM from ``data`` as a WAV file (a trailing odd byte is
    dropped)."""
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        carry = b""
        while True:
            chunk = data.read(1 << 20)
            if not chunk:
                break
            chunk = carry + chunk
            cut = len(chunk) // 2 * 2
            wav.writeframesraw(chunk[:cut])
            carry = chunk[cut:]


@contextmanager
def opened(
    stream: BinaryIO, format: str | None = None, *, spool: bool = False, pcm_rate: int = 16000
) -> Iterator[Piped]:
    """:func:`open_stdin` as a context manager that removes the temporary copy."""
    piped = open_stdin(stream, format, spool=spool, pcm_rate=pcm_rate)
    try:
        yield piped
    finally:
        piped.close()
