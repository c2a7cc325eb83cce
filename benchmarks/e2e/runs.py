"""The parent side of a run: each contender and each stream in its own worker process
(:func:`e2e.workers.spawn`), a contender again when other processes took the CPU meanwhile."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from e2e.clips import make_stream_clip
from e2e.common import CONTENDERS, LABELS, OPENVINO_CONTENDERS, STAGES, STREAMS, log
from e2e.measure import noisy, wait_for_quiet
from e2e.pipelines import tuning_record
from e2e.workers import spawn


def contender_task(
    args: argparse.Namespace, name: str, info: dict[str, Any], work: Path, scratch: Path, clip_file: Path
) -> dict[str, Any]:
    task = {
        "kind": "contender",
        "contender": name,
        "preset": args.preset,
        "pack": info["pack"],
        "full": info["full"],
        "clip": str(clip_file),
        "features": str(work / f"features_{name}.npz"),
        "repeat": args.repeat,
        "warmup": args.warmup,
        "profile": args.profile and name in ("ort_int8_cut", "ort_fp32_cut"),
        "profile_dir": str(scratch / "profiles"),
        "profile_runs": args.profile_runs,
        "torch_settings": args.torch_settings,
    }
    if name == "tuned_concurrent":  # the fastest file and provider per encoder, measured here
        task["tuning"] = str(tuning_record(Path(info["pack"]), work, log))
    return task


def run_contender(args: argparse.Namespace, name: str, task: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """One contender in its own process; again (after waiting for quiet) while others took the CPU."""
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
    st = res["stages"]
    log(
        f"  total {st['total']['median']:,.1f} ms ("
        + ", ".join(f"{s} {st[s]['median']:,.1f}" for s in STAGES if s in st)
        + f"); peak RSS "
        f"{res['rss_mb']['peak_inference'] or 0:,.0f} MB; others' CPU "
        f"{res['interference']['others_cpu_share']:.0%}, steal {res['interference']['steal_share']:.0%}"
    )
    return res


def run_contenders(
    args: argparse.Namespace,
    info: dict[str, Any],
    work: Path,
    scratch: Path,
    clip_file: Path,
    previous: dict[str, Any],
    openvino: bool,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Every contender's results and features (the ``--only`` ones run, the others kept)."""
    wanted = set(args.only.split(",")) if args.only else set(CONTENDERS)
    contenders: dict[str, Any] = {}
    feats: dict[str, dict[str, np.ndarray]] = {}
    for name in CONTENDERS:
        if name in OPENVINO_CONTENDERS and not openvino:
            continue
        fpath = work / f"features_{name}.npz"
        if name not in wanted and name in previous and fpath.is_file():
            contenders[name] = previous[name]
            feats[name] = dict(np.load(fpath))
            continue
        log(f"{name}: {LABELS[name]} ...")
        task = contender_task(args, name, info, work, scratch, clip_file)
        contenders[name] = run_contender(args, name, task, scratch)
        feats[name] = dict(np.load(fpath))
    return contenders, feats


def run_streams(
    args: argparse.Namespace,
    run: dict[str, Any],
    info: dict[str, Any],
    media_dir: Path,
    stream_media: dict[str, Any],
    scratch: Path,
    openvino: bool,
) -> None:
    """``Analyzer.stream`` over the generated clip, once per stream of :data:`e2e.common.STREAMS`."""
    media, srt = make_stream_clip(media_dir, args.stream_seconds, **stream_media)
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
