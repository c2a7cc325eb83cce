"""End to end: the reference PyTorch pipeline against our packs, on one clip, in one run.

    python benchmarks/bench_e2e.py --preset edge            [--repeat 5] [--out benchmarks/results]
    python benchmarks/bench_e2e.py --preset ando2022-mosi   --repeat 3
    python benchmarks/bench_e2e.py --quick                  (tiny preset, 1 repeat: the smoke test)

Five contenders see the same preprocessed inputs of one generated 5 s clip (15 frames of
640x480 at 3 fps, 80,000 samples at 16 kHz, ~20 tokens), with seeded random weights (the hub is
not reachable here; the architectures are the presets' real sizes):

1. ``reference``     PyTorch eager, full-depth encoders run with ``output_hidden_states=True``,
                     the preset's layer sliced out afterwards (the papers' way of working)
2. ``torch_cut``     PyTorch eager, encoders cut after the layer
2b. ``torch_best``   the same cut encoders in PyTorch at its fastest CPU settings, chosen per
                     encoder on this machine among bf16 autocast, ``torch.ao`` dynamic int8
                     linear layers and ``torch.compile`` (``--torch-settings``; e2e.torch_best)
3. ``ort_fp32_full`` ONNX Runtime fp32, uncut encoders (what a generic exporter gives a user)
4. ``ort_fp32_cut``  ONNX Runtime fp32, the pack's cut encoders
5. ``ort_int8_cut``  ONNX Runtime int8, the pack's cut encoders (the CPU pack)
6. ``ov_bf16_cut``   OpenVINO (the route ``openvino`` takes here: its own runtime, else ONNX
                     Runtime's plugin) on the pack's fp32 files (bf16 where the CPU has it)
7. ``ov_int8_cut``   the same on the pack's ov-int8 files (NNCF static QDQ; an encoder whose
                     ov-int8 file failed the parity gate runs what the manifest gives OpenVINO)

6 and 7 run only where an OpenVINO route offers this CPU (``msa-edge[openvino]``); the
streams then run twice, on the CPU EP (int8) and on OpenVINO.

Every contender runs in its own subprocess (so peak RSS is that contender's alone, and ORT
contenders never import torch), with 2 threads (``torch.set_num_threads``; ORT sessions with
``intra_op_num_threads`` and thread spinning off). One warm-up run, then ``--repeat`` timed runs
of the whole pipeline: preprocessing (the runtime's numpy code, the same for everyone), text,
audio and vision encoders, fusion head.

Also measured in the same run: the machine's own peak (a large fp32 MatMul, int8 MatMulInteger
and the DynamicQuantizeMatMul the int8 pack runs, in ONNX Runtime), analytic FLOPs of each cut
encoder and the fraction of the peak they reach, an ORT profile of the int8 pack's encoders (top
ops), pack sizes, install sizes of the runtime vs the torch stack, and (``--stream``, on by
default for the edge and ando2022-mosi presets) the real-time factor of ``Analyzer.stream`` over
a generated clip (``--stream-seconds``, default 180; the issue's figure uses 60). Results merge
into ``OUT/<hostname>.json`` (one section per preset) and ``OUT/<hostname>.md`` is rewritten
from it.

Interference: every worker records the load average and, from /proc/stat, how much CPU time
other processes and the hypervisor (steal) took while it was timing; the results show it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from e2e.analysis import analyse
from e2e.clips import clip_inputs, make_stream_clip
from e2e.common import HERE, log
from e2e.flops import model_config
from e2e.machine import install_sizes, merge_peaks, pack_sizes
from e2e.measure import wait_for_quiet
from e2e.pipelines import get_preset_random, prepare
from e2e.render import write_results
from e2e.runs import run_contenders, run_streams
from e2e.torch_best import EAGER_SETTINGS, SETTINGS
from e2e.workers import WORKERS, spawn
from msa_runtime.engine.openvino import describe_routes, pick_route
from msa_runtime.engine.sessions import import_ort


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="edge", help="ando2022-mosi | edge | tiny (random weights)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tiny preset, 1 repeat, short stream (smoke test)")
    ap.add_argument(
        "--out",
        type=Path,
        help="results folder (default benchmarks/results; a temporary folder with --quick)",
    )
    ap.add_argument("--work", type=Path, help="cache of packs and exported files (default benchmarks/.cache)")
    ap.add_argument("--pack", type=Path, help="use this pack (int8 + fp32) instead of building one")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached pack and full-depth files")
    ap.add_argument("--stream", dest="stream", action="store_true", default=None)
    ap.add_argument("--no-stream", dest="stream", action="store_false")
    ap.add_argument("--stream-seconds", type=float, default=180.0)
    ap.add_argument("--profile-runs", type=int, default=2)
    ap.add_argument("--no-profile", dest="profile", action="store_false", default=True)
    ap.add_argument(
        "--prepare-only",
        action="store_true",
        help="build the cached pack, full-depth files and stream clip, then stop",
    )
    ap.add_argument(
        "--only",
        help="comma-separated contenders to (re)run; the others come from the "
        "previous results (debugging only)",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="MINUTES",
        help="before measuring, wait up to MINUTES for the other processes to go quiet",
    )
    ap.add_argument(
        "--retry-noisy",
        type=int,
        default=2,
        metavar="N",
        help="run a contender again (after waiting for quiet) when other processes "
        "took more than 15%% of the CPU while it was timed, up to N times",
    )
    ap.add_argument(
        "--torch-settings",
        help="comma-separated PyTorch settings the torch_best contender tries per encoder "
        f"(default all: {','.join(SETTINGS)}; --quick: those without torch.compile)",
    )
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.torch_settings is None:
        args.torch_settings = ",".join(EAGER_SETTINGS if args.quick else SETTINGS)
    args.torch_settings = [s.strip() for s in args.torch_settings.split(",") if s.strip()]
    unknown = sorted(set(args.torch_settings) - set(SETTINGS))
    if unknown:
        ap.error(f"--torch-settings: unknown {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    if args.quick:
        args.preset, args.repeat = "tiny", 1
        args.stream_seconds = min(args.stream_seconds, 10.0)
        args.retry_noisy = 0  # a smoke run: never wait minutes for a quiet machine
        if args.stream is None:
            args.stream = True
    if args.stream is None:
        args.stream = args.preset in ("edge", "ando2022-mosi")
    return args


def run_worker(path: Path) -> int:
    """A subprocess's job (:func:`e2e.workers.spawn`): run the task, write its result."""
    task = json.loads(path.read_text())
    result = WORKERS[task["kind"]](task)
    Path(task["result"]).write_text(json.dumps(result, default=float))
    return 0


def wait_quiet(minutes: float) -> dict[str, Any] | None:
    if minutes <= 0:
        return None
    log(f"waiting up to {minutes:g} min for a quiet machine ...")
    quiet = wait_for_quiet(minutes)
    log(
        f"  {'quiet' if quiet['quiet'] else 'NOT quiet'} after {quiet['waited_s']} s "
        f"(busy shares {quiet['last_busy_shares']})"
    )
    return quiet


def save_clip(work: Path) -> tuple[dict[str, Any], Path]:
    """The benchmark clip, and the same clip in ``work`` for the workers."""
    clip = clip_inputs()
    clip_file = work / "clip.npz"
    np.savez(
        clip_file,
        frames=clip["frames"],
        audio=clip["audio"],
        rate=clip["sample_rate"],
        text=clip["text"],
    )
    return clip, clip_file


def peak_task(args: argparse.Namespace, preset: Any) -> dict[str, Any]:
    """The machine-peak worker's task: a square MatMul (and the vision MLP's at full size)."""
    size = 2048 if not args.quick else 512
    shapes = {"square": (size, size, size)}
    if not args.quick and "vision" in preset.encoders:
        c = model_config("clip", preset.encoders["vision"].config)
        tokens = 15 * ((c.image_size // c.patch_size) ** 2 + 1)
        shapes["vision_mlp"] = (tokens, c.hidden_size, c.intermediate_size)
    return {"kind": "peak", "shapes": shapes, "seconds": 4.0 if not args.quick else 0.3}


def log_peak(peak: dict[str, Any]) -> None:
    for k, v in peak["peaks"].items():
        log(f"  {k}: best {v['best_gflops']:,.0f} G(FL)OP/s")


def previous_contenders(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """With ``--only``: the contenders of this preset's previous results, to keep."""
    if not args.only:
        return {}
    jpath = out / f"{socket.gethostname()}.json"
    if not jpath.is_file():
        return {}
    return json.loads(jpath.read_text()).get("runs", {}).get(args.preset, {}).get("contenders", {})


def run_record(
    args: argparse.Namespace,
    info: dict[str, Any],
    contenders: dict[str, Any],
    peak: dict[str, Any],
    load_at_start: tuple[float, float, float],
    quiet: dict[str, Any] | None,
) -> dict[str, Any]:
    """This preset's section of the results, before the analysis and the streams."""
    from msa_runtime.pack import load_manifest

    manifest = load_manifest(Path(info["pack"]), verify=False)
    run: dict[str, Any] = {
        "preset": args.preset,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "repeat": args.repeat,
        "warmup": args.warmup,
        "pack": info["pack"],
        "contenders": contenders,
        "peak": peak,
        "encoders": {
            m: {
                "kind": e.kind,
                "layer": e.layer,
                "num_layers": e.num_layers,
                "hidden_size": e.hidden_size,
            }
            for m, e in manifest.encoders.items()
        },
        "sizes": pack_sizes(Path(info["pack"]), Path(info["full"])),
        "loadavg_at_start": load_at_start,
        "loadavg_at_end": os.getloadavg(),
        "quiet_wait": quiet,
    }
    if "pack_build_s" in info:
        run["pack_build_s"] = info["pack_build_s"]
    return run


def write_run(out: Path, preset: str, run: dict[str, Any]) -> None:
    """Merge the run into the results files and print the summary."""

    def update(doc: dict[str, Any]) -> None:
        doc.setdefault("runs", {})[preset] = run
        doc["install"] = install_sizes()
        order = [p for p in ("ando2022-mosi", "edge") if p in doc["runs"]]
        doc["runs"] = {p: doc["runs"][p] for p in order + sorted(set(doc["runs"]) - set(order))}

    jpath = write_results(out, update)
    log(f"results: {jpath} and {jpath.with_suffix('.md')} ({run['seconds']:.0f} s)")
    contenders = run["contenders"]
    ref = contenders["reference"]["stages"]["total"]["median"]
    for name in contenders:
        c = contenders[name]
        log(
            f"  {name:14s} {c['stages']['total']['median']:10,.1f} ms  "
            f"{ref / c['stages']['total']['median']:6.2f}x  "
            f"score diff {c['fidelity']['score_diff_own_pipeline']:.4f}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args.worker)
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else HERE / "results")
    work_root = args.work or HERE / ".cache"
    work = work_root / args.preset

    preset = get_preset_random(args.preset)
    started = time.perf_counter()
    stream_media: dict[str, Any] = {"fps": 25, "size": (640, 480)}
    if args.quick:
        stream_media = {"fps": 15, "size": (320, 240)}
    info = prepare(preset, work, args.pack, args.rebuild, log)
    if args.prepare_only:
        if args.stream:
            make_stream_clip(work_root / "media", args.stream_seconds, **stream_media)
        log(f"prepared {work}")
        return 0
    quiet = wait_quiet(args.wait_quiet)
    load_at_start = os.getloadavg()
    clip, clip_file = save_clip(work)
    scratch = work / "run"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    ptask = peak_task(args, preset)
    log(f"machine peak: MatMul {ptask['shapes']} ...")
    peak = spawn(ptask, scratch, log)
    log_peak(peak)

    previous = previous_contenders(args, out)
    openvino = pick_route(import_ort(), "CPU") is not None
    if not openvino:
        log(
            f"no OpenVINO route offers this CPU ({describe_routes(import_ort())}): its contenders are skipped"
        )
    contenders, feats = run_contenders(args, info, work, scratch, clip_file, previous, openvino)
    run = run_record(args, info, contenders, peak, load_at_start, quiet)
    # the peak again at the end: the best of the two is the machine's peak in this run (one
    # sample can land on a moment when another process or the hypervisor took a core)
    log("machine peak again ...")
    peak_end = spawn(ptask, scratch, log)
    run["peak"] = merge_peaks(peak, peak_end)
    log_peak(run["peak"])
    analyse(preset, run, feats, clip)
    if args.stream:
        run_streams(args, run, info, work_root / "media", stream_media, scratch, openvino)
    run["seconds"] = round(time.perf_counter() - started, 1)
    write_run(out, args.preset, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
