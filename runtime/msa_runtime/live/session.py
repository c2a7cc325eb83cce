"""One live session: the bytes a client sends, decoded as they arrive and scored in windows.

The media bytes go into an OS pipe through asyncio's pipe transport (bounded: the receiver waits
for the decoder when too much is waiting, which is back-pressure on the client's socket). A
thread runs :meth:`Analyzer.stream` on the pipe's read end (``/proc/self/fd/N``, with the format
named, so FFmpeg decodes a WebM/Matroska or raw PCM stream incrementally, exactly as
``msa-run --stream`` decodes a file; device records of PCM and JPEG frames are read the same
way) and hands each window to the event loop. Windows wait in a bounded queue for a slow client;
past it the oldest are dropped and the next message counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from msa_runtime.analyzer import Analyzer
from msa_runtime.errors import MsaError
from msa_runtime.live.config import LiveError, LiveLimits
from msa_runtime.media import RECORDS

_log = logging.getLogger("msa_runtime.live")
_ids = itertools.count(1)

#: ``format`` a client may name -> the format :meth:`Analyzer.stream` decodes (an FFmpeg demuxer,
#: or device records: :mod:`msa_runtime.media.records`).
FORMATS = {"webm": "matroska", "matroska": "matroska", "s16le": "s16le", RECORDS: RECORDS}


class _Pipe(asyncio.BaseProtocol):
    """The write end's flow control: ``drained`` is set while the pipe accepts more."""

    def __init__(self) -> None:
        self.drained = asyncio.Event()
        self.drained.set()
        self.lost: BaseException | None = None
        self.closed = False  # connection_lost was called: the transport is gone

    def pause_writing(self) -> None:
        self.drained.clear()

    def resume_writing(self) -> None:
        self.drained.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost, self.closed = exc, True
        self.drained.set()


class LiveSession:
    """Decode and score one client's stream (see the module doc). Made by the endpoint; use
    :meth:`start`, then :meth:`feed` bytes, :meth:`finish` (the client is done) or
    :meth:`cancel` (the client went away), and :meth:`next_message` for what to send."""

    def __init__(
        self,
        an: Analyzer,
        limits: LiveLimits,
        *,
        format: str,
        text: str | None = None,
        window: float = 6.0,
        hop: float = 2.0,
        record_dir: Path | None = None,
    ) -> None:
        if format not in FORMATS:
            raise LiveError(f"format must be one of {sorted(FORMATS)}, got {format!r}")
        self.id = next(_ids)
        self.an, self.limits = an, limits
        self.format, self.text, self.window, self.hop = format, text, window, hop
        self.windows = 0
        self.dropped = 0
        self.received = 0
        self.first_byte: float | None = None
        self.started = time.monotonic()
        self._tokens = float(limits.max_rate * limits.burst)
        self._last = time.monotonic()
        self._out: deque[dict[str, Any]] = deque()
        self._ready = asyncio.Event()
        self._cancelled = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._read_fd, write_fd = os.pipe()
        self._write_fd: int | None = write_fd
        self._transport: asyncio.WriteTransport | None = None
        self._pipe = _Pipe()
        self._thread = threading.Thread(target=self._run, name=f"msa-live-{self.id}", daemon=True)
        self._record = None
        if record_dir is not None:
            self._record = open(Path(record_dir) / f"session-{self.id}.{format}", "wb")  # noqa: SIM115

    async def start(self) -> None:
        """Connect the pipe's write end to the loop and start decoding."""
        assert self._write_fd is not None  # a programming error, not user input
        write = os.fdopen(self._write_fd, "wb", buffering=0)
        self._write_fd = None
        transport, _ = await self._loop.connect_write_pipe(lambda: self._pipe, write)
        high = max(self.limits.max_buffer // 2, 1)
        transport.set_write_buffer_limits(high=high, low=high // 4)
        self._transport = transport
        self._thread.start()

    # -- bytes in -------------------------------------------------------------------------

    async def feed(self, data: bytes) -> None:
        """Pass ``data`` to the decoder: a :class:`LiveError` when the session sends faster than
        its byte rate or its bytes pile up beyond the buffer limit; waits (back-pressure) while
        the decoder is behind."""
        now = time.monotonic()
        cap = self.limits.max_rate * self.limits.burst
        self._tokens = min(cap, self._tokens + (now - self._last) * self.limits.max_rate)
        self._last = now
        if len(data) > self._tokens:
            raise LiveError(
                f"this session sends faster than {self.limits.max_rate:,} bytes/s (the server's "
                f"limit, over {self.limits.burst:g} s): send media as it is recorded"
            )
        self._tokens -= len(data)
        if self.first_byte is None:
            self.first_byte = now
        self.received += len(data)
        if self._record is not None:
            self._record.write(data)
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # the decoder has stopped: its message is on its way
        transport.write(data)
        if transport.get_write_buffer_size() > self.limits.max_buffer:
            raise LiveError(
                f"{transport.get_write_buffer_size():,} bytes wait for the decoder (limit "
                f"{self.limits.max_buffer:,}): the server cannot keep up with this session"
            )
        try:  # back-pressure: stop reading the client's socket while the decoder is behind
            await asyncio.wait_for(self._pipe.drained.wait(), self.limits.idle)
        except asyncio.TimeoutError:
            raise LiveError(f"the decoder read nothing for {self.limits.idle:g} s: session ended") from None

    def finish(self) -> None:
        """The client has sent everything: the decoder sees the end of the stream."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    async def cancel(self) -> None:
        """End the session now (client gone, limit hit): the decoder stops, the thread is joined,
        the pipe and the recording are closed."""
        self._cancelled.set()
        if self._transport is not None and not self._pipe.closed:
            self._transport.abort()
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        if self._thread.ident is not None:  # started: wait for it without blocking the loop
            deadline = time.monotonic() + 30.0
            while self._thread.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if self._thread.is_alive():
                _log.warning("live session %d: the decoder thread did not stop within 30 s", self.id)
        if self._record is not None:
            self._record.close()
            self._record = None

    # -- messages out ---------------------------------------------------------------------

    async def next_message(self) -> dict[str, Any]:
        """The next message for the client (``window``, then ``done`` or ``error``)."""
        while not self._out:
            self._ready.clear()
            await self._ready.wait()
        message = self._out.popleft()
        if message["type"] == "window":
            message["dropped"] = self.dropped  # windows dropped so far, as this one leaves
        return message

    def _put(self, message: dict[str, Any]) -> None:
        if message["type"] == "window":
            waiting = [m for m in self._out if m["type"] == "window"]
            if len(waiting) >= self.limits.queue:  # a slow client: drop the oldest window
                self._out.remove(waiting[0])
                self.dropped += 1
        self._out.append(message)
        self._ready.set()

    def _send(self, message: dict[str, Any]) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._put, message)

    # -- the decoding thread --------------------------------------------------------------

    def _run(self) -> None:
        path = f"/proc/self/fd/{self._read_fd}"
        fmt = FORMATS[self.format]
        options = None
        if fmt == "s16le":
            options = {"sample_rate": str(self.an.sample_rate or 16000), "ch_layout": "mono"}
        try:
            windows = self.an.stream(
                path, text=self.text, window=self.window, hop=self.hop, format=fmt, options=options
            )
            with contextlib.closing(windows):  # type: ignore[type-var]
                for p in windows:
                    if self._cancelled.is_set():
                        break
                    self.windows += 1
                    self._send(self._window_message(p.to_dict(digits=4)))
            if not self._cancelled.is_set():
                self._send({"type": "done", "windows": self.windows, "dropped": self.dropped})
        except MsaError as exc:
            self._send({"type": "error", "message": _client_message(str(exc), path)})
        except Exception as exc:  # the session ends with a message; the server goes on
            _log.exception("live session %d failed", self.id)
            self._send({"type": "error", "message": f"unexpected {type(exc).__name__}: {exc}"})
        finally:
            os.close(self._read_fd)

    def _window_message(self, record: dict[str, Any]) -> dict[str, Any]:
        """A window's record plus ``lag_ms``: how long after its end was received (assuming the
        client sends as it records) the result is sent."""
        lag = None
        if self.first_byte is not None and record.get("end") is not None:
            lag = round((time.monotonic() - self.first_byte - float(record["end"])) * 1e3, 1)
        return {"type": "window", **record, "lag_ms": lag, "session": self.id}


def _client_message(message: str, path: str) -> str:
    """An error for the client: the server's pipe path replaced by what the client sent."""
    return message.replace(path, "the stream")
