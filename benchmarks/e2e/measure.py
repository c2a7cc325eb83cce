"""Measurement helpers used inside the workers: latency statistics, peak RSS, and the CPU
other processes take while we time."""

from __future__ import annotations

import gc
import math
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from e2e.common import log


def stats(ms: list[float]) -> dict[str, float]:
    """Median and p90 (nearest rank: with 3 repeats the p90 is the slowest run)."""
    s = sorted(ms)
    p90 = s[max(0, math.ceil(0.9 * len(s)) - 1)]
    return {"median": float(np.median(s)), "p90": float(p90), "min": float(s[0]), "n": len(s)}


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def trim_heap() -> None:
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Interference:
    """CPU taken by others while we time: from /proc/stat (all CPUs) minus our own CPU time."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[list[int], float, float]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return fields, ru.ru_utime + ru.ru_stime, time.perf_counter()

    def result(self) -> dict[str, float]:
        a, own_a, t_a = self.start
        b, own_b, t_b = self._read()
        d = [y - x for x, y in zip(a, b)]
        hz = os.sysconf("SC_CLK_TCK")
        total = sum(d[:8]) / hz  # user nice system idle iowait irq softirq steal
        busy = (d[0] + d[1] + d[2] + d[5] + d[6]) / hz
        steal = d[7] / hz if len(d) > 7 else 0.0
        own = own_b - own_a
        cores = os.cpu_count() or 1
        wall = t_b - t_a
        return {
            "wall_s": round(wall, 2),
            "own_cpu_s": round(own, 2),
            "others_cpu_share": round(max(0.0, busy - own) / max(total, 1e-9), 3),
            "steal_share": round(steal / max(total, 1e-9), 3),
            "loadavg_1m": os.getloadavg()[0],
            "cores": cores,
        }


def noisy(interference: dict[str, Any]) -> bool:
    """Other processes took a noticeable share of the CPU (the hypervisor's steal, which
    nothing here can avoid, only counts when it is large)."""
    return interference["others_cpu_share"] > 0.15 or interference["steal_share"] > 0.3


def wait_for_quiet(max_minutes: float, busy_below: float = 0.1, window: float = 15.0) -> dict[str, Any]:
    """Wait (up to ``max_minutes``) until two consecutive ``window``-second samples of
    /proc/stat show the CPUs busy less than ``busy_below`` of the time (we are idle meanwhile)."""
    started = time.perf_counter()
    calm = 0
    samples: list[float] = []
    while True:
        a = Interference()
        time.sleep(window)
        res = a.result()
        share = res["others_cpu_share"] + res["steal_share"]
        samples.append(round(share, 3))
        calm = calm + 1 if share < busy_below else 0
        waited = time.perf_counter() - started
        if calm >= 2 or waited > max_minutes * 60:
            return {"quiet": calm >= 2, "waited_s": round(waited), "last_busy_shares": samples[-4:]}
        if len(samples) % 8 == 0:
            log(f"  still waiting for a quiet machine: busy {share:.0%} ({waited / 60:.0f} min)")
