"""Engines: ONNX Runtime and OpenVINO sessions behind one typed interface, and which file of a
pack runs where.

- :mod:`~msa_runtime.engine.interface`: :class:`Session`, the interface every engine satisfies,
  and which engines this machine may use (``MSA_EDGE_HIDE_DEVICES``).
- :mod:`~msa_runtime.engine.sessions`: :func:`make_session`, the one place sessions are built;
  provider names and aliases.
- :mod:`~msa_runtime.engine.openvino`: OpenVINO by its own runtime or ONNX Runtime's plugin.
- :mod:`~msa_runtime.loading.tuning`: the per-machine choice of file and provider per encoder.

Imports :mod:`msa_runtime.pack` (the files' contract) and nothing above it.
"""

from msa_runtime.engine.interface import Session, TensorInfo
from msa_runtime.engine.sessions import make_session, resolve_providers

__all__ = [
    "Session",
    "TensorInfo",
    "make_session",
    "resolve_providers",
]
