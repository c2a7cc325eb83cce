"""Opening a media file with PyAV: one-line errors for what FFmpeg cannot open, and what a file
holds (:func:`probe`, :class:`MediaInfo`), for :mod:`msa_runtime.media.decoding`, which decodes it.

:func:`open_file` checks a file as :func:`probe` does and keeps it open, so that
:func:`msa_runtime.media.decoding.decode` reads it without opening it a second time (a local clip is
probed, to choose between scoring it whole and in windows, then decoded).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Any

import av

from msa_runtime.errors import MediaError
from msa_runtime.limits import MAX_FRAME_PIXELS, MAX_MEDIA_SECONDS, MAX_SAMPLE_RATE, MIN_MEDIA_SAMPLE_RATE

__all__ = [
    "MediaInfo",
    "Opened",
    "check_audio_rate",
    "check_bounds",
    "check_frame_size",
    "open_file",
    "probe",
]

REDO = "re-encode or re-download it"


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


_NOT_MEDIA = "is not a media file FFmpeg can read (or it is truncated/corrupt): give a video"
_OPEN_ERRORS: list[tuple[type[Exception], str]] = [
    (av.error.FileNotFoundError, "does not exist (no such file or device): check the path"),
    (av.error.PermissionError, "cannot be read (permission denied): check its permissions"),
    (av.error.InvalidDataError, f"{_NOT_MEDIA} or audio file such as .mp4, .webm, .mkv, .wav"),
    (av.error.EOFError, f"is truncated or corrupt (it ends unexpectedly): {REDO}"),
]


def check_exists(name: str, format: str | None) -> bool:
    """For a local file (no format, not a URL): raise if it is missing; return if local."""
    local = format is None and "://" not in name
    if local and not os.path.exists(name):
        _why_missing(name)
        raise MediaError(f"{name}: no such file: check the path")
    return local


def _why_missing(name: str) -> None:
    """Raise what is wrong with ``name`` when it is not merely absent (``exists()`` is False for a
    symlink loop, a broken link and an unreadable folder alike)."""
    try:
        os.stat(name)
    except ValueError:  # a NUL byte in the name: nothing on disk can have it
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise MediaError(f"{name} is (or passes through) a symbolic link loop: fix the link") from exc
        if os.path.islink(name):
            raise MediaError(f"{name} is a broken symbolic link: its target does not exist") from exc
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise MediaError(f"{name} cannot be read ({exc.strerror}): check the path") from exc


def open_container(name: str, format: str | None, options: dict[str, str] | None, file: Any = None) -> Any:
    """Open ``name`` (or the binary ``file`` it labels) for reading, turning FFmpeg and OS errors
    into :class:`MediaError`."""
    size = None
    if file is None and check_exists(name, format):
        if os.path.isdir(name):
            raise MediaError(f"{name} is a folder, not a media file: give a video or audio file")
        size = os.path.getsize(name) if os.path.isfile(name) else None  # FIFOs, devices: unknown
        if size == 0:
            raise MediaError(f"{name} is empty (0 bytes): re-copy or re-export the file")
    # FFmpeg decodes a frame or more while it opens a file (to learn its parameters): with
    # max_pixels its decoder refuses a huge frame there instead of allocating it (8192 x 8192 H.264:
    # 56 MB peak instead of 210 MB); check_bounds then refuses the file with a message.
    bounded = {"max_pixels": str(MAX_FRAME_PIXELS), **(options or {})}
    try:
        return av.open(name if file is None else file, mode="r", format=format, options=bounded)
    except av.error.FFmpegError as exc:
        problem = next((p for kind, p in _OPEN_ERRORS if isinstance(exc, kind)), None)
        if problem is None and exc.errno == errno.EIO and size is not None:
            problem = f"is truncated or corrupt: its header ends early (the file is {size} bytes): {REDO}"
        raise MediaError(f"{name} {problem or f'cannot be opened ({exc.strerror})'}") from exc
    except ValueError as exc:  # PyAV: unknown format name
        raise MediaError(f"{name}: {exc}: give a format FFmpeg knows (ffmpeg -formats)") from exc
    except OSError as exc:
        raise MediaError(f"{name} cannot be opened ({exc.strerror or exc}): check it") from exc


def pick_streams(container: Any) -> tuple[Any, Any]:
    """The first audio stream and the first real video stream (cover art excluded)."""
    audio = container.streams.audio[0] if container.streams.audio else None
    attached = av.stream.Disposition.attached_pic
    videos = [s for s in container.streams.video if not s.disposition & attached]
    return audio, (videos[0] if videos else None)


def describe(container: Any, name: str) -> MediaInfo:
    """Describe ``container``; raise if it has no audio/video stream or zero duration."""
    audio, video = pick_streams(container)
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


def check_frame_size(name: str, width: int, height: int) -> None:
    """Refuse frames of more than :data:`~msa_runtime.limits.MAX_FRAME_PIXELS`: the decoder and the
    RGB conversion hold each frame at full size (8192 x 8192: over 1 GB per frame)."""
    if width * height > MAX_FRAME_PIXELS:
        raise MediaError(
            f"{name} has {width}x{height} video frames ({width * height / 1e6:.1f} megapixels), over the "
            f"limit of {MAX_FRAME_PIXELS / 1e6:.1f} megapixels (4096x2160): scale it down first, e.g. "
            "ffmpeg -i IN -vf scale=1920:-2 OUT"
        )


def check_audio_rate(name: str, rate: int) -> None:
    """Refuse audio rates outside [:data:`~msa_runtime.limits.MIN_MEDIA_SAMPLE_RATE`,
    :data:`~msa_runtime.limits.MAX_SAMPLE_RATE`]: a few bytes at 1 Hz resample to minutes of audio."""
    if not MIN_MEDIA_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise MediaError(
            f"{name} has audio at {rate} Hz, outside {MIN_MEDIA_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz: "
            "it is not speech audio; re-encode it (e.g. ffmpeg -i IN -ar 16000 OUT)"
        )


def check_bounds(info: MediaInfo, *, audio: bool, video: bool) -> None:
    """Refuse, from its stream parameters and before anything is decoded, a file whose decoding
    would exceed the limits of :mod:`msa_runtime.limits`: its duration, and the frame size and the
    audio rate of the streams that will be decoded (``audio``, ``video``)."""
    if info.duration is not None and info.duration > MAX_MEDIA_SECONDS:
        raise MediaError(
            f"{info.path} declares {info.duration:.0f} s, over the limit of {MAX_MEDIA_SECONDS:.0f} s "
            f"({MAX_MEDIA_SECONDS / 3600:g} h): cut it into parts (ffmpeg -ss/-t) or repair its header"
        )
    if video and info.width and info.height:
        check_frame_size(info.path, info.width, info.height)
    if audio and info.sample_rate:
        check_audio_rate(info.path, info.sample_rate)


class Opened:
    """A media file :func:`open_file` opened and checked: its :class:`MediaInfo` (``info``) and,
    for :func:`msa_runtime.media.decoding.decode`, the open container, so that decoding does not open the
    file again. Close it (or use ``with``) when it is not decoded."""

    def __init__(self, name: str, info: MediaInfo, container: Any) -> None:
        self.name, self.info, self._container = name, info, container

    def take(self) -> Any:
        """The open container, handed over once (None after, or if the checks read packets)."""
        container, self._container = self._container, None
        return container

    def close(self) -> None:
        container = self.take()
        if container is not None:
            container.close()

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_file(source: str | os.PathLike[str]) -> Opened:
    """Open a media file and check it as :func:`probe` does, keeping it open for
    :func:`msa_runtime.media.decoding.decode` (a file that states no duration is closed after its check,
    which reads packets)."""
    name = os.fspath(source)
    container = open_container(name, None, None)
    try:
        info = describe(container, name)
        if info.duration is None:
            streams = [s for s in pick_streams(container) if s is not None]
            try:
                empty = not any(packet.size for packet in container.demux(*streams))
            except av.error.FFmpegError as exc:
                raise MediaError(f"{name} is truncated or corrupt: {REDO}") from exc
            if empty:
                raise MediaError(f"{name} has zero duration (no audio or video data): re-export it")
    except BaseException:
        container.close()
        raise
    if info.duration is None:  # the check read packets: decoding opens the file anew
        container.close()
        return Opened(name, info, None)
    return Opened(name, info, container)


def probe(source: str | os.PathLike[str]) -> MediaInfo:
    """Describe the streams of a media file without decoding it.

    Raises :class:`MediaError` if the file is missing, not media, or holds no audio/video.
    Only when the container states no duration is one packet read, to rule out an empty file.
    """
    with open_file(source) as opened:
        return opened.info
