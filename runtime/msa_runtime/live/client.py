"""A Python client of the live endpoint: stream a media file to ``msa-live`` and get back the
records ``msa-run --stream`` would print for it (``msa-run --connect URL FILE``).

WebM and Matroska files are sent as they are; other containers (MP4, ...) are remuxed to
Matroska on the fly with PyAV (no re-encoding: the server decodes the same packets). Raw 16-bit
mono PCM at the pack's rate goes as ``s16le``. Bytes are paced below the server's byte-rate
limit, or at the media's own speed with ``realtime=True`` (as a camera would send).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from msa_runtime.errors import MediaError, MsaError
from msa_runtime.live.config import EXTRA, LiveError

#: Bytes per WebSocket message; with ``realtime`` (paced as recorded) :data:`LIVE_CHUNK`, about
#: a MediaRecorder timeslice of a small camera stream.
CHUNK = 64 * 1024
LIVE_CHUNK = 4096
_EXTRA_FIELDS = ("type", "lag_ms", "dropped", "session")


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


def stream_records(
    url: str,
    source: str | os.PathLike[str],
    *,
    text: str | None = None,
    window: float = 6.0,
    hop: float = 2.0,
    token: str | None = None,
    format: str | None = None,
    realtime: bool = False,
    timeout: float = 60.0,
    messages: list[dict[str, Any]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream ``source`` to the live endpoint at ``url`` and yield one record per window, as
    ``msa-run --stream`` makes them (``input`` first). ``format="s16le"`` sends raw PCM as is.
    ``messages`` (a list) receives every server message as it came (``lag_ms``, ``dropped``).
    Errors the server reports are raised as :class:`LiveError`, one line."""
    try:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake
        from websockets.sync.client import connect
    except ImportError:
        raise LiveError(f"--connect needs websockets: pip install '{EXTRA}'") from None
    name = os.fspath(source)
    if not os.path.isfile(name):
        raise MediaError(f"{name}: no such file: --connect streams a media file")
    kind = format or ("s16le" if name.endswith((".pcm", ".raw")) else "matroska")
    try:
        ws = connect(ws_url(url, token), open_timeout=timeout, max_size=2**22).__enter__()
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        raise LiveError(f"cannot connect to {url} ({exc}): is msa-live running there?") from None
    sender: threading.Thread | None = None
    try:
        ws.send(json.dumps({"type": "start", "format": kind, "text": text, "window": window, "hop": hop}))
        ready = _receive(ws, timeout, messages)
        chunks = _chunks(
            name, kind, int(ready.get("sample_rate") or 16000), LIVE_CHUNK if realtime else CHUNK
        )
        rate = 0.5 * float(ready["limits"]["max_rate"])
        sender = threading.Thread(target=_send_all, args=(ws, chunks, rate, realtime), daemon=True)
        sender.start()
        while True:
            msg = _receive(ws, timeout, messages)
            if msg["type"] == "done":
                return
            record = {"input": name}
            record.update({k: v for k, v in msg.items() if k not in _EXTRA_FIELDS})
            yield record
    except ConnectionClosed as exc:
        reason = exc.rcvd.reason if exc.rcvd and exc.rcvd.reason else f"closed without a reason ({exc})"
        raise LiveError(f"the server ended the session: {reason}") from None
    finally:
        ws.close()
        if sender is not None:
            sender.join(5.0)


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


def _send_all(ws: Any, chunks: Iterator[tuple[bytes, float]], rate: float, realtime: bool) -> None:
    """Send every chunk, paced (``rate`` bytes/s, or by its media time when ``realtime``), then
    ``end``; stops quietly when the session is closed."""
    from websockets.exceptions import ConnectionClosed

    t0 = time.monotonic()
    sent = 0
    try:
        for data, media_time in chunks:
            due = media_time if realtime else sent / rate
            delay = t0 + due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ws.send(data)
            sent += len(data)
        ws.send(json.dumps({"type": "end"}))
    except (ConnectionClosed, OSError):
        return  # the receiving side reports why
    except MsaError as exc:  # the input could not be read: say so and end the session
        ws.close(1007, str(exc).encode()[:120].decode(errors="ignore"))


def _raw_chunks(name: str, duration: float, piece: int) -> Iterator[tuple[bytes, float]]:
    """The file's bytes in :data:`CHUNK` pieces, each with the media time it reaches, taken as
    proportional to the bytes sent (``duration``: the file's seconds, 0 if unknown)."""
    size = max(os.path.getsize(name), 1)
    done = 0
    with open(name, "rb") as f:
        while data := f.read(piece):
            done += len(data)
            yield data, duration * done / size


def _chunks(name: str, kind: str, rate: int, piece: int) -> Iterator[tuple[bytes, float]]:
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


def _remuxed(name: str, piece: int) -> Iterator[tuple[bytes, float]]:
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
