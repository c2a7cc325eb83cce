"""OpenVINO, by either of its two routes, behind the session interface of :mod:`msa_runtime.engine.interface`.

- **native**: OpenVINO's own runtime (the ``openvino`` package). It reads the pack's ONNX files
  (``Core.compile_model``), runs on any CPU OpenVINO supports (Intel, AMD, ARM) and on Intel
  GPUs/NPUs, and keeps compiled models in a cache folder so the next process skips compiling.
- **plugin**: ONNX Runtime's OpenVINO execution provider plugin (``onnxruntime-ep-openvino``).
  It offers devices only on Intel hardware: on other CPUs it registers and lists nothing.

Both come with the ``openvino`` extra. A route is *usable* when it offers a device here
(:func:`route_status`), never merely because its package imports. Which route ``openvino``
means: :data:`ROUTE_ORDER`, the first usable one (``benchmarks/bench_engines.py`` measures both).

Compile cache (native route): argument -> ``MSA_EDGE_OPENVINO_CACHE`` -> ``$XDG_CACHE_HOME/msa-edge/
openvino`` (``~/.cache/...``); ``off`` disables it. A folder that cannot be written is a warning
and compiling without a cache; OpenVINO itself ignores blobs of another version or a corrupt blob
(it compiles again and rewrites it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from msa_runtime.engine.interface import PortInfo, RouteStatus, hidden_routes
from msa_runtime.errors import ProviderError

PLUGIN = "OpenVINOExecutionProvider"  # ONNX Runtime's name for the plugin route
NATIVE = "OpenVINORuntime"  # this runtime's name for OpenVINO's own runtime
#: Which route ``openvino`` takes when both offer the device: measured on Intel (AMX), where
#: both run (benchmarks/results/engines-vm.md).
ROUTE_ORDER = (NATIVE, PLUGIN)
ROUTE_NAMES = {NATIVE: "openvino-native", PLUGIN: "openvino-ep"}
HINT = "pip install 'msa-edge[openvino]'"
_TYPES = {
    "f32": "tensor(float)",
    "f16": "tensor(float16)",
    "bf16": "tensor(bfloat16)",
    "f64": "tensor(double)",
    "i64": "tensor(int64)",
    "i32": "tensor(int32)",
    "i8": "tensor(int8)",
    "u8": "tensor(uint8)",
    "boolean": "tensor(bool)",
}
_plugin_registered: list[str] = []
_warned_cache: set[str] = set()


# -- the plugin route (ONNX Runtime) ------------------------------------------------------------


def plugin_installed() -> bool:
    """Whether ONNX Runtime's OpenVINO plugin package is installed (not whether it offers a device)."""
    return importlib.util.find_spec("onnxruntime_ep_openvino") is not None


def register_plugin(ort: Any) -> None:
    """Load the plugin into ONNX Runtime once per process."""
    if _plugin_registered:
        return
    try:
        import onnxruntime_ep_openvino as plugin
    except ImportError as exc:
        raise ProviderError(f"the OpenVINO execution provider plugin is not installed: {HINT}") from exc
    if not hasattr(ort, "register_execution_provider_library"):
        raise ProviderError(
            f"onnxruntime {ort.__version__} cannot load execution provider "
            "plugins (needs 1.22 or newer): pip install -U onnxruntime"
        )
    library = plugin.get_library_path()
    try:
        ort.register_execution_provider_library(plugin.get_ep_name(), library)
    except Exception as exc:  # ORT raises its own Fail type; "already registered" is fine
        if "already registered" not in str(exc):
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ProviderError(
                f"the OpenVINO plugin failed to load ({first}); reinstall it: {HINT}"
            ) from exc
    _plugin_registered.append(library)


def plugin_devices(ort: Any) -> dict[str, Any]:
    """The OpenVINO devices the plugin offers through ONNX Runtime, by OpenVINO device name."""
    if "openvino-ep" in hidden_routes():
        return {}
    register_plugin(ort)
    out: dict[str, Any] = {}
    for d in ort.get_ep_devices():
        if d.ep_name == PLUGIN:
            out.setdefault(str(d.ep_metadata.get("ov_device", "CPU")).upper(), d)
    return out


def plugin_options(device: str, threads: int | None) -> dict[str, str]:
    """The plugin's options for ``threads`` on ``device``.

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


# -- the native route (OpenVINO's own runtime) --------------------------------------------------


def native_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


@lru_cache(maxsize=1)
def _core() -> Any:
    import openvino

    return openvino.Core()


def native_devices() -> tuple[str, ...]:
    """The devices OpenVINO's runtime offers here (``CPU``, ``GPU``, ``NPU``...); none when hidden."""
    if "openvino-native" in hidden_routes() or not native_installed():
        return ()
    try:
        return tuple(str(d).upper() for d in _core().available_devices)
    except Exception as exc:  # a broken install: ImportError, RuntimeError from the plugins
        raise ProviderError(
            f"OpenVINO's runtime is installed but fails to start ({_reason(exc)[:200]}); reinstall: {HINT}"
        ) from exc


def cache_dir(cache: str | os.PathLike[str] | None = None) -> Path | None:
    """The compile cache folder (argument -> ``MSA_EDGE_OPENVINO_CACHE`` -> the user cache), or
    None when it is off or cannot be written (then with a warning, once per folder)."""
    raw = str(cache) if cache is not None else os.environ.get("MSA_EDGE_OPENVINO_CACHE")
    if raw is not None and raw.strip().lower() in ("", "off", "0", "none"):
        return None
    if raw is None:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        raw = str(Path(base) / "msa-edge" / "openvino")
    folder = Path(raw).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if raw not in _warned_cache:
            _warned_cache.add(raw)
            warnings.warn(
                f"OpenVINO compile cache {folder} cannot be written ({exc.strerror or exc}): compiling "
                "without a cache; set MSA_EDGE_OPENVINO_CACHE to a writable folder, or to 'off'",
                RuntimeWarning,
                stacklevel=3,
            )
        return None
    return folder


def _reason(exc: Exception) -> str:
    """OpenVINO's message in one line: its last line says what failed (the first lines name
    source files)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    last = lines[-1].split(": ", 1)[-1] if lines and lines[-1].startswith("Exception from ") else ""
    return ((lines[-1] if lines and not last else last) or type(exc).__name__)[:300]


def _port(p: Any) -> PortInfo:
    # A tensor may carry several names (an input that feeds a Cast also carries the Cast's):
    # the ONNX name is its Parameter's, or its Result's without OpenVINO's "/sink_port_N".
    onnx_name = p.get_node().get_friendly_name().split("/sink_port_")[0]
    name = onnx_name if onnx_name in p.get_names() else p.get_any_name()
    shape = tuple(d.get_length() if d.is_static else None for d in p.get_partial_shape())
    kind = p.get_element_type().get_type_name()
    return PortInfo(name, _TYPES.get(kind, f"tensor({kind})"), shape)


class OpenVINOSession:
    """One ONNX file compiled by OpenVINO's runtime, with ONNX Runtime's session interface.

    ``threads`` sets ``INFERENCE_NUM_THREADS`` (None: OpenVINO's choice); fp32 files run at the
    device's default inference precision (bf16 where the CPU has it). Calls are serialised:
    one infer request per session.
    """

    def __init__(
        self,
        path: str | Path,
        device: str = "CPU",
        *,
        threads: int | None = None,
        cache: str | os.PathLike[str] | None = None,
    ) -> None:
        if device not in native_devices():
            raise ProviderError(
                f"OpenVINO device {device} is not there; OpenVINO offers "
                f"{', '.join(native_devices()) or 'none'} here"
            )
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads is not None and device == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        folder = cache_dir(cache)
        if folder is not None:
            config["CACHE_DIR"] = str(folder)
        try:
            self._compiled = _core().compile_model(str(path), device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ProviderError(
                f"OpenVINO cannot load {Path(path).name} on {device}: {_reason(exc)}"
            ) from exc
        self.device = device
        self.cache = folder
        self._inputs = [_port(p) for p in self._compiled.inputs]
        self._outputs = [_port(p) for p in self._compiled.outputs]
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()

    def get_inputs(self) -> list[PortInfo]:
        return list(self._inputs)

    def get_outputs(self) -> list[PortInfo]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [NATIVE if self.device == "CPU" else f"{NATIVE}:{self.device}"]

    def run(
        self, output_names: Sequence[str] | None, input_feed: Mapping[str, np.ndarray]
    ) -> list[np.ndarray]:
        names = list(output_names) if output_names else [p.name for p in self._outputs]
        known = {p.name for p in self._outputs}
        if any(n not in known for n in names):
            raise ProviderError(f"outputs {names} asked of a model that gives {sorted(known)}")
        wanted = {p.name for p in self._inputs}
        if set(input_feed) != wanted:  # an input left out would reuse the last call's tensor
            raise ProviderError(f"inputs {sorted(input_feed)} given to a model that takes {sorted(wanted)}")
        feeds = {k: np.ascontiguousarray(v) for k, v in input_feed.items()}
        with self._lock:
            try:
                self._request.infer(feeds)
            except Exception as exc:  # shape or type mismatch reported by OpenVINO
                raise ProviderError(f"OpenVINO failed to run the model: {_reason(exc)}") from exc
            return [np.array(self._request.get_tensor(n).data, copy=True) for n in names]


# -- which route -------------------------------------------------------------------------------


def route_status(ort: Any) -> list[RouteStatus]:
    """What discovery sees of each route, in :data:`ROUTE_ORDER`."""
    hidden = hidden_routes()
    out = []
    for route in ROUTE_ORDER:
        name = ROUTE_NAMES[route]
        installed = native_installed() if route == NATIVE else plugin_installed()
        package = "openvino" if route == NATIVE else "onnxruntime-ep-openvino"
        if not installed:
            out.append(RouteStatus(name, (), f"{package} not installed"))
            continue
        try:
            devices = native_devices() if route == NATIVE else tuple(sorted(plugin_devices(ort)))
        except ProviderError as exc:  # installed but broken: not usable, and said why
            out.append(RouteStatus(name, (), f"is broken: {exc}"))
            continue
        if devices:
            why = f"offers {', '.join(devices)}"
        elif name in hidden:
            why = "offers no device (hidden by MSA_EDGE_HIDE_DEVICES)"
        else:
            why = "installed but offers no device on this machine"
        out.append(RouteStatus(name, devices, why))
    return out


def pick_route(ort: Any, device: str = "CPU") -> str | None:
    """The provider name of the first route in :data:`ROUTE_ORDER` that offers ``device``."""
    for route, status in zip(ROUTE_ORDER, route_status(ort)):
        if device in status.devices:
            return route
    return None


def describe_routes(ort: Any) -> str:
    """One phrase per route: ``openvino-native offers CPU; openvino-ep not installed``."""
    return "; ".join(f"{s.route} {s.why}" for s in route_status(ort))


__all__ = [
    "NATIVE",
    "PLUGIN",
    "ROUTE_ORDER",
    "OpenVINOSession",
    "cache_dir",
    "describe_routes",
    "native_devices",
    "pick_route",
    "plugin_devices",
    "route_status",
]
