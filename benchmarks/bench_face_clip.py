"""Face-crop time of a pack on one clip, this tree against an earlier revision, A/B in one run.

    python benchmarks/bench_face_clip.py --pack DIR [--clip CLIP.npz] [--baseline REV]
        [--redetect 10,15] [--rounds 6] [--repeat 3] [--threads 2] [--out FILE.md]

Times :func:`msa_runtime.preprocess.vision_squares` (detection, tracking, crop, resize: the pack's
whole face-crop preprocessing) on the frames of a clip: ``--clip`` is an ``.npz`` with a
``frames`` array ``[N, H, W, 3]`` uint8 (``bench_e2e.py`` caches its clip that way), else a
generated 15-frame 640x360 clip of a moving speaker (tests/media_factory.py, needs
scikit-image). Contenders run in worker processes taking turns round after round, so a busy
neighbour hits them alike: this tree with the pack's ``face_redetect`` and with each of
``--redetect``, and ``--baseline`` (a git revision; its ``runtime/`` is extracted to a temporary
folder and imported in place of this tree's). Each worker loads the pack's detector with
``--threads``, warms up on two clips, then times ``--repeat`` clips per round. Reported: median
ms per clip over the rounds, the ratio to the first contender, the detector's work per clip,
and the share of the CPU other processes took meanwhile (from /proc/stat, minus this run's
processes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cpu_stat() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    return busy / hz, sum(fields[:8]) / hz


def _own_cpu() -> float:
    """CPU seconds of this process and its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def load_frames(clip: Path | None) -> list:  # type: ignore[type-arg]
    import numpy as np

    if clip is not None:
        with np.load(clip) as data:
            return list(data["frames"])
    sys.path.insert(0, str(ROOT / "tests"))
    from media_factory import moving_face_frames

    return moving_face_frames(15, size=(640, 360), speed=8.0, zoom=0.1)


def worker(args: argparse.Namespace) -> None:
    """Time vision_squares on the clip; print one JSON line per round (read from stdin)."""
    import dataclasses

    from msa_runtime.face.cascade import FaceDetector
    from msa_runtime.pack import load_manifest
    from msa_runtime.preprocess import FaceTrack, vision_squares

    manifest = load_manifest(args.pack, encoder_files=False)
    prep = manifest.vision_prep()
    if prep.crop != "face":
        sys.exit(f"{args.pack}: its vision preprocessing is a {prep.crop} crop, not a face crop")
    if args.worker_redetect:
        prep = dataclasses.replace(prep, face_redetect=args.worker_redetect)
    detector = FaceDetector.from_folder(args.pack, manifest.face_detector, threads=args.threads)
    frames = load_frames(args.clip)
    for _ in range(2):
        vision_squares(frames, prep, detector, FaceTrack())
    print(json.dumps({"ready": True, "redetect": prep.face_redetect}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        times, track = [], FaceTrack()
        for _ in range(args.repeat):
            track = FaceTrack()
            start = time.perf_counter()
            vision_squares(frames, prep, detector, track)
            times.append((time.perf_counter() - start) * 1e3)
        print(json.dumps({"ms": times, "detections": track.detections, "tracked": track.tracked}), flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, required=True, help="a pack with a face-crop preset")
    parser.add_argument("--clip", type=Path, help=".npz with frames [N, H, W, 3] uint8")
    parser.add_argument("--baseline", help="git revision to compare with (e.g. main)")
    parser.add_argument("--redetect", default="", help="also time this tree with these face_redetect")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="append the table to this markdown file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-redetect", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


Contender = tuple[str, dict[str, str], int]  # name, environment, face_redetect (0: the pack's)
Worker = tuple[str, "subprocess.Popen[str]", int]  # name, process, its face_redetect


def contenders(args: argparse.Namespace, tmp: Path) -> list[Contender]:
    """This tree, with each ``--redetect`` value, and ``--baseline``'s runtime extracted to ``tmp``."""
    found: list[Contender] = [("this tree", {}, 0)]
    for value in filter(None, args.redetect.split(",")):
        found.append((f"this tree, face_redetect={int(value)}", {}, int(value)))
    if args.baseline:
        base = tmp / "base"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.baseline, "runtime"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        if not (base / "runtime" / "msa_runtime").is_dir():
            sys.exit(
                f"--baseline {args.baseline}: from before the msa_runtime package folder; not comparable"
            )
        env = {"PYTHONPATH": str(base / "runtime")}
        found.append((f"{args.baseline}", env, 0))
    return found


def start_workers(args: argparse.Namespace, found: list[Contender]) -> list[Worker]:
    """One worker process per contender, each warmed up and ready before the first round."""
    procs = []
    for name, env, redetect in found:
        cmd = [sys.executable, __file__, "--worker", "--pack", str(args.pack)]
        cmd += ["--repeat", str(args.repeat), "--threads", str(args.threads)]
        cmd += ["--worker-redetect", str(redetect)]
        if args.clip is not None:
            cmd += ["--clip", str(args.clip)]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, **env}
        )
        assert proc.stdout is not None and proc.stdin is not None
        ready = json.loads(proc.stdout.readline() or "{}")
        if not ready.get("ready"):
            sys.exit(f"worker for {name} failed to start")
        procs.append((name, proc, ready["redetect"]))
    return procs


def run_rounds(
    args: argparse.Namespace, procs: list[Worker]
) -> tuple[dict[str, list[float]], dict[str, str], float, float]:
    """The workers take turns, round after round (the order reversed every other round).

    Returns each one's median ms per round, its work per clip, the share of the CPU other
    processes took, and the wall time."""
    results: dict[str, list[float]] = {name: [] for name, _, _ in procs}
    work: dict[str, str] = {}
    busy0, total0 = _cpu_stat()
    own0 = _own_cpu()
    wall0 = time.perf_counter()
    for r in range(args.rounds):
        order = procs if r % 2 == 0 else procs[::-1]
        for name, proc, _ in order:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            out = json.loads(proc.stdout.readline())
            results[name].append(statistics.median(out["ms"]))
            work[name] = f"{out['detections']} detections, {out['tracked']} tracked"
    wall = time.perf_counter() - wall0
    for _, proc, _ in procs:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
    busy1, total1 = _cpu_stat()
    # the workers are children that have exited now: their CPU time counts as ours
    own = _own_cpu() - own0
    others = max(0.0, (busy1 - busy0) - own) / max(total1 - total0, 1e-9)
    return results, work, others, wall


def report(
    args: argparse.Namespace,
    procs: list[Worker],
    results: dict[str, list[float]],
    work: dict[str, str],
    others: float,
    wall: float,
) -> str:
    first = statistics.median(results[procs[0][0]])
    clip = args.clip.name if args.clip is not None else "generated 640x360 moving speaker"
    lines = [
        f"Face crop per clip ({clip}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"threads={args.threads}; {args.rounds} rounds x {args.repeat} clips, contenders alternating; "
        f"other processes took {others:.0%} of the CPU over {wall:.0f} s)",
        "",
        "| contender | face_redetect | ms per clip (median of rounds) | min..max of rounds | vs first "
        "| work |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, _, redetect in procs:
        ms = results[name]
        lines.append(
            f"| {name} | {redetect} | {statistics.median(ms):.1f} | {min(ms):.1f}..{max(ms):.1f} | "
            f"{statistics.median(ms) / first:.2f}x | {work[name]} |"
        )
    head = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    lines[1:1] = [
        "",
        f"Command: `python benchmarks/bench_face_clip.py {' '.join(sys.argv[1:])}` (this tree: {head})",
    ]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        procs = start_workers(args, contenders(args, Path(tmp)))
        results, work, others, wall = run_rounds(args, procs)

    text = report(args, procs, results, work, others, wall)
    print(text)
    if args.out is not None:
        new = not args.out.is_file()
        with args.out.open("a", encoding="utf-8") as fh:
            if new:
                fh.write("# Face-crop time per clip on this VM (benchmarks/bench_face_clip.py)\n")
            fh.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
