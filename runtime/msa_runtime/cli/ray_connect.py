"""Joining or starting Ray for ``--ray`` (:mod:`msa_runtime.cli.ray`), bounded in time.

``ray.init(address=HOST:PORT)`` retries an unreachable cluster for minutes inside Ray's C++ core,
where no Python signal handler runs. So the address is checked first (:func:`parse_address`:
``local``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``, the host a name or an address, the port
1-65535), the port must accept a TCP connection within the time allowed, and ``ray.init`` runs on
a helper thread that the caller waits for at most that long (:func:`connect`). The time is
``--ray-timeout`` / ``MSA_EDGE_RAY_TIMEOUT`` (:func:`ray_timeout`, default
:data:`DEFAULT_TIMEOUT` seconds).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import socket
import threading
import time
from typing import Any

from msa_runtime.errors import ClusterError, InputError

DEFAULT_TIMEOUT = 30.0
"""Seconds allowed to reach and join a Ray cluster."""
MAX_TIMEOUT = 3600.0
LOCAL = ("", "local")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_EXAMPLE = "local, auto or HOST:PORT (e.g. 10.0.0.5:6379)"


def ray_timeout(value: Any = None, name: str = "--ray-timeout") -> float:
    """Seconds to wait for a cluster: ``value``, else ``MSA_EDGE_RAY_TIMEOUT``, else
    :data:`DEFAULT_TIMEOUT`; a finite number in (0, :data:`MAX_TIMEOUT`]."""
    if value is None:
        env = os.environ.get("MSA_EDGE_RAY_TIMEOUT", "").strip()
        if not env:
            return DEFAULT_TIMEOUT
        value, name = env, "MSA_EDGE_RAY_TIMEOUT"
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be seconds (e.g. {DEFAULT_TIMEOUT:g}), got {value!r}") from None
    if not (math.isfinite(x) and 0 < x <= MAX_TIMEOUT):
        raise InputError(f"{name} must be seconds in (0, {MAX_TIMEOUT:g}], got {value!r}")
    return x


def parse_address(value: str | None, name: str = "--ray") -> tuple[str, str | None, int | None]:
    """``(address for ray.init, host, port)``: ``("local", None, None)``, ``("auto", None, None)``
    or a cluster's address with its host and port. Anything else is an :class:`InputError`
    naming what was given."""
    text = (value or "").strip()
    if text.lower() in LOCAL:
        return "local", None, None
    if text.lower() == "auto":
        return "auto", None, None
    scheme, _, rest = text.rpartition("://")
    if scheme not in ("", "ray"):
        raise InputError(f"{name} {text!r}: only ray:// addresses are Ray's; give {_EXAMPLE}")
    host, colon, port_text = rest.rpartition(":")
    if not colon or not host:
        raise InputError(f"{name} {text!r} has no port: give {_EXAMPLE} (Ray's default port is 6379)")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InputError(f"{name} {text!r}: port {port_text!r} is not a number in 1-65535; give {_EXAMPLE}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    _check_host(name, text, host)
    return text, host, int(port_text)


def _check_host(name: str, text: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    parts = host.rstrip(".").split(".")
    if all(p.isdigit() for p in parts):  # looks like IPv4 but is not (999.1.1.1)
        raise InputError(
            f"{name} {text!r}: {host} is not an IPv4 address (four numbers 0-255); give {_EXAMPLE}"
        )
    if len(host) > 253 or not all(_LABEL.match(p) for p in parts):
        raise InputError(f"{name} {text!r}: {host!r} is not a host name or IP address; give {_EXAMPLE}")


def reachable(host: str, port: int, timeout: float) -> None:
    """A TCP connection to ``host:port`` within ``timeout`` seconds, or a :class:`ClusterError`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        why = (
            "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc) or type(exc).__name__)
        )
        raise ClusterError(
            f"cannot reach Ray at {host}:{port} within {timeout:g} s ({why}): start the cluster "
            "(ray start --head) or check the address; --ray-timeout sets the wait"
        ) from exc


def connect(ray: Any, address: str | None, num_cpus: int | None, timeout: float | None = None) -> bool:
    """Join ``address`` or start a local node on 127.0.0.1; True when this call started Ray.
    Joining a cluster takes at most ``timeout`` seconds (default :func:`ray_timeout`)."""
    if ray.is_initialized():
        return False
    target, host, port = parse_address(address, "address")
    wait = ray_timeout() if timeout is None else ray_timeout(timeout, "timeout")
    common: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if target == "local":
        _loopback(ray)
        _init(
            ray,
            "a local Ray node",
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **common,
        )
    else:
        t0 = time.monotonic()
        if host is not None and port is not None:
            reachable(host, port, wait)
        _init_within(ray, target, max(1.0, wait - (time.monotonic() - t0)), common)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # progress is ours: one line per record
    return True


def _init(ray: Any, where: str, **kwargs: Any) -> None:
    from msa_runtime.cli import signals

    try:
        ray.init(**kwargs)
    except SystemExit as exc:  # Ray's own SIGTERM handler, installed by ray.init, exits so
        raise signals.Stopped() from exc
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ClusterError(f"cannot start or join {where}: {first}") from exc
    finally:
        signals.reinstall()


def _init_within(ray: Any, address: str, wait: float, common: dict[str, Any]) -> None:
    """``ray.init(address)`` on a helper thread, waited for at most ``wait`` seconds: Ray's
    retries run in C++ and cannot be interrupted, the wait (and a SIGTERM during it) can."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            ray.init(address=address, **common)
            outcome.append(None)
        except BaseException as exc:  # handed to the waiting thread, which raises it
            outcome.append(exc)

    logging.getLogger("ray._private.worker").setLevel(logging.ERROR)  # "SIGTERM handler not set"
    helper = threading.Thread(target=run, name="msa-run-ray-init", daemon=True)
    helper.start()
    helper.join(wait)
    if not outcome:
        raise ClusterError(
            f"Ray at {address} did not answer as a Ray cluster within {wait:.0f} s: check that it is "
            "Ray's GCS port (ray status) and that versions match; --ray-timeout sets the wait"
        )
    if outcome[0] is not None:
        exc = outcome[0]
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ClusterError(f"cannot join Ray at {address}: {first}") from exc


def _loopback(ray: Any) -> None:
    """Keep a local node on 127.0.0.1 even when ``ray`` was imported before
    :func:`msa_runtime.cli.ray.import_ray` could set ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    (Ray reads it once, at import)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # for the processes Ray starts
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
        constants.ENABLE_RAY_CLUSTER = False
