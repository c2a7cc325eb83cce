"""The front of ``msa-serve``: refuse an oversized request before Triton reads it.

Triton 2.51 (the PyPI server) has no bound on a request's size: it reads a whole HTTP body or gRPC
message into memory, then copies it into the model's shared memory, whose region never shrinks
(a 600 MB clip against a 1 MB upload limit peaked at 5.9 GB and left 4.4 GB in ``/dev/shm``). Its
``--http-max-input-size`` arrived in later releases, and its gRPC server takes messages up to 2 GB.
So Triton listens on loopback ports of its own and :class:`Front` listens on the public ones,
passing bytes through and reading only the framing:

- HTTP/1.1: each request's head. A body over the limit gets ``413`` (Triton's JSON error shape)
  without reaching Triton; a body without ``Content-Length`` (chunked) gets ``411`` and a
  compressed one ``415``: their size is known only after reading or inflating it.
- gRPC (HTTP/2): each frame's header and each message's 5-byte prefix, which states its length
  before the message arrives. A message over the limit (or compressed) ends its call with
  ``INVALID_ARGUMENT``; the call is reset towards Triton, and its remaining DATA is dropped here
  (the connection's flow-control window is handed back to the client).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future

from msa_runtime.errors import InputError

HEAD_LIMIT = 64 * 1024
"""Bytes an HTTP request head may take (request line and headers)."""
DRAIN_IDLE = 2.0
"""Seconds to wait for more of a refused HTTP body before closing (the client then reads the
refusal instead of a reset connection)."""
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST, _WINDOW = 0, 1, 3, 8
_END_STREAM, _END_HEADERS, _PADDED = 0x1, 0x4, 0x8
_CANCEL, _NO_ERROR = 8, 0
_INVALID_ARGUMENT = 3


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes([first | value])
    out, value = bytearray([first | top]), value - top
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _literal(name: str, value: str) -> bytes:
    """A header as an HPACK literal without indexing: it leaves the peer's dynamic table alone,
    so it can be slipped between Triton's own header blocks."""
    raw_name, raw_value = name.encode(), value.encode()
    return b"\x00" + _hpack_int(len(raw_name), 7, 0) + raw_name + _hpack_int(len(raw_value), 7, 0) + raw_value


def _grpc_message(text: str) -> str:
    """Percent-encoding of ``grpc-message`` (bytes outside printable ASCII, and ``%``)."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in text.encode("utf-8"))


def grpc_error_block(message: str, headers_sent: bool) -> bytes:
    """The HPACK block that ends a call with ``INVALID_ARGUMENT``: trailers-only (``:status``
    200, content type) when Triton has not answered the call yet, else trailers."""
    block = b""
    if not headers_sent:
        block += b"\x88" + _literal("content-type", "application/grpc")
    return (
        block
        + _literal("grpc-status", str(_INVALID_ARGUMENT))
        + _literal("grpc-message", _grpc_message(message))
    )


def too_large(what: str, size: int, limit: int) -> str:
    return (
        f"{what} is {size / 2**20:.1f} MB, over this server's request limit of {limit / 2**20:.1f} MB "
        "(the upload limit plus 1 MB): send a shorter clip or raise --max-upload-mb"
    )


class _Http2Limiter:
    """The client-to-Triton half of one gRPC connection: forwards frames, ends over-limit calls."""

    def __init__(self, limit: int, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.limit, self.client, self.upstream = limit, client, upstream
        self.pending: dict[int, tuple[int, bytearray]] = {}  # stream: (message bytes to come, prefix)
        self.refused: set[int] = set()
        self.answered: set[int] = set()  # streams Triton has sent headers on (set by the other half)

    def _check(self, stream: int, data: bytes) -> str | None:
        need, prefix = self.pending.get(stream, (0, bytearray()))
        i = 0
        while i < len(data):
            if need:
                step = min(need, len(data) - i)
                need, i = need - step, i + step
                continue
            take = min(5 - len(prefix), len(data) - i)
            prefix += data[i : i + take]
            i += take
            if len(prefix) == 5:
                size = int.from_bytes(prefix[1:5], "big")
                if prefix[0]:
                    return "compressed requests are not accepted: send the clip uncompressed"
                if size > self.limit:
                    return too_large("the request", size, self.limit)
                need, prefix = size, bytearray()
        self.pending[stream] = (need, prefix)
        return None

    def _refuse(self, stream: int, message: str) -> None:
        self.refused.add(stream)
        self.pending.pop(stream, None)
        self.upstream.write(_frame(_RST, 0, stream, _CANCEL.to_bytes(4, "big")))
        block = grpc_error_block(message, stream in self.answered)
        self.client.write(_frame(_HEADERS, _END_STREAM | _END_HEADERS, stream, block))
        self.client.write(_frame(_RST, 0, stream, _NO_ERROR.to_bytes(4, "big")))

    def frame(self, kind: int, flags: int, stream: int, payload: bytes) -> bytes | None:
        """What to send on to Triton for one client frame (None: nothing)."""
        if kind == _DATA:
            if stream in self.refused:
                if payload:  # the client may send this much more on the connection
                    self.client.write(_frame(_WINDOW, 0, 0, len(payload).to_bytes(4, "big")))
                if flags & _END_STREAM:
                    self.refused.discard(stream)
                return None
            data = payload
            if flags & _PADDED and payload:
                data = payload[1 : len(payload) - payload[0]]
            message = self._check(stream, data)
            if message is not None:
                self._refuse(stream, message)
                self.client.write(_frame(_WINDOW, 0, 0, len(payload).to_bytes(4, "big")))
                return None
            if flags & _END_STREAM:
                self.pending.pop(stream, None)
        elif kind == _RST:
            self.pending.pop(stream, None)
        elif stream in self.refused and kind not in (_HEADERS, 9):
            if kind == _RST:
                self.refused.discard(stream)
            return None  # the call is over; header blocks still pass: they keep HPACK in step
        return _frame(kind, flags, stream, payload)


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, int, int, bytes]:
    head = await reader.readexactly(9)
    length = int.from_bytes(head[:3], "big")
    return head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, await reader.readexactly(length)


async def _grpc_up(limiter: _Http2Limiter, reader: asyncio.StreamReader) -> None:
    preface = await reader.readexactly(len(_PREFACE))
    limiter.upstream.write(preface)
    while True:
        out = limiter.frame(*await _read_frame(reader))
        if out is not None:
            limiter.upstream.write(out)
        await limiter.upstream.drain()
        await limiter.client.drain()


async def _grpc_down(limiter: _Http2Limiter, reader: asyncio.StreamReader) -> None:
    while True:
        kind, flags, stream, payload = await _read_frame(reader)
        if kind == _HEADERS and not flags & _END_STREAM:
            limiter.answered.add(stream)
        elif (kind == _HEADERS and flags & _END_STREAM) or kind == _RST:
            limiter.answered.discard(stream)
        limiter.client.write(_frame(kind, flags, stream, payload))
        await limiter.client.drain()


def _http_error(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _http_refusal(head: bytes, limit: int) -> tuple[bytes | None, int]:
    """For one request head: the refusal to send (None: pass it on) and its body's length."""
    fields: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip().lower()
    if "transfer-encoding" in fields:
        message = "send the request with a Content-Length (chunked bodies are not accepted)"
        return _http_error(411, "Length Required", message), 0
    try:
        length = int(fields.get("content-length", "0"))
    except ValueError:
        return _http_error(400, "Bad Request", "Content-Length is not a number"), 0
    if fields.get("content-encoding", "identity") != "identity":
        message = "compressed requests are not accepted: send the clip uncompressed"
        return _http_error(415, "Unsupported Media Type", message), length
    if length < 0:
        return _http_error(400, "Bad Request", "Content-Length is negative"), 0
    if length > limit:
        return _http_error(413, "Payload Too Large", too_large("the request body", length, limit)), length
    return None, length


async def _drain(reader: asyncio.StreamReader, length: int) -> None:
    """Read and drop up to ``length`` bytes of a refused body, until the client pauses."""
    while length > 0:
        chunk = await asyncio.wait_for(reader.read(min(length, 1 << 16)), DRAIN_IDLE)
        if not chunk:
            return
        length -= len(chunk)


async def _http_up(
    limit: int, reader: asyncio.StreamReader, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter
) -> None:
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            client.write(_http_error(431, "Request Header Fields Too Large", "the request head is too large"))
            await client.drain()
            return
        refusal, length = _http_refusal(head, limit)
        if refusal is not None:
            client.write(refusal)
            await client.drain()
            await _drain(reader, length)
            return
        upstream.write(head)
        while length > 0:
            chunk = await reader.read(min(length, 1 << 16))
            if not chunk:
                return
            length -= len(chunk)
            upstream.write(chunk)
            await upstream.drain()
        await upstream.drain()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(1 << 16):
        writer.write(chunk)
        await writer.drain()


Pump = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter, asyncio.StreamReader, asyncio.StreamWriter],
    list[Awaitable[None]],
]


def _http_pumps(limit: int) -> Pump:
    def pumps(
        cr: asyncio.StreamReader, cw: asyncio.StreamWriter, ur: asyncio.StreamReader, uw: asyncio.StreamWriter
    ) -> list[Awaitable[None]]:
        return [_http_up(limit, cr, cw, uw), _copy(ur, cw)]

    return pumps


def _grpc_pumps(limit: int) -> Pump:
    def pumps(
        cr: asyncio.StreamReader, cw: asyncio.StreamWriter, ur: asyncio.StreamReader, uw: asyncio.StreamWriter
    ) -> list[Awaitable[None]]:
        limiter = _Http2Limiter(limit, cw, uw)
        return [_grpc_up(limiter, cr), _grpc_down(limiter, ur)]

    return pumps


_ENDS = (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError)
"""How a pump ends when either side goes away or stalls: the connection is closed, nothing to report."""


async def _serve(pumps: Pump, port: int, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
    try:
        ur, uw = await asyncio.open_connection("127.0.0.1", port, limit=HEAD_LIMIT)
    except OSError:
        cw.close()
        return
    tasks = [asyncio.ensure_future(p) for p in pumps(cr, cw, ur, uw)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for writer in (cw, uw):
            writer.close()
    for task in done:
        error = None if task.cancelled() else task.exception()
        if error is not None and not isinstance(error, _ENDS):
            raise error  # a bug of the front: asyncio logs it, the connection is closed


class Front:
    """Listens on ``host`` at ``http_port``/``grpc_port`` (0: free ports) and passes requests of
    at most ``limit`` bytes to Triton on ``127.0.0.1`` at ``upstream_http``/``upstream_grpc``; runs
    its own event loop in a daemon thread between :meth:`start` and :meth:`stop`."""

    def __init__(
        self, host: str, http_port: int, grpc_port: int, upstream_http: int, upstream_grpc: int, limit: int
    ) -> None:
        self.host, self.limit = host, limit
        self.ports = {"--http-port": http_port, "--grpc-port": grpc_port}
        self.upstream = {"--http-port": upstream_http, "--grpc-port": upstream_grpc}
        self.loop = asyncio.new_event_loop()
        self.thread: threading.Thread | None = None
        self.sockets: dict[str, socket.socket] = {}
        self.servers: list[asyncio.Server] = []

    def _bind(self, option: str) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.ports[option]))
        except OSError:
            sock.close()
            raise InputError(
                f"port {self.ports[option]} on {self.host} is taken: choose another with {option}"
            ) from None
        sock.listen(128)
        self.ports[option] = int(sock.getsockname()[1])
        return sock

    def start(self) -> Front:
        """Bind both ports (:class:`InputError` when one is taken) and start serving."""
        for option in self.ports:
            self.sockets[option] = self._bind(option)
        self.thread = threading.Thread(target=self.loop.run_forever, name="msa-front", daemon=True)
        self.thread.start()
        ready: Future[None] = asyncio.run_coroutine_threadsafe(self._listen(), self.loop)
        ready.result(timeout=30)
        return self

    async def _listen(self) -> None:
        kinds = {"--http-port": _http_pumps(self.limit), "--grpc-port": _grpc_pumps(self.limit)}
        for option, sock in self.sockets.items():
            pumps, port = kinds[option], self.upstream[option]

            async def handle(
                cr: asyncio.StreamReader, cw: asyncio.StreamWriter, pumps: Pump = pumps, port: int = port
            ) -> None:
                try:
                    await _serve(pumps, port, cr, cw)
                except asyncio.CancelledError:
                    return  # stop() ends open connections; asyncio would log each as an error

            self.servers.append(await asyncio.start_server(handle, sock=sock, limit=HEAD_LIMIT))

    async def _close(self) -> None:
        for server in self.servers:
            server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # each ends with CancelledError

    def stop(self) -> None:
        """Stop listening, drop open connections and end the loop's thread."""
        if self.thread is not None:
            asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.thread = None
            self.loop.close()
        for sock in self.sockets.values():
            sock.close()
        self.sockets = {}
