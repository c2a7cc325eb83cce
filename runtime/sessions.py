"""The one place where ONNX Runtime sessions are built.

Providers are given as ``"auto"``, ``"cpu"``, ``"cuda"`` or a list of ORT provider names. They are
checked against ``onnxruntime.get_available_providers()``; an explicit provider that is missing is
an error that lists what is available, and a session that silently fell back to CPU is reported
with a warning. Thread count flows argument -> ``MSA_EDGE_THREADS`` -> ONNX Runtime's default.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from msa_runtime.errors import InputError, ProviderError

ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def import_ort() -> Any:
    """``onnxruntime``, or a clear error saying which extra installs it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ProviderError(
            "ONNX Runtime is not installed: pip install 'msa-edge[cpu]' (or 'msa-edge[gpu]' for "
            "CUDA; never both, the two packages overwrite each other)") from exc
    return onnxruntime


def resolve_providers(providers: str | Sequence[str] = "auto") -> list[str]:
    """Turn ``auto``/``cpu``/``cuda``/a list into ORT provider names that are available."""
    ort = import_ort()
    available = list(ort.get_available_providers())
    if isinstance(providers, str):
        if providers == "auto":
            return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        wanted = [p.strip() for p in providers.split(",") if p.strip()]
    else:
        wanted = list(providers)
    names = [ALIASES.get(p.lower(), p) for p in wanted]
    missing = [p for p in names if p not in available]
    if missing or not names:
        hint = ""
        if "CUDAExecutionProvider" in missing:
            hint = " (for CUDA: pip uninstall onnxruntime && pip install 'msa-edge[gpu]')"
        raise ProviderError(f"execution provider {', '.join(missing) or '(none)'} is not "
                            f"available; available: {', '.join(available)}{hint}")
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    return names


def default_threads(threads: int | None = None) -> int | None:
    if threads is not None:
        return threads
    env = os.environ.get("MSA_EDGE_THREADS")
    if env:
        try:
            return int(env)
        except ValueError:
            raise InputError(f"MSA_EDGE_THREADS must be an integer, got {env!r}: "
                             "set it to a thread count such as 2, or unset it") from None
    return None


def make_session(path: str | Path, providers: str | Sequence[str] = "auto", *,
                 threads: int | None = None, spinning: bool = False) -> Any:
    """An ``InferenceSession`` for ``path``.

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
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=names)
    except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
        raise ProviderError(f"ONNX Runtime cannot load {Path(path).name}: "
                            f"{str(exc).splitlines()[0][:300]}") from exc
    used = session.get_providers()
    if names[0] != "CPUExecutionProvider" and names[0] not in used:
        warnings.warn(f"{names[0]} was requested for {Path(path).name} but ONNX Runtime fell back "
                      f"to {', '.join(used)} (check the CUDA and cuDNN libraries)", RuntimeWarning,
                      stacklevel=2)
    return session
