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
from e2e.common import CONTENDERS, HERE, LABELS, OPENVINO_CONTENDERS, STAGES, STREAMS, log
from e2e.flops import model_config
from e2e.machine import install_sizes, merge_peaks, pack_sizes
from e2e.measure import noisy, wait_for_quiet
from e2e.pipelines import get_preset_random, prepare, tuning_record
from e2e.render import write_results
from e2e.workers import WORKERS, spawn
from msa_runtime.engine.openvino import describe_routes, pick_route
from msa_runtime.engine.sessions import import_ort


def main(argv: list[str] | None = None) -> int:
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
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        task = json.loads(args.worker.read_text())
        result = WORKERS[task["kind"]](task)
        Path(task["result"]).write_text(json.dumps(result, default=float))
        return 0

    if args.quick:
        args.preset, args.repeat = "tiny", 1
        args.stream_seconds = min(args.stream_seconds, 10.0)
        args.retry_noisy = 0  # a smoke run: never wait minutes for a quiet machine
        if args.stream is None:
            args.stream = True
    if args.stream is None:
        args.stream = args.preset in ("edge", "ando2022-mosi")
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
    quiet = None
    if args.wait_quiet > 0:
        log(f"waiting up to {args.wait_quiet:g} min for a quiet machine ...")
        quiet = wait_for_quiet(args.wait_quiet)
        log(
            f"  {'quiet' if quiet['quiet'] else 'NOT quiet'} after {quiet['waited_s']} s "
            f"(busy shares {quiet['last_busy_shares']})"
        )
    load_at_start = os.getloadavg()
    clip = clip_inputs()
    clip_file = work / "clip.npz"
    np.savez(
        clip_file,
        frames=clip["frames"],
        audio=clip["audio"],
        rate=clip["sample_rate"],
        text=clip["text"],
    )
    scratch = work / "run"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    size = 2048 if not args.quick else 512
    shapes = {"square": (size, size, size)}
    if not args.quick and "vision" in preset.encoders:
        c = model_config("clip", preset.encoders["vision"].config)
        tokens = 15 * ((c.image_size // c.patch_size) ** 2 + 1)
        shapes["vision_mlp"] = (tokens, c.hidden_size, c.intermediate_size)
    log(f"machine peak: MatMul {shapes} ...")
    peak_seconds = 4.0 if not args.quick else 0.3
    peak = spawn({"kind": "peak", "shapes": shapes, "seconds": peak_seconds}, scratch, log)
    for k, v in peak["peaks"].items():
        log(f"  {k}: best {v['best_gflops']:,.0f} G(FL)OP/s")

    previous: dict[str, Any] = {}
    if args.only:
        jpath = out / f"{socket.gethostname()}.json"
        if jpath.is_file():
            previous = (
                json.loads(jpath.read_text()).get("runs", {}).get(args.preset, {}).get("contenders", {})
            )
    wanted = set(args.only.split(",")) if args.only else set(CONTENDERS)
    contenders: dict[str, Any] = {}
    feats: dict[str, dict[str, np.ndarray]] = {}
    openvino = pick_route(import_ort(), "CPU") is not None
    if not openvino:
        log(
            f"no OpenVINO route offers this CPU ({describe_routes(import_ort())}): its contenders are skipped"
        )
    for name in CONTENDERS:
        if name in OPENVINO_CONTENDERS and not openvino:
            continue
        fpath = work / f"features_{name}.npz"
        if name not in wanted and name in previous and fpath.is_file():
            contenders[name] = previous[name]
            feats[name] = dict(np.load(fpath))
            continue
        log(f"{name}: {LABELS[name]} ...")
        task = {
            "kind": "contender",
            "contender": name,
            "preset": args.preset,
            "pack": info["pack"],
            "full": info["full"],
            "clip": str(clip_file),
            "features": str(fpath),
            "repeat": args.repeat,
            "warmup": args.warmup,
            "profile": args.profile and name in ("ort_int8_cut", "ort_fp32_cut"),
            "profile_dir": str(scratch / "profiles"),
            "profile_runs": args.profile_runs,
        }
        if name == "tuned_concurrent":  # the fastest file and provider per encoder, measured here
            task["tuning"] = str(tuning_record(Path(info["pack"]), work, log))
        for attempt in range(args.retry_noisy + 1):
            res = spawn(task, scratch, log)
            if not noisy(res["interference"]) or attempt == args.retry_noisy:
                break
            log(
                f"  others took {res['interference']['others_cpu_share']:.0%} of the CPU while "
                f"{name} was timed: waiting for quiet to run it again"
            )
            wait_for_quiet(max(args.wait_quiet, 5.0))
        res["attempts"] = attempt + 1
        contenders[name] = res
        feats[name] = dict(np.load(fpath))
        st = res["stages"]
        log(
            f"  total {st['total']['median']:,.1f} ms ("
            + ", ".join(f"{s} {st[s]['median']:,.1f}" for s in STAGES if s in st)
            + f"); peak RSS "
            f"{res['rss_mb']['peak_inference'] or 0:,.0f} MB; others' CPU "
            f"{res['interference']['others_cpu_share']:.0%}, steal {res['interference']['steal_share']:.0%}"
        )

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
    # the peak again at the end: the best of the two is the machine's peak in this run (one
    # sample can land on a moment when another process or the hypervisor took a core)
    log("machine peak again ...")
    peak_end = spawn({"kind": "peak", "shapes": shapes, "seconds": peak_seconds}, scratch, log)
    run["peak"] = merge_peaks(peak, peak_end)
    for k, v in run["peak"]["peaks"].items():
        log(f"  {k}: best {v['best_gflops']:,.0f} G(FL)OP/s")
    analyse(preset, run, feats, clip)
    if args.stream:
        media, srt = make_stream_clip(work_root / "media", args.stream_seconds, **stream_media)
        w, h = stream_media["size"]
        for key, providers, precision, concurrent, _title in STREAMS:
            if providers == "openvino" and not openvino:
                continue
            log(f"streaming {media.name} through Analyzer.stream on {providers} ({_title}) ...")
            run[key] = spawn(
                {
                    "kind": "stream",
                    "pack": info["pack"],
                    "media": str(media),
                    "transcript": str(srt),
                    "duration": args.stream_seconds,
                    "window": 6.0,
                    "hop": 2.0,
                    "precision": precision,
                    "providers": providers,
                    "concurrent": concurrent,
                },
                scratch,
                log,
            )
            run[key]["media_desc"] = f"H.264 {w}x{h} at {stream_media['fps']} fps"
            log(
                f"  RTF {run[key]['rtf']:.3f}, window latency median "
                f"{run[key]['window_latency_ms']['median']:.0f} ms"
            )
    run["seconds"] = round(time.perf_counter() - started, 1)

    def update(doc: dict[str, Any]) -> None:
        doc.setdefault("runs", {})[args.preset] = run
        doc["install"] = install_sizes()
        order = [p for p in ("ando2022-mosi", "edge") if p in doc["runs"]]
        doc["runs"] = {p: doc["runs"][p] for p in order + sorted(set(doc["runs"]) - set(order))}

    jpath = write_results(out, update)
    log(f"results: {jpath} and {jpath.with_suffix('.md')} ({run['seconds']:.0f} s)")
    ref = contenders["reference"]["stages"]["total"]["median"]
    for name in contenders:
        c = contenders[name]
        log(
            f"  {name:14s} {c['stages']['total']['median']:10,.1f} ms  "
            f"{ref / c['stages']['total']['median']:6.2f}x  "
            f"score diff {c['fidelity']['score_diff_own_pipeline']:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
