"""msa_runtime.serve: packs on Triton Inference Server (extra ``msa-edge[serve]`` to run one).

- :func:`write_python_repository` (form b) and :func:`write_onnx_repository` (form a) write a
  model repository for a pack (``msa-triton``); :func:`parse_config` reads a ``config.pbtxt``
  with Triton's own schema.
- :class:`TritonServer` runs the PyPI Triton (``nvidia-pytriton``) on a repository (``msa-serve``).
- :class:`ClipScorer` is what the python-backend model does per request.

Importing this package needs neither tritonclient nor nvidia-pytriton; starting a server or
parsing a config says which extra is missing.
"""

from msa_runtime.serve.repository import parse_config, write_onnx_repository, write_python_repository
from msa_runtime.serve.scorer import ClipScorer, TritonSession
from msa_runtime.serve.server import ServeError, TritonServer

__all__ = [
    "ClipScorer",
    "ServeError",
    "TritonServer",
    "TritonSession",
    "parse_config",
    "write_onnx_repository",
    "write_python_repository",
]
