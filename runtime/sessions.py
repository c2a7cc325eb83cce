"""The one place where ONNX Runtime sessions are built.

Providers are given as ``"auto"``, ``"cpu"``, ``"cuda"``, ``"openvino"`` (optionally
``"openvino:DEVICE"``, e.g. ``openvino:GPU``; default CPU) or a list of ORT provider names. They are
checked against what is installed; an explicit provider that is missing is an error that lists
what is available (and, for OpenVINO, names the extra), and a session that silently fell back to
CPU is reported with a warning. ``auto`` takes CUDA when onnxruntime-gpu lists it, else OpenVINO
when its execution provider plugin (``onnxruntime-ep-openvino``, the ``openvino`` extra) is
installed, else the CPU execution provider; :func:`describe_auto` says why.

OpenVINO runs through ONNX Runtime's plugin execution provider: the plugin library is registered
once per process (``onnxruntime.register_execution_provider_library``) and selected per session
with ``SessionOptions.add_provider_for_devices``; nodes it does not take run on the CPU EP.
Thread count flows argument -> ``MSA_EDGE_THREADS`` -> ONNX Runtime's default, and is passed to
OpenVINO too (:func:`openvino_options`). ``providers=None`` reads ``MSA_EDGE_PROVIDERS``, else ``auto``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from msa_runtime.errors import InputError, ProviderError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
ALIASES = {"cpu": CPU, "cuda": CUDA, "openvino": OPENVINO}
SHORT = {CPU: "cpu", CUDA: "cuda", OPENVINO: "openvino"}
OPENVINO_HINT = "pip install 'msa-edge[openvino]' (the onnxruntime-ep-openvino plugin)"
_registered: dict[str, str] = {}


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


def openvino_installed() -> bool:
    """Whether the OpenVINO execution provider plugin is installed (not yet loaded)."""
    return importlib.util.find_spec("onnxruntime_ep_openvino") is not None


def register_openvino() -> str:
    """Load the OpenVINO plugin into ONNX Runtime once per process; its provider name."""
    if OPENVINO in _registered:
        return OPENVINO
    ort = import_ort()
    try:
        import onnxruntime_ep_openvino as plugin
    except ImportError as exc:
        raise ProviderError(f"the OpenVINO execution provider is not installed: {OPENVINO_HINT}") from exc
    if not hasattr(ort, "register_execution_provider_library"):
        raise ProviderError(
            f"onnxruntime {ort.__version__} cannot load execution provider "
            "plugins (needs 1.22 or newer): pip install -U onnxruntime"
        )
    name, library = plugin.get_ep_name(), plugin.get_library_path()
    try:
        ort.register_execution_provider_library(name, library)
    except Exception as exc:  # ORT raises its own Fail type; "already registered" is fine
        if "already registered" not in str(exc):
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ProviderError(
                f"the OpenVINO plugin failed to load ({first}); reinstall it: {OPENVINO_HINT}"
            ) from exc
    _registered[OPENVINO] = library
    return OPENVINO


def openvino_devices() -> dict[str, Any]:
    """The OpenVINO devices ONNX Runtime offers, by OpenVINO device name (``CPU``, ``GPU``...)."""
    ort = import_ort()
    register_openvino()
    out: dict[str, Any] = {}
    for d in ort.get_ep_devices():
        if d.ep_name == OPENVINO:
            out.setdefault(str(d.ep_metadata.get("ov_device", "CPU")).upper(), d)
    return out


def split_device(name: str) -> tuple[str, str]:
    """``"OpenVINOExecutionProvider:GPU"`` -> (``OpenVINOExecutionProvider``, ``GPU``)."""
    base, _, device = name.partition(":")
    return base, device.upper() or "CPU"


def _available() -> list[str]:
    """ORT's providers; OpenVINO when its plugin is installed (ORT lists it, and its ``.AUTO``
    twin, only once the plugin is registered in this process)."""
    available = [p for p in import_ort().get_available_providers() if not p.startswith(OPENVINO)]
    if openvino_installed():
        available.append(OPENVINO)
    return available


def describe_auto(providers: Sequence[str]) -> str:
    """Why ``auto`` resolved to ``providers`` (one line)."""
    first = split_device(providers[0])[0]
    if first == CUDA:
        return "auto picked CUDA (onnxruntime-gpu lists it)"
    if first == OPENVINO:
        return "auto picked OpenVINO (no CUDA; the onnxruntime-ep-openvino plugin is installed)"
    return (
        "auto picked the CPU execution provider (no CUDA; no OpenVINO plugin: "
        "pip install 'msa-edge[openvino]' adds it)"
    )


def resolve_providers(providers: str | Sequence[str] | None = "auto") -> list[str]:
    """Turn ``auto``/``cpu``/``cuda``/``openvino[:DEVICE]``/a list into provider names that are
    available (CPU is always appended as the fallback for unsupported nodes)."""
    if providers is None:
        providers = os.environ.get("MSA_EDGE_PROVIDERS") or "auto"
    available = _available()
    if isinstance(providers, str):
        if providers.strip().lower() == "auto":
            names = [p for p in (CUDA, OPENVINO, CPU) if p in available]
            if CUDA in names:
                return [CUDA, CPU]
            if OPENVINO in names:
                try:
                    register_openvino()
                except ProviderError as exc:
                    warnings.warn(
                        f"{exc}; auto uses the CPU execution provider", RuntimeWarning, stacklevel=2
                    )
                    names.remove(OPENVINO)
            return names
        wanted = [p.strip() for p in providers.split(",") if p.strip()]
    else:
        wanted = list(providers)
    names = []
    for p in wanted:
        base, _, device = p.partition(":")
        full = ALIASES.get(base.lower(), base)
        names.append(f"{full}:{device.upper()}" if device and device.upper() != "CPU" else full)
    if any(split_device(n)[0] == OPENVINO for n in names) and not openvino_installed():
        raise ProviderError(f"execution provider OpenVINO is not available: {OPENVINO_HINT}")
    missing = [p for p in names if split_device(p)[0] not in available]
    if missing or not names:
        hint = ""
        if CUDA in missing:
            hint = " (for CUDA: pip uninstall onnxruntime && pip install 'msa-edge[gpu]')"
        raise ProviderError(
            f"execution provider {', '.join(missing) or '(none)'} is not "
            f"available; available: {', '.join(available)}{hint}"
        )
    for n in names:
        base, device = split_device(n)
        if base == OPENVINO:
            devices = openvino_devices()
            if device not in devices:
                raise ProviderError(
                    f"OpenVINO device {device} is not there; this machine offers "
                    f"{', '.join(sorted(devices)) or 'none'} (e.g. --providers "
                    "openvino for its CPU)"
                )
    if CPU not in names:
        names.append(CPU)
    return names


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


def openvino_options(device: str, threads: int | None) -> dict[str, str]:
    """The OpenVINO plugin's options for ``threads`` on ``device``.

    The plugin takes ``num_of_threads`` but its CPU device kept using every core (measured with
    1 thread asked: 2 cores busy); OpenVINO's own ``INFERENCE_NUM_THREADS``, given through
    ``load_config``, is honoured.
    """
    if threads is None:
        return {}
    options = {"num_of_threads": str(threads)}
    if device.upper() == "CPU":
        options["load_config"] = json.dumps({"CPU": {"INFERENCE_NUM_THREADS": str(threads)}})
    return options


def make_session(
    path: str | Path | bytes,
    providers: str | Sequence[str] | None = "auto",
    *,
    threads: int | None = None,
    spinning: bool = False,
) -> Any:
    """An ``InferenceSession`` for ``path`` (a file, or the serialized model as bytes).

    ``spinning=False`` stops idle worker threads from busy-waiting: with several sessions taking
    turns on few cores, a spinning session steals a core from the next one.
    """
    ort = import_ort()
    names = resolve_providers(providers)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    n = default_threads(threads)
    if n is not None:
        if n < 1:
            raise InputError(f"threads must be at least 1, got {n}")
        opts.intra_op_num_threads = n
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.log_severity_level = 3
    base, device = split_device(names[0])
    label = "model" if isinstance(path, bytes) else Path(path).name
    model = path if isinstance(path, bytes) else str(path)
    try:
        if base == OPENVINO:
            opts.add_provider_for_devices([openvino_devices()[device]], openvino_options(device, n))
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
