"""Cameras and microphones as a live client's source: captured with PyAV, sent as device records.

A device is named ``FORMAT:NAME`` with an FFmpeg input device (or virtual source) as the
format: ``v4l2:/dev/video0`` (a Linux camera), ``alsa:default`` (a Linux microphone),
``avfoundation:0:0`` (macOS: camera and microphone), ``dshow:video=Cam:audio=Mic`` (Windows),
``lavfi:testsrc=size=320x240:rate=15`` (a generated picture). :func:`capture` reads one or two of
them (at most one video and one audio stream in all) in threads and turns what they capture into
``pcm+jpeg`` records (:mod:`msa_runtime.media.records`): frames at the server's frame rate as
JPEG, audio as 16-bit mono PCM at its sample rate, both on one clock that starts when capture
starts. Only what the server samples crosses the network: at 3 fps, three JPEGs a second. A
source faster than real time (a file read through ``lavfi:movie=FILE``, a generator) is paced to
real time, as a device would deliver it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import av

from msa_runtime.errors import MediaError
from msa_runtime.media.records import JpegEncoder, audio_record, frame_record

_DONE = object()


@dataclass(frozen=True)
class Device:
    """A capture device: the FFmpeg input format and the device's name for it."""

    format: str
    name: str

    def __str__(self) -> str:
        return f"{self.format}:{self.name}"


def input_formats() -> set[str]:
    """The FFmpeg input formats PyAV offers here (each alias of ``video4linux2,v4l2``)."""
    return {alias for name in av.formats_available for alias in name.split(",")}


def parse_device(spec: str) -> Device | None:
    """``"v4l2:/dev/video0"`` -> ``Device("v4l2", "/dev/video0")``; None when ``spec`` does not
    start with the name of an FFmpeg input format and a colon (a file name)."""
    fmt, sep, name = spec.partition(":")
    if not sep or len(fmt) < 2 or fmt not in input_formats():
        return None
    return Device(fmt, name)


class _Reader:
    """One open device; once :meth:`configure` d, its first video and audio streams are decoded
    in a thread into records."""

    def __init__(self, device: Device) -> None:
        try:
            self.container: Any = av.open(device.name, format=device.format)
        except av.error.FFmpegError as exc:
            raise MediaError(f"cannot open {device} ({exc.strerror}): check the device name") from None
        except ValueError as exc:  # PyAV: an unknown format name
            raise MediaError(f"cannot open {device} ({exc})") from None
        self.device = device
        self.video: Any = None
        self.audio: Any = None
        self.fps, self.rate = 1.0, 16000
        self.jpeg = JpegEncoder()
        self.resampler: Any = None
        self.next_frame = 0.0
        self.audio_sent = 0
        self.audio_start: float | None = None
        self.first: float | None = None

    def configure(self, fps: float | None, rate: int | None) -> bool:
        """Pick the streams the server decodes (``fps``/``rate`` None: none of that kind); False
        when the device has none of them."""
        c = self.container
        self.video = c.streams.video[0] if c.streams.video and fps else None
        self.audio = c.streams.audio[0] if c.streams.audio and rate else None
        self.fps, self.rate = fps or 1.0, rate or 16000
        if self.audio is not None:
            self.resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
        return self.video is not None or self.audio is not None

    def close(self) -> None:
        self.container.close()

    def run(self, out: queue.Queue[Any], start: float, seconds: float | None, stop: threading.Event) -> None:
        """Put ``(record, time)`` pairs on ``out`` until the device ends, ``seconds`` of capture
        or ``stop``; then ``_DONE``, or the error that ended the capture."""
        try:
            streams = [s for s in (self.video, self.audio) if s is not None]
            for frame in self.container.decode(*streams):
                t = self._time(frame, start)
                if stop.is_set() or (seconds is not None and t >= seconds):
                    break
                for item in self._records(frame, t):
                    ahead = start + item[1] - time.monotonic()
                    if ahead > 0:  # a source faster than real time (a file, a generator) waits
                        time.sleep(ahead)
                    out.put(item)
            out.put(_DONE)
        except av.error.FFmpegError as exc:
            out.put(MediaError(f"capture from {self.device} failed ({exc.strerror})"))

    def _time(self, frame: Any, start: float) -> float:
        """The frame's time on the capture clock: its own timestamps, from when the device's
        first frame arrived (two devices' timestamps need not share an origin)."""
        own = float(frame.time) if frame.time is not None else time.monotonic() - start
        if self.first is None:
            self.first = own - (time.monotonic() - start)
        return max(0.0, own - self.first)

    def _records(self, frame: Any, t: float) -> Iterator[tuple[bytes, float]]:
        if isinstance(frame, av.AudioFrame):
            assert self.resampler is not None  # audio frames come only from the audio stream
            if self.audio_start is None:
                self.audio_start = t
            for out in self.resampler.resample(frame):
                pcm = out.to_ndarray().reshape(-1)
                when = self.audio_start + self.audio_sent / self.rate
                self.audio_sent += pcm.size
                yield audio_record(pcm, when), when
        elif t >= self.next_frame:
            self.next_frame = (int(t * self.fps) + 1) / self.fps
            yield frame_record(self.jpeg(frame), t), t


def open_devices(devices: list[Device]) -> list[_Reader]:
    """Open every device now, before anything is sent (a wrong name fails at once)."""
    readers: list[_Reader] = []
    try:
        for device in devices:
            readers.append(_Reader(device))
    except MediaError:
        for r in readers:
            r.close()
        raise
    return readers


def configure(readers: list[_Reader], fps: float | None, rate: int | None) -> None:
    """Pick each device's streams for a server decoding frames at ``fps`` and audio at ``rate``
    (None: not that kind): every device must give something, at most one video and one audio."""
    for r in readers:
        if not r.configure(fps, rate):
            wanted = " or ".join(k for k, v in (("video", fps), ("audio", rate)) if v) or "anything"
            raise MediaError(f"{r.device} gives no {wanted} that the server decodes")
    for kind in ("video", "audio"):
        having = [str(r.device) for r in readers if getattr(r, kind) is not None]
        if len(having) > 1:
            raise MediaError(f"{' and '.join(having)} both give {kind}: give one camera and one microphone")


def capture(
    readers: list[_Reader], *, seconds: float | None = None, stop: threading.Event | None = None
) -> Generator[tuple[bytes, float], None, None]:
    """The records of opened and configured devices (:func:`open_devices`, :func:`configure`),
    as captured, each with its time: until every device ends, ``seconds`` of capture, or
    ``stop`` is set. The devices are closed at the end; a capture error is raised as
    :class:`MediaError`."""
    stop = stop or threading.Event()
    out: queue.Queue[Any] = queue.Queue(maxsize=64)  # a generated source waits for the sender
    threads: list[threading.Thread] = []
    try:
        start = time.monotonic()
        for r in readers:
            name = f"msa-capture-{r.device.format}"
            threads.append(
                threading.Thread(target=r.run, args=(out, start, seconds, stop), name=name, daemon=True)
            )
            threads[-1].start()
        running = len(threads)
        while running:
            item = out.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, MediaError):
                raise item
            else:
                yield item
    finally:
        stop.set()
        deadline = time.monotonic() + 5.0  # a reader blocked on its device puts one more item
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            try:
                out.get(timeout=0.05)
            except queue.Empty:
                continue
        for r, t in zip(readers, threads):
            if not t.is_alive():
                r.close()
        for r in readers[len(threads) :]:
            r.close()
