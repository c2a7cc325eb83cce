"""The ``torch_best`` contender: the pack's cut encoders in PyTorch at its fastest CPU settings.

A careful user who stays in PyTorch would not run the encoders eager in fp32: they would try
bf16 autocast (AMX / AVX-512 BF16 where the CPU has it), ``torch.ao`` dynamic int8 linear layers
and ``torch.compile`` (inductor with weight freezing), and keep what is fastest. This contender
does exactly that, per encoder, on the benchmark clip's own inputs: each setting is built, run
once (the warm-up; ``torch.compile`` compiles here) and timed; its output must keep a mean
cosine of at least the pack gate's 0.999 to the fp32 eager output (the same bar the pack's int8
files pass), and the fastest setting that does is kept. A setting that fails to build or run is
recorded with its error, never silently dropped. (WavLM's attention projections stay fp32
under int8: its attention reads their weights directly, see :func:`quantize_linears`.)
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from e2e.common import THREADS

#: Every setting, in the order tried: (name, int8 linears, bf16 autocast, torch.compile).
SETTINGS: dict[str, tuple[bool, bool, bool]] = {
    "fp32": (False, False, False),
    "bf16-autocast": (False, True, False),
    "int8-dynamic": (True, False, False),
    "compile": (False, False, True),
    "compile+bf16-autocast": (False, True, True),
    "int8-dynamic+compile": (True, False, True),
}
#: Without ``torch.compile`` (the smoke test: inductor takes minutes to compile on 2 cores).
EAGER_SETTINGS = tuple(s for s, (_, _, compiled) in SETTINGS.items() if not compiled)
MIN_MEAN_COSINE = 0.999  # msa_export.gate.checks.MIN_COSINE: the pack's own bar
SEARCH_REPEAT = 2  # timed calls per setting in the search (after its warm-up call), at most


def bf16_supported() -> bool:
    """Whether this CPU runs bf16 matmuls natively (oneDNN: AVX-512 BF16 or AMX)."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class TorchBestPipeline:
    """The cut encoders (as ``TorchPipeline(cut=True)``), each at the setting that ran fastest
    on ``inputs`` here. ``settings``: the names of :data:`SETTINGS` to try; ``repeat``: timed
    runs per setting (at most :data:`SEARCH_REPEAT`). ``report`` holds every setting's figures
    per encoder, ``chosen`` the winners."""

    def __init__(
        self,
        preset: Any,
        inputs: dict[str, tuple[np.ndarray, ...]],
        settings: tuple[str, ...],
        repeat: int,
        log: Callable[[str], None] = lambda _m: None,
    ) -> None:
        import torch

        from e2e.pipelines import TorchPipeline

        torch.set_num_threads(THREADS)
        self.torch = torch
        base = TorchPipeline(preset, cut=True)
        self.head, self.head_names = base.head, base.head_names
        self.bf16_native = bf16_supported()
        self.report: dict[str, dict[str, Any]] = {}
        self.chosen: dict[str, str] = {}
        self.runners: dict[str, Callable[[tuple[Any, ...]], np.ndarray]] = {}
        unknown = [s for s in settings if s not in SETTINGS]
        if unknown:
            raise ValueError(f"unknown torch settings {unknown}; known: {', '.join(SETTINGS)}")
        self.models = base.models  # the cut fp32 models, for :meth:`build`
        for mod, model in base.models.items():
            tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs[mod])
            self._choose(mod, model.eval(), tensors, settings, min(repeat, SEARCH_REPEAT), log)
        del base

    def _choose(
        self,
        mod: str,
        model: Any,
        tensors: tuple[Any, ...],
        settings: tuple[str, ...],
        repeat: int,
        log: Callable[[str], None],
    ) -> None:
        """Time every setting on this encoder; keep the fastest that passes the cosine bar."""
        rows: dict[str, Any] = {}
        reference: np.ndarray | None = None
        best: tuple[float, str, Callable[[tuple[Any, ...]], np.ndarray]] | None = None
        for name in ("fp32",) + tuple(s for s in settings if s != "fp32"):
            try:
                runner, build_s = self._build(model, name)
                row, out = _time_runner(runner, tensors, repeat)
            except Exception as exc:  # recorded in the report: a setting PyTorch cannot run here
                rows[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
                log(f"    {mod} {name}: failed ({rows[name]['error']})")
                continue
            reference = out if reference is None else reference
            row["build_s"] = round(build_s, 2)
            row["mean_cosine_to_fp32"] = _mean_cosine(out, reference)
            row["passes"] = row["mean_cosine_to_fp32"] >= MIN_MEAN_COSINE
            rows[name] = row
            log(
                f"    {mod} {name}: {row['median_ms']:,.1f} ms, cosine {row['mean_cosine_to_fp32']:.5f}, "
                f"first call {row['first_call_s']:.1f} s"
            )
            if row["passes"] and (best is None or row["median_ms"] < best[0]):
                best = (row["median_ms"], name, runner)
        if best is None:
            raise RuntimeError(f"no PyTorch setting ran the {mod} encoder: {rows}")
        self.report[mod] = rows
        self.chosen[mod] = best[1]
        self.runners[mod] = best[2]

    def build(self, mod: str, setting: str) -> Callable[[tuple[Any, ...]], np.ndarray]:
        """The ``mod`` encoder at ``setting`` (any of :data:`SETTINGS`), as a function of its
        input tensors."""
        return self._build(self.models[mod], setting)[0]

    def _build(self, model: Any, name: str) -> tuple[Callable[[tuple[Any, ...]], np.ndarray], float]:
        """The encoder at one setting, as a function of its input tensors to float32 features."""
        torch = self.torch
        int8, bf16, compiled = SETTINGS[name]
        t0 = time.perf_counter()
        net = model
        if int8:
            net = quantize_linears(model)
        if compiled:
            import torch._inductor.config as inductor

            inductor.freezing = True  # constant-fold and prepack weights: PyTorch's CPU advice
            net = torch.compile(net)

        def autocast() -> AbstractContextManager[Any]:
            return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()

        def run(x: tuple[Any, ...]) -> np.ndarray:
            with torch.inference_mode(), autocast():
                out = net(*x)
            out = out[0] if isinstance(out, tuple) else out
            return out.float().numpy()

        return run, time.perf_counter() - t0

    def encode(self, mod: str, x: tuple[np.ndarray, ...]) -> np.ndarray:
        return self.runners[mod](tuple(self.torch.from_numpy(np.ascontiguousarray(a)) for a in x))

    def fuse(self, feeds: dict[str, np.ndarray]) -> float:
        with self.torch.inference_mode():
            score, _ = self.head(*(self.torch.from_numpy(feeds[n]) for n in self.head_names))
        return float(score[0])


#: Modules that read their Linear children's ``.weight`` directly (WavLM's attention hands the
#: projection weights to ``F.multi_head_attention_forward``): those Linears stay fp32.
READS_WEIGHTS = ("WavLMAttention",)


def quantize_linears(model: Any) -> Any:
    """A copy of ``model`` with ``torch.ao`` dynamic int8 (per-channel weights) Linear layers,
    except the Linears of :data:`READS_WEIGHTS` modules."""
    import torch

    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    spec = {
        f"{parent}.{child}" if parent else child: qconfig
        for parent, module in model.named_modules()
        if type(module).__name__ not in READS_WEIGHTS
        for child, sub in module.named_children()
        if isinstance(sub, torch.nn.Linear)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), spec, dtype=torch.qint8)


def _time_runner(
    runner: Callable[[tuple[Any, ...]], np.ndarray], tensors: tuple[Any, ...], repeat: int
) -> tuple[dict[str, Any], np.ndarray]:
    """One warm-up call (compiles under torch.compile), then ``repeat`` timed calls."""
    t0 = time.perf_counter()
    out = runner(tensors)
    first = time.perf_counter() - t0
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = runner(tensors)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "runs_ms": times, "first_call_s": first}, out


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    from msa_export.gate.checks import cosines

    return float(cosines(a, b).mean())
