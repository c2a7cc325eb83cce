"""Run the live endpoint on uvicorn: :class:`LiveServer` in a background thread (tests,
benchmarks, embedding) or in the foreground (``msa-live``)."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from msa_runtime.analyzer import Analyzer
from msa_runtime.live.config import LiveError, LiveLimits, check_binding, require_extra


class LiveServer:
    """The live endpoint for ``an`` on ``host:port`` (default ``127.0.0.1``; port 0 picks a free
    one: :attr:`url`). Binding elsewhere needs a ``token`` (else ``MSA_EDGE_LIVE_TOKEN``).
    ``limits``: a :class:`LiveLimits` (default: from the environment). ``record_dir`` keeps each
    session's bytes as received (``session-N.webm``), for checking what a client sent.

    ``with LiveServer(an) as server:`` serves in a thread until the block ends; :meth:`run`
    serves in this thread until interrupted."""

    def __init__(
        self,
        an: Analyzer,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        limits: LiveLimits | None = None,
        record_dir: str | os.PathLike[str] | None = None,
        log_level: str = "warning",
    ) -> None:
        require_extra()
        from msa_runtime.live.app import LiveApp

        self.token = check_binding(host, token)
        self.limits = limits or LiveLimits.from_env()
        record = Path(record_dir) if record_dir is not None else None
        if record is not None and not record.is_dir():
            raise LiveError(f"record folder {record} does not exist: create it first")
        self.app = LiveApp(an, self.limits, self.token, record)
        self.host = host
        self.socket = _bind(host, port)
        self.port = self.socket.getsockname()[1]
        self._log_level = log_level
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (the demo page); the WebSocket is ``ws://HOST:PORT/ws``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _uvicorn(self) -> Any:
        import uvicorn

        config = uvicorn.Config(
            self.app.asgi,
            log_level=self._log_level,
            ws="websockets-sansio",
            ws_max_size=2 * self.limits.max_message,  # up to it the app explains; beyond, 1009
            ws_max_queue=8,
            ws_ping_interval=10.0,
            ws_ping_timeout=self.limits.idle,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        return self._server

    def run(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM."""
        self._uvicorn().run(sockets=[self.socket])

    def start(self, timeout: float = 20.0) -> LiveServer:
        """Serve in a background thread; return once it accepts connections."""
        server = self._uvicorn()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self.socket]}, name="msa-live-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise LiveError(f"the live endpoint did not start within {timeout:g} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Close every session and stop serving."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15.0)
            self._thread = None
        self.socket.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise LiveError(
                f"port {port} on {host} is taken: choose another --port (0 picks a free one)"
            ) from None
        raise LiveError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock
