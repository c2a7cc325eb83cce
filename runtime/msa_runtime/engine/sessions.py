"""The one place where sessions are built, whatever the engine (:mod:`msa_runtime.engine.interface`).

Providers are given as ``"auto"``, ``"cpu"``, ``"cuda"``, ``"openvino"`` (optionally
``"openvino:DEVICE"``, e.g. ``openvino:GPU``; default CPU), one OpenVINO route by name
(``"openvino-native"``: OpenVINO's own runtime; ``"openvino-ep"``: ONNX Runtime's plugin), or a
list of ONNX Runtime provider names. They are checked against what this machine can *use*: an
explicit provider that is missing or offers no device is an error that lists what is available
(and names the extra); a session that silently fell back to CPU is reported with a warning.
``auto`` takes CUDA when onnxruntime-gpu lists it, else OpenVINO when one of its routes offers the
CPU (:func:`msa_runtime.engine.openvino.pick_route`), else the CPU execution provider;
:func:`describe_auto` says what it saw.

Thread count flows argument -> ``MSA_EDGE_THREADS`` -> the engine's default, and is passed to
OpenVINO too. ``providers=None`` reads ``MSA_EDGE_PROVIDERS``, else ``auto``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from msa_runtime import checks
from msa_runtime.engine.interface import Session
from msa_runtime.engine.openvino import HINT as OPENVINO_HINT
from msa_runtime.engine.openvino import (
    NATIVE,
    PLUGIN,
    OpenVINOSession,
    describe_routes,
    pick_route,
    plugin_devices,
    plugin_options,
    route_status,
)
from msa_runtime.errors import InputError, ProviderError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
OPENVINO_ROUTES = (NATIVE, PLUGIN)
ALIASES = {"cpu": CPU, "cuda": CUDA, "openvino-ep": PLUGIN, "openvino-native": NATIVE}
SHORT = {CPU: "cpu", CUDA: "cuda", PLUGIN: "openvino", NATIVE: "openvino"}


def import_ort() -> Any:
    """``onnxruntime``, or a clear error saying which extra installs it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ProviderError(
            "ONNX Runtime is not installed: pip install 'msa-edge[cpu]' (or 'msa-edge[gpu]' for "
            "CUDA; never both, the two packages overwrite each other)"
        ) from exc
    return onnxruntime


def split_device(name: str) -> tuple[str, str]:
    """``"OpenVINOExecutionProvider:GPU"`` -> (``OpenVINOExecutionProvider``, ``GPU``)."""
    base, _, device = name.partition(":")
    return base, device.upper() or "CPU"


def _available(ort: Any) -> list[str]:
    """ONNX Runtime's providers, then the OpenVINO routes that offer a device here."""
    listed = [p for p in ort.get_available_providers() if not p.startswith(PLUGIN)]
    return listed + [r for r, s in zip(OPENVINO_ROUTES, route_status(ort)) if s.usable]


def describe_auto(providers: Sequence[str]) -> str:
    """What ``auto`` saw and why it resolved to ``providers`` (one line)."""
    first = split_device(providers[0])[0]
    if first == CUDA:
        return "auto picked CUDA (onnxruntime-gpu lists it)"
    seen = describe_routes(import_ort())
    if first == NATIVE:
        return f"auto picked OpenVINO's runtime (no CUDA; {seen})"
    if first == PLUGIN:
        return f"auto picked OpenVINO through ONNX Runtime's plugin (no CUDA; {seen})"
    return f"auto picked the CPU execution provider (no CUDA; OpenVINO: {seen}; {OPENVINO_HINT} adds it)"


def _name(spec: str, ort: Any) -> str:
    """One provider spec (``openvino:GPU``, ``cpu``, an ORT name) -> its full name with device."""
    base, _, device = spec.strip().partition(":")
    device = device.upper()
    if base.lower() == "openvino":
        full = pick_route(ort, device or "CPU") or NATIVE
    else:
        full = ALIASES.get(base.lower(), base)
    return f"{full}:{device}" if device and device != "CPU" else full


def _check_openvino_device(name: str, ort: Any) -> None:
    base, device = split_device(name)
    route = next(s for r, s in zip(OPENVINO_ROUTES, route_status(ort)) if r == base)
    if device in route.devices:
        return
    if not route.usable:
        install = f"{OPENVINO_HINT} installs both routes; " if "not installed" in route.why else ""
        raise ProviderError(
            f"OpenVINO ({route.route}) is not usable here: {route.why}; {install}--providers cpu "
            f"always works (OpenVINO here: {describe_routes(ort)})"
        )
    raise ProviderError(
        f"OpenVINO device {device} is not there; {route.route} offers {', '.join(route.devices)} "
        "(e.g. --providers openvino for its CPU)"
    )


def resolve_providers(providers: str | Sequence[str] | None = "auto") -> list[str]:
    """Turn ``auto``/``cpu``/``cuda``/``openvino[:DEVICE]``/a list into provider names that are
    usable here (CPU is always appended as the fallback for unsupported nodes)."""
    name = "providers"
    if providers is None:
        providers, name = os.environ.get("MSA_EDGE_PROVIDERS") or "auto", "MSA_EDGE_PROVIDERS"
    providers = checks.providers(name, providers) or "auto"  # types and emptiness, named
    ort = import_ort()
    if isinstance(providers, str) and providers.strip().lower() == "auto":
        if CUDA in ort.get_available_providers():
            return [CUDA, CPU]
        route = pick_route(ort, "CPU")
        return [route, CPU] if route is not None else [CPU]
    wanted = providers.split(",") if isinstance(providers, str) else list(providers)
    names = [_name(p, ort) for p in wanted if p.strip()]
    if not names:
        raise ProviderError(f"no execution provider given; available: {', '.join(_available(ort))}")
    listed = ort.get_available_providers()
    for n in names:
        base = split_device(n)[0]
        if base in OPENVINO_ROUTES:
            _check_openvino_device(n, ort)
        elif base not in listed:
            hint = (
                " (for CUDA: pip uninstall onnxruntime && pip install 'msa-edge[gpu]')"
                if base == CUDA
                else ""
            )
            raise ProviderError(
                f"execution provider {base} is not available; available: {', '.join(_available(ort))}{hint}"
            )
    if CPU not in names:
        names.append(CPU)
    return names


def engines_to_tune(providers: str | Sequence[str] | None = "auto") -> list[str]:
    """The providers ``--tune`` times: for ``auto`` every usable engine (CUDA, the OpenVINO route
    that offers the CPU, the CPU EP), else those of ``providers``."""
    if providers is None:
        providers = os.environ.get("MSA_EDGE_PROVIDERS") or "auto"
    if not (isinstance(providers, str) and providers.strip().lower() == "auto"):
        return resolve_providers(providers)
    ort = import_ort()
    route = pick_route(ort, "CPU")
    names = [CUDA] if CUDA in ort.get_available_providers() else []
    return names + ([route] if route else []) + [CPU]


def default_threads(threads: int | None = None) -> int | None:
    """Threads per session: ``threads``, else ``MSA_EDGE_THREADS``, else None (the provider's
    choice); checked and capped at the CPU count with a warning (:func:`msa_runtime.limits.bound_threads`)."""
    from msa_runtime.limits import bound_threads

    if threads is not None:
        return bound_threads(threads)
    env = os.environ.get("MSA_EDGE_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise InputError(
                f"MSA_EDGE_THREADS must be an integer, got {env!r}: "
                "set it to a thread count such as 2, or unset it"
            ) from None
        return bound_threads(n, "MSA_EDGE_THREADS")
    return None


def make_session(
    path: str | Path | bytes,
    providers: str | Sequence[str] | None = "auto",
    *,
    threads: int | None = None,
    spinning: bool = False,
    cache: str | os.PathLike[str] | None = None,
) -> Session:
    """A session for ``path`` (a file, or the serialized model as bytes: ONNX Runtime only):
    ONNX Runtime's ``InferenceSession``, or :class:`~msa_runtime.engine.openvino.OpenVINOSession`
    for OpenVINO's own runtime (``cache``: its compile cache folder, see
    :func:`~msa_runtime.engine.openvino.cache_dir`).

    ``spinning=False`` stops idle worker threads from busy-waiting: with several sessions taking
    turns on few cores, a spinning session steals a core from the next one.
    """
    ort = import_ort()
    names = resolve_providers(providers)
    n = default_threads(threads)
    if n is not None and n < 1:
        raise InputError(f"threads must be at least 1, got {n}")
    base, device = split_device(names[0])
    label = "model" if isinstance(path, bytes) else Path(path).name
    if base == NATIVE:
        if isinstance(path, bytes):
            raise ProviderError("OpenVINO's runtime reads pack files from disk: give a path, not bytes")
        return OpenVINOSession(path, device, threads=n, cache=cache)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if n is not None:
        opts.intra_op_num_threads = n
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.log_severity_level = 3
    model = path if isinstance(path, bytes) else str(path)
    try:
        if base == PLUGIN:
            opts.add_provider_for_devices([plugin_devices(ort)[device]], plugin_options(device, n))
            session = ort.InferenceSession(model, sess_options=opts)
        else:
            session = ort.InferenceSession(model, sess_options=opts, providers=names)
    except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
        raise ProviderError(
            f"ONNX Runtime cannot load {label} with {SHORT.get(base, base)}: {str(exc).splitlines()[0][:300]}"
        ) from exc
    used = session.get_providers()
    if base != CPU and base not in used:
        warnings.warn(
            f"{base} was requested for {label} but ONNX Runtime fell back "
            f"to {', '.join(used)} (check the CUDA and cuDNN libraries)",
            RuntimeWarning,
            stacklevel=2,
        )
    return session
