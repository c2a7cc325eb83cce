"""The typed session interface every engine satisfies, and which engines this machine may use.

A *session* runs one ONNX file of a pack. ONNX Runtime's ``InferenceSession`` already has the
shape the runtime relies on; :class:`msa_runtime.engine.openvino.OpenVINOSession` (OpenVINO's own
runtime) and the Triton proxies of :mod:`msa_runtime.serve` take the same shape, so the scoring
code never asks which engine it holds.

*Installed* is not *usable*: an engine's package may import and still offer no device here (ONNX
Runtime's OpenVINO plugin on a non-Intel CPU). Discovery therefore asks each engine for its
devices, and ``MSA_EDGE_HIDE_DEVICES`` lets tests and CI make an installed engine offer none on any
machine: a comma-separated list of :data:`HIDEABLE` names (``openvino`` hides both OpenVINO
routes). An unknown name is an error that lists the valid ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from msa_runtime.errors import InputError

#: Engine routes whose devices ``MSA_EDGE_HIDE_DEVICES`` can hide: ONNX Runtime's OpenVINO
#: plugin, OpenVINO's own runtime, or both.
HIDEABLE = ("openvino-ep", "openvino-native", "openvino")


class TensorInfo(Protocol):
    """One input or output of a session, as ONNX Runtime's ``NodeArg`` describes it."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...  # "tensor(float)", "tensor(int64)", ...

    @property
    def shape(self) -> Sequence[int | str | None]: ...  # a str or None for a dimension left open


@runtime_checkable
class Session(Protocol):
    """What runs one ONNX file: ONNX Runtime's ``InferenceSession`` satisfies it as it is."""

    def get_inputs(self) -> Sequence[TensorInfo]: ...

    def get_outputs(self) -> Sequence[TensorInfo]: ...

    def get_providers(self) -> list[str]:
        """The engine (and device) that runs the file, first; fallbacks after it."""
        ...

    def run(
        self, output_names: Sequence[str] | None, input_feed: Mapping[str, np.ndarray]
    ) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class PortInfo:
    """A :class:`TensorInfo` for engines that do not bring their own."""

    name: str
    type: str
    shape: tuple[int | str | None, ...]


def hidden_routes(env: str | None = None) -> frozenset[str]:
    """The routes whose devices discovery must hide (``MSA_EDGE_HIDE_DEVICES``, or ``env``)."""
    raw = os.environ.get("MSA_EDGE_HIDE_DEVICES", "") if env is None else env
    names = {n.strip().lower() for n in raw.split(",") if n.strip()}
    unknown = sorted(names - set(HIDEABLE))
    if unknown:
        raise InputError(
            f"MSA_EDGE_HIDE_DEVICES names {', '.join(unknown)}; valid: {', '.join(HIDEABLE)} "
            "(comma-separated), or unset it"
        )
    if "openvino" in names:
        names |= {"openvino-ep", "openvino-native"}
    return frozenset(names)


@dataclass(frozen=True)
class RouteStatus:
    """What discovery saw of one engine route: its devices here, or why it offers none."""

    route: str  # "openvino-native", "openvino-ep"
    devices: tuple[str, ...]
    why: str  # one phrase: "offers CPU", "not installed: pip install ...", "offers no device"

    @property
    def usable(self) -> bool:
        return bool(self.devices)


__all__ = ["HIDEABLE", "PortInfo", "RouteStatus", "Session", "TensorInfo", "hidden_routes"]
