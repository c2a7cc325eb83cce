"""The live endpoint's settings and limits: each from its argument, else an environment variable,
else a default; checked once, when the server is made, with one-line :class:`LiveError` messages."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass, fields

from msa_runtime.errors import MissingExtraError, MsaError

#: What the extra installs; named by every message about a missing piece.
EXTRA = "msa-edge[live]"


class LiveError(MsaError):
    """The live endpoint cannot start as asked (bad limit, unsafe address, port taken)."""


def require_extra() -> None:
    """Raise :class:`MissingExtraError` naming the extra when starlette, uvicorn or websockets
    is missing."""
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn", "websockets") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f"the live endpoint needs {', '.join(missing)}: pip install '{EXTRA}'")


@dataclass(frozen=True)
class LiveLimits:
    """What one server and each of its sessions may use.

    ``max_sessions``: sessions at once; one more is told so and closed (code 1013).
    ``max_rate``: bytes per second a session may send, averaged over ``burst`` seconds (a token
    bucket); faster ends the session with a message. ``max_buffer``: bytes received but not yet
    read by the decoder; more ends the session (the server cannot keep up). ``max_message``: bytes
    of one WebSocket message. ``idle``: seconds without a message before the session is closed.
    ``max_seconds``: wall-clock seconds a session may last. ``queue``: windows waiting for a slow
    client; beyond it the oldest are dropped and the next message says how many.
    """

    max_sessions: int = 4
    max_rate: int = 1_000_000
    burst: float = 4.0
    max_buffer: int = 8_000_000
    max_message: int = 2_000_000
    idle: float = 20.0
    max_seconds: float = 3600.0
    queue: int = 16

    @classmethod
    def from_env(cls, **given: float | None) -> LiveLimits:
        """Each limit from ``given`` (not None), else ``MSA_EDGE_LIVE_<NAME>``, else the default;
        all checked (finite, > 0; counts whole)."""
        values: dict[str, float] = {}
        for f in fields(cls):
            raw: object = given.get(f.name)
            where = f.name.replace("_", "-")
            if raw is None:
                env = f"MSA_EDGE_LIVE_{f.name.upper()}"
                raw = os.environ.get(env)
                where = env
            if raw is None:
                continue
            values[f.name] = _positive(where, raw, whole=isinstance(f.default, int))
        unknown = set(given) - {f.name for f in fields(cls)}
        if unknown:
            raise LiveError(f"unknown live limit(s) {sorted(unknown)}: known {[f.name for f in fields(cls)]}")
        return cls(**values)  # type: ignore[arg-type]


def _positive(name: str, raw: object, *, whole: bool) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LiveError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0 or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise LiveError(f"{name} must be {kind} > 0, got {raw!r}")
    return int(value) if whole else value


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> str | None:
    """The token to require (argument, else ``MSA_EDGE_LIVE_TOKEN``); binding anywhere but the
    loopback without one is a :class:`LiveError`."""
    token = token if token is not None else os.environ.get("MSA_EDGE_LIVE_TOKEN")
    if token is not None and (len(token) < 8 or not token.isprintable() or " " in token):
        raise LiveError("the token must be at least 8 printable characters without spaces")
    if not is_loopback(host) and not token:
        raise LiveError(
            f"binding to {host} exposes the endpoint beyond this machine: give --token "
            "(or MSA_EDGE_LIVE_TOKEN) so clients must present it, or bind to 127.0.0.1"
        )
    return token
