"""Per encoder, PyTorch's CPU settings against the pack's files, taking turns in one process.

    python benchmarks/bench_torch_best.py [--preset edge] [--rounds 4] [--out FILE.md]

bench_e2e.py's ``torch_best`` contender and the pack contenders run one after another, each in
its own process; on a machine whose load swings within minutes that puts each in a different
minute. This compares the same things per encoder with every contender loaded in one process
and called in turn, round after round (the order reversed every other round), so a busy
neighbour hits them alike: PyTorch's cut encoder at each eager setting of ``e2e.torch_best``
(fp32, bf16 autocast, torch.ao dynamic int8 Linear) against the pack's int8 file on ONNX
Runtime's CPU EP and its OpenVINO files (ov-int8, else fp32) on OpenVINO where a route offers
this CPU. Inputs: bench_e2e's clip through the runtime's preprocessing; the pack is
bench_e2e's cached one (``benchmarks/.cache/PRESET/pack``; run ``bench_e2e.py --preset PRESET
--prepare-only`` first). Reported: median ms per encoder and contender, and each PyTorch
setting's time over the fastest pack file's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e.common import HERE, THREADS  # noqa: E402
from e2e.pipelines import Preprocessor, get_preset_random  # noqa: E402
from e2e.torch_best import EAGER_SETTINGS, TorchBestPipeline  # noqa: E402
from e2e.workers import load_clip  # noqa: E402
from hostinfo import cpu_model


def runners(
    preset: str, pack: Path, inputs: dict[str, Any], torch_threads: tuple[int, ...] = (THREADS,)
) -> dict[str, dict[str, Callable[[], Any]]]:
    """Per encoder: contender name -> a call of it on the clip's inputs (each PyTorch setting once
    per count of ``torch_threads``, set before each call)."""
    import torch

    from msa_runtime.engine.openvino import pick_route
    from msa_runtime.engine.sessions import import_ort, make_session
    from msa_runtime.pack import load_manifest

    manifest = load_manifest(pack, verify=False)
    torch_pipe = TorchBestPipeline(get_preset_random(preset), inputs, ("fp32",), 1)
    base = torch_pipe.runners  # fp32 eager per encoder; the other settings built from the models
    out: dict[str, dict[str, Callable[[], Any]]] = {}
    openvino = pick_route(import_ort(), "CPU") is not None
    for mod, entry in manifest.encoders.items():
        tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs[mod])
        calls: dict[str, Callable[[], Any]] = {}
        for setting in EAGER_SETTINGS:
            run = base[mod] if setting == "fp32" else torch_pipe.build(mod, setting)
            for n in torch_threads:
                label = f"torch {setting}" + (f" @{n}t" if torch_threads != (THREADS,) else "")
                calls[label] = lambda r=run, t=tensors, n=n: (torch.set_num_threads(n), r(t))
        files = {"ORT CPU EP int8": ("cpu", entry.files["int8"])}
        if openvino:
            ov = (entry.provider_precisions("openvino") or ("fp32",))[0]
            files[f"OpenVINO {ov}"] = ("openvino", entry.files[ov])
        for name, (providers, file) in files.items():
            session = make_session(pack / file, providers, threads=THREADS, spinning=False)
            feeds = dict(zip([i.name for i in session.get_inputs()], inputs[mod]))
            calls[name] = lambda s=session, f=feeds: s.run(["hidden"], f)
        out[mod] = calls
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="edge")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", type=Path, help="append the table to this markdown file")
    ap.add_argument(
        "--torch-threads",
        default=str(THREADS),
        help="comma-separated PyTorch thread counts, each PyTorch setting timed at each "
        "(ONNX Runtime and OpenVINO keep 2 threads, spinning off)",
    )
    args = ap.parse_args()
    threads = tuple(int(n) for n in args.torch_threads.split(","))
    work = HERE / ".cache" / args.preset
    pack = work / "pack"
    if not (pack / "manifest.json").is_file() or not (work / "clip.npz").is_file():
        sys.exit(f"no cached pack and clip in {work}: run bench_e2e.py --preset {args.preset} first")
    prep = Preprocessor(pack)
    inputs = prep(load_clip({"clip": str(work / "clip.npz")}))[0]
    calls = runners(args.preset, pack, inputs, threads)
    load0, wall0 = os.getloadavg(), time.perf_counter()
    times: dict[tuple[str, str], list[float]] = {}
    for mod, contenders in calls.items():
        for call in contenders.values():
            call()  # warm-up
        names = list(contenders)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                t0 = time.perf_counter()
                contenders[name]()
                times.setdefault((mod, name), []).append((time.perf_counter() - t0) * 1e3)
        print(mod, {n: round(statistics.median(times[mod, n])) for n in names}, flush=True)
    print(report(args, calls, times, load0, time.perf_counter() - wall0))


def report(
    args: argparse.Namespace,
    calls: dict[str, dict[str, Callable[[], Any]]],
    times: dict[tuple[str, str], list[float]],
    load0: tuple[float, float, float],
    wall: float,
) -> str:
    cpu = cpu_model()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"Per encoder, {args.preset} preset, bench_e2e's clip ({when}; {cpu}, {os.cpu_count()} cores, "
        f"{THREADS} threads (PyTorch: {args.torch_threads}); {args.rounds} rounds, contenders "
        f"taking turns in one process; load average {load0[0]:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end, {wall:.0f} s). "
        "Median ms; in brackets the time over the fastest pack file's.",
        "",
    ]
    for mod, contenders in calls.items():
        med = {n: statistics.median(times[mod, n]) for n in contenders}
        best_pack = min(v for n, v in med.items() if not n.startswith("torch"))
        lines.append(f"| {mod} | " + " | ".join(contenders) + " |")
        lines.append("|---|" + "---:|" * len(contenders))
        lines.append(
            "| ms | " + " | ".join(f"{med[n]:,.0f} ({med[n] / best_pack:.2f}x)" for n in contenders) + " |"
        )
        lines.append("")
    text = "\n".join(lines)
    if args.out is not None:
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write("\n" + text + "\n")
    return text


if __name__ == "__main__":
    main()
