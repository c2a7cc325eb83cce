"""Small formatting helpers of the results files."""

from __future__ import annotations

from typing import Any


def fmt_mb(b: float) -> str:
    return f"{b / 1e6:,.1f} MB"


def fmt_ms(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 1 else f"{x:.2f}"


def busy_text(q: dict[str, Any] | None) -> str:
    return "-" if not q else f"{q['others_cpu_share']:.0%}"


def sustained_int8(run: dict[str, Any]) -> float:
    """The median (not best) throughput of the large MatMulInteger: what it sustains."""
    peaks = run["peak"]["peaks"]
    keys = [k for k in peaks if k.endswith("/int8") and k.startswith("square")]
    return max((peaks[k]["median_gflops"] for k in keys), default=float("nan"))


def peak_cell(x: dict[str, Any]) -> str:
    text = f"{x['best_gflops']:,.0f} (median {x['median_gflops']:,.0f}"
    if x.get("samples_best_gflops"):
        text += "; best at start / end " + " / ".join(f"{v:,.0f}" for v in x["samples_best_gflops"])
    return text + ")"
