"""A Python client of the live endpoint: stream a media file, or a camera and a microphone, to
``msa-live`` and get back the records ``msa-run --stream`` would print for them
(``msa-run --connect URL SOURCE...``).

WebM and Matroska files are sent as they are; other containers (MP4, ...) are remuxed to
Matroska on the fly with PyAV (no re-encoding: the server decodes the same packets). Raw 16-bit
mono PCM at the pack's rate goes as ``s16le``. Bytes are paced below the server's byte-rate
limit, or at the media's own speed with ``realtime=True`` (as a camera would send). Devices
(``v4l2:/dev/video0``, ``alsa:default``: :mod:`msa_runtime.live.capture`) are captured here and
sent as ``pcm+jpeg`` records at the rates the server decodes.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from msa_runtime.errors import MediaError, MsaError
from msa_runtime.live.capture import Device, capture, configure, open_devices, parse_device
from msa_runtime.live.config import EXTRA, LiveError
from msa_runtime.media import RECORDS

#: Bytes per WebSocket message; with ``realtime`` (paced as recorded) :data:`LIVE_CHUNK`, about
#: a MediaRecorder timeslice of a small camera stream.
CHUNK = 64 * 1024
LIVE_CHUNK = 4096
_EXTRA_FIELDS = ("type", "lag_ms", "dropped", "session")
_DEVICE_HELP = "a camera or microphone is FORMAT:DEVICE (v4l2:/dev/video0, alsa:default)"


def ws_url(url: str, token: str | None = None) -> str:
    """``http://HOST:PORT`` (or ``ws://...``, with or without ``/ws``) -> the WebSocket URL."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise LiveError(f"{url!r} is not a server address: give http://HOST:PORT (msa-live's URL)")
    path = parts.path.rstrip("/")
    path = path if path.endswith("/ws") else f"{path}/ws"
    query = urlencode({"token": token}) if token else parts.query
    return urlunsplit((scheme, parts.netloc, path, query, ""))


def plan_sources(sources: tuple[str | os.PathLike[str], ...]) -> str | list[Device]:
    """One media file (its name), or one or two capture devices: refused otherwise, saying why."""
    names = [os.fspath(s) for s in sources]
    if not names:
        raise LiveError(f"give a media file to stream, or devices: {_DEVICE_HELP}")
    if len(names) == 1 and os.path.isfile(names[0]):
        return names[0]
    devices = []
    for name in names:
        device = None if os.path.lexists(name) else parse_device(name)
        if device is None:
            what = "is not a regular file" if os.path.lexists(name) else "no such file"
            raise MediaError(f"{name}: {what}: --connect streams one media file, or devices ({_DEVICE_HELP})")
        devices.append(device)
    if len(devices) > 2:
        raise LiveError("give at most two devices: a camera and a microphone")
    return devices


def stream_records(
    url: str,
    *sources: str | os.PathLike[str],
    text: str | None = None,
    window: float = 6.0,
    hop: float = 2.0,
    token: str | None = None,
    format: str | None = None,
    realtime: bool = False,
    seconds: float | None = None,
    timeout: float = 60.0,
    messages: list[dict[str, Any]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream a media file, or one or two capture devices (``"v4l2:/dev/video0",
    "alsa:default"``), to the live endpoint at ``url`` and yield one record per window, as
    ``msa-run --stream`` makes them (``input`` first). ``format="s16le"`` sends a raw PCM file as
    is. ``seconds`` stops sending after that much media (a device otherwise captures until it
    ends, or until Ctrl-C: the windows of what was sent still follow). ``messages`` (a list)
    receives every server message as it came (``lag_ms``, ``dropped``). Errors the server reports
    are raised as :class:`LiveError`, one line."""
    try:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake
        from websockets.sync.client import connect
    except ImportError:
        raise LiveError(f"--connect needs websockets: pip install '{EXTRA}'") from None
    plan = plan_sources(sources)
    readers = open_devices(plan) if isinstance(plan, list) else None
    if isinstance(plan, str):
        label, kind = plan, format or ("s16le" if plan.endswith((".pcm", ".raw")) else "matroska")
    else:
        label, kind = " + ".join(map(str, plan)), RECORDS
    try:
        ws = connect(ws_url(url, token), open_timeout=timeout, max_size=2**22).__enter__()
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        for r in readers or ():
            r.close()
        raise LiveError(f"cannot connect to {url} ({exc}): is msa-live running there?") from None
    stop = threading.Event()
    failed: list[MsaError] = []  # why the input could not be read (the sender closes the socket)
    sender: threading.Thread | None = None
    try:
        ws.send(json.dumps({"type": "start", "format": kind, "text": text, "window": window, "hop": hop}))
        ready = _receive(ws, timeout, messages)
        if readers is not None:
            configure(readers, ready.get("fps"), ready.get("sample_rate"))
            chunks = capture(readers, seconds=seconds, stop=stop)
            readers = None  # the capture closes them
        else:
            rate = int(ready.get("sample_rate") or 16000)
            chunks = _chunks(label, kind, rate, LIVE_CHUNK if realtime else CHUNK)
        pace = 0.5 * float(ready["limits"]["max_rate"])
        sender = threading.Thread(
            target=_send_all,
            args=(ws, chunks, pace, realtime, seconds, stop, failed),
            daemon=True,
        )
        sender.start()
        yield from _windows(ws, label, timeout, messages, stop)
    except ConnectionClosed as exc:
        if sender is not None:
            sender.join(5.0)
        if failed:
            raise failed[0] from None
        reason = exc.rcvd.reason if exc.rcvd and exc.rcvd.reason else f"closed without a reason ({exc})"
        raise LiveError(f"the server ended the session: {reason}") from None
    finally:
        stop.set()
        ws.close()
        if sender is not None:
            sender.join(5.0)
        for r in readers or ():
            r.close()


def _windows(
    ws: Any, label: str, timeout: float, messages: list[dict[str, Any]] | None, stop: threading.Event
) -> Iterator[dict[str, Any]]:
    """The server's windows as records until ``done``. The first Ctrl-C ends the input (sets
    ``stop``) and the windows of what was sent still come; a second one stops at once."""
    while True:
        try:
            msg = _receive(ws, timeout, messages)
        except KeyboardInterrupt:
            if stop.is_set():
                raise
            stop.set()
            continue
        if msg["type"] == "done":
            return
        record = {"input": label}
        record.update({k: v for k, v in msg.items() if k not in _EXTRA_FIELDS})
        yield record


def _receive(ws: Any, timeout: float, messages: list[dict[str, Any]] | None) -> dict[str, Any]:
    try:
        raw = ws.recv(timeout=timeout)
    except TimeoutError:
        raise LiveError(f"the server sent nothing for {timeout:g} s") from None
    msg = json.loads(raw)
    if messages is not None:
        messages.append(msg)
    if msg.get("type") == "error":
        raise LiveError(f"the server ended the session: {msg.get('message')}")
    return dict(msg)


def _send_all(
    ws: Any,
    chunks: Generator[tuple[bytes, float], None, None],
    rate: float,
    realtime: bool,
    seconds: float | None,
    stop: threading.Event,
    failed: list[MsaError],
) -> None:
    """Send every chunk, paced (``rate`` bytes/s, or by its media time when ``realtime``), then
    ``end``; early once ``seconds`` of media went or ``stop`` is set; quietly when the session is
    closed. When the input cannot be read, the error goes to ``failed`` and the socket closes."""
    from websockets.exceptions import ConnectionClosed

    t0 = time.monotonic()
    sent = 0
    try:
        with contextlib.closing(chunks):  # a device's capture stops here
            for data, media_time in chunks:
                if stop.is_set() or (seconds is not None and media_time >= seconds):
                    break
                delay = t0 + (media_time if realtime else sent / rate) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                ws.send(data)
                sent += len(data)
        ws.send(json.dumps({"type": "end"}))
    except (ConnectionClosed, OSError):
        return  # the receiving side reports why
    except MsaError as exc:  # the input could not be read: say so and end the session
        failed.append(exc)
        ws.close(1007, str(exc).encode()[:120].decode(errors="ignore"))


def _raw_chunks(name: str, duration: float, piece: int) -> Generator[tuple[bytes, float], None, None]:
    """The file's bytes in :data:`CHUNK` pieces, each with the media time it reaches, taken as
    proportional to the bytes sent (``duration``: the file's seconds, 0 if unknown)."""
    size = max(os.path.getsize(name), 1)
    done = 0
    with open(name, "rb") as f:
        while data := f.read(piece):
            done += len(data)
            yield data, duration * done / size


def _chunks(name: str, kind: str, rate: int, piece: int) -> Generator[tuple[bytes, float], None, None]:
    """What to send for file ``name``: its bytes (WebM, Matroska, raw PCM) or a remux, in
    pieces of about ``piece`` bytes."""
    if kind == "s16le":
        return _raw_chunks(name, os.path.getsize(name) / 2 / rate, piece)
    if name.lower().endswith((".webm", ".mkv")):
        from msa_runtime.media import probe

        return _raw_chunks(name, probe(name).duration or 0.0, piece)
    return _remuxed(name, piece)


class _Collect:
    """A write-only file for PyAV's muxer: the bytes written since the last :meth:`take`."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def _remuxed(name: str, piece: int) -> Generator[tuple[bytes, float], None, None]:
    """``name``'s first audio and video streams remuxed to live Matroska (packets copied), with
    the media time each piece reaches."""
    import av

    sink = _Collect()
    try:
        src = av.open(name)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{name} cannot be opened ({exc.strerror}): check the file") from None
    with src, av.open(sink, "w", format="matroska", options={"live": "1"}) as out:
        picked = [s for s in (next(iter(src.streams.video), None), next(iter(src.streams.audio), None)) if s]
        if not picked:
            raise MediaError(f"{name} has no audio or video stream to send")
        mapping = {s.index: out.add_stream_from_template(s) for s in picked}
        pending = 0
        for packet in src.demux(picked):
            if packet.dts is None:
                continue
            when = float(packet.pts * packet.time_base) if packet.pts is not None else 0.0
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
            pending += packet.size
            if pending >= piece:
                pending = 0
                yield sink.take(), when
    yield sink.take(), 0.0
