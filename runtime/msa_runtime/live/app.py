"""The live endpoint as an ASGI app (Starlette): the demo page, ``/health`` and the WebSocket
``/ws`` where each connection is one :class:`~msa_runtime.live.session.LiveSession`.

The protocol (JSON text messages, media as binary messages):

1. the client sends ``{"type": "start", "format": "webm" | "matroska" | "s16le" | "pcm+jpeg",
   "text": ..., "window": 6, "hop": 2}`` (all optional; ``s16le`` is 16-bit mono PCM at the
   pack's rate, ``pcm+jpeg`` timed records of PCM and JPEG frames from a device:
   :mod:`msa_runtime.media.records`);
2. the server answers ``{"type": "ready", ...}`` with the session's settings, the rates it
   decodes (``sample_rate``, ``fps``: what a device should send) and the limits;
3. the client sends media bytes as they are recorded (``MediaRecorder`` chunks in order), and
   ``{"type": "end"}`` when done;
4. the server sends ``{"type": "window", ...}`` per window (the fields of ``msa-run``'s
   records, plus ``lag_ms`` and ``dropped``), then ``{"type": "done"}``; or ``{"type":
   "error", "message": ...}`` and closes, for whatever ends the session early.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from msa_runtime.analyzer import Analyzer
from msa_runtime.errors import MsaError
from msa_runtime.live.config import LiveError, LiveLimits
from msa_runtime.live.session import FORMATS, LiveSession

_log = logging.getLogger("msa_runtime.live")
#: WebSocket close codes: policy violation (token, limits), try again later (busy), bad data.
POLICY, BUSY, BAD_DATA = 1008, 1013, 1007


class LiveApp:
    """The endpoint's state: the shared :class:`Analyzer`, limits, token, sessions open now."""

    def __init__(
        self,
        an: Analyzer,
        limits: LiveLimits,
        token: str | None = None,
        record_dir: Path | None = None,
    ) -> None:
        self.an, self.limits, self.token, self.record_dir = an, limits, token, record_dir
        self.sessions: dict[int, LiveSession] = {}
        self.refused = 0
        routes = [
            Route("/", self.page),
            Route("/live.js", self.script),
            Route("/health", self.health),
            WebSocketRoute("/ws", self.websocket),
        ]
        self.asgi = Starlette(routes=routes)

    # -- HTTP ---------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        return Response(_static("index.html"), media_type="text/html; charset=utf-8")

    async def script(self, request: Request) -> Response:
        return Response(_static("live.js"), media_type="text/javascript; charset=utf-8")

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {
                "sessions": len(self.sessions),
                "max_sessions": self.limits.max_sessions,
                "refused": self.refused,
                "modalities": list(self.an.modalities),
                "asr": self.an.recognizer is not None,
                "token": self.token is not None,
            }
        )

    # -- WebSocket ----------------------------------------------------------------------

    async def websocket(self, ws: WebSocket) -> None:
        await ws.accept()
        if not self._authorized(ws):
            self.refused += 1
            await _close(ws, POLICY, "wrong or missing token: give ?token=... or Authorization: Bearer")
            return
        if len(self.sessions) >= self.limits.max_sessions:
            self.refused += 1
            cap = self.limits.max_sessions
            await _close(ws, BUSY, f"server busy: {cap} session{'s' * (cap != 1)} at once is the limit; "
                         "try again later")  # fmt: skip
            return
        session: LiveSession | None = None
        try:
            start = await self._start_message(ws)
            session = LiveSession(self.an, self.limits, record_dir=self.record_dir, **start)
            self.sessions[session.id] = session
            await session.start()
            await ws.send_json(self._ready(session))
            await self._serve(ws, session)
        except LiveError as exc:
            await _close(ws, POLICY, str(exc))
        except MsaError as exc:
            await _close(ws, BAD_DATA, str(exc))
        except WebSocketDisconnect:
            pass  # the client went away: the session is cancelled below
        finally:
            if session is not None:
                await session.cancel()
                self.sessions.pop(session.id, None)

    def _authorized(self, ws: WebSocket) -> bool:
        if self.token is None:
            return True
        given = ws.query_params.get("token") or ""
        header = ws.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def _start_message(self, ws: WebSocket) -> dict[str, Any]:
        """The session settings of the client's first message, checked."""
        try:
            raw = await asyncio.wait_for(ws.receive_text(), self.limits.idle)
        except asyncio.TimeoutError:
            raise LiveError(f"no start message within {self.limits.idle:g} s: session closed") from None
        except KeyError:  # starlette: a binary message where text was expected
            raise LiveError(
                'the first message must be JSON text: {"type": "start", "format": "webm"}'
            ) from None
        try:
            msg = json.loads(raw)
        except json.JSONDecodeError:
            raise LiveError('the first message must be JSON: {"type": "start", "format": "webm"}') from None
        if not isinstance(msg, dict) or msg.get("type") != "start":
            raise LiveError('the first message must be {"type": "start", "format": ...}')
        fmt = msg.get("format", "webm")
        if fmt not in FORMATS:
            raise LiveError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
        text = msg.get("text")
        if text is not None and (not isinstance(text, str) or len(text) > 10_000):
            raise LiveError("text must be a string of at most 10,000 characters")
        out: dict[str, Any] = {"format": fmt, "text": text or None}
        for name, default in (("window", 6.0), ("hop", 2.0)):
            value = msg.get(name, default)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 60:
                raise LiveError(f"{name} must be seconds in (0, 60], got {value!r}")
            out[name] = float(value)
        return out

    def _ready(self, session: LiveSession) -> dict[str, Any]:
        lim = self.limits
        return {
            "type": "ready",
            "session": session.id,
            "format": session.format,
            "window": session.window,
            "hop": session.hop,
            "modalities": list(self.an.modalities),
            "sample_rate": self.an.sample_rate,
            "fps": self.an.fps,
            "asr": self.an.recognizer is not None and session.text is None,
            "limits": {"max_rate": lim.max_rate, "max_message": lim.max_message, "idle": lim.idle,
                       "max_seconds": lim.max_seconds, "queue": lim.queue},
        }  # fmt: skip

    async def _serve(self, ws: WebSocket, session: LiveSession) -> None:
        """Receive media and send windows at once until the session ends either way."""
        receiving = asyncio.create_task(self._receive(ws, session))
        sending = asyncio.create_task(self._send(ws, session))
        try:
            done, _ = await asyncio.wait(
                {receiving, sending}, timeout=self.limits.max_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                raise LiveError(f"the session reached its limit of {self.limits.max_seconds:g} s")
            if receiving in done and receiving.exception() is None:
                await sending  # the client said "end": the last windows follow
            for task in done:
                task.result()  # a LiveError, MsaError or disconnect ends the session
        finally:
            for task in (receiving, sending):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _receive(self, ws: WebSocket, session: LiveSession) -> None:
        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), self.limits.idle)
            except asyncio.TimeoutError:
                raise LiveError(f"nothing received for {self.limits.idle:g} s: session closed") from None
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000))
            data = msg.get("bytes")
            if data is not None:
                if len(data) > self.limits.max_message:
                    raise LiveError(f"a message of {len(data):,} bytes is over the limit of "
                                    f"{self.limits.max_message:,}: send smaller chunks")  # fmt: skip
                await session.feed(data)
                continue
            text = msg.get("text") or ""
            if _is_end(text):
                session.finish()
                return
            raise LiveError('after "start" send media bytes and {"type": "end"}; got other text')

    async def _send(self, ws: WebSocket, session: LiveSession) -> None:
        while True:
            message = await session.next_message()
            if message["type"] == "error":
                raise MsaError(message["message"])
            await ws.send_json(message)
            if message["type"] == "done":
                await _close(ws, 1000, None)
                return


def _is_end(text: str) -> bool:
    try:
        msg = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(msg, dict) and msg.get("type") == "end"


async def _close(ws: WebSocket, code: int, message: str | None) -> None:
    """Tell the client why (an ``error`` message) and close; nothing if it is gone already."""
    if ws.application_state != WebSocketState.CONNECTED or ws.client_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        if message is not None:
            await ws.send_json({"type": "error", "message": message})
        await ws.close(code, (message or "").encode()[:120].decode(errors="ignore"))


def _static(name: str) -> bytes:
    return resources.files("msa_runtime.live").joinpath("static", name).read_bytes()
