"""Face detection cost per frame: the numpy + ONNX Runtime MTCNN cascade (msa_runtime.face.cascade).

    python benchmarks/bench_face.py [--models DIR] [--threads 2] [--repeat 30] [--reference]
        [--track [--cosine PACK]] [--out benchmarks/results/face-track-vm.md]

``--models`` is a folder with face_pnet/rnet/onet.onnx (a pack); without it the detector is
exported from facenet-pytorch into a temporary folder first. Frames: scikit-image's astronaut
portrait placed on a 1280x720 and a 640x480 canvas, a 224x224 cut of it, and noise.
``--reference`` also times facenet-pytorch's own MTCNN.detect (torch, same thread count).

Columns (median ms per frame): ``detect`` the cascade alone (and its p90); ``crop`` cutting the
256 px face square; ``face prep`` the whole face-crop preprocessing of a pack frame
(:func:`msa_runtime.preprocess.vision_squares` with ``crop = "face"`` at 224 px: detection,
choice, crop, resize; the centre crop stands in when no face is found); ``centre prep`` the
centre crop it replaces.

``--track`` adds the face tracker (:mod:`msa_runtime.face.track`) on generated clips of a moving
speaker (tests/media_factory.py, 45 frames = 15 s at 3 fps, 640x360 and 1280x720): ms per frame
of the whole face crop with a detection per frame at full resolution (before) against the
defaults (``face_redetect`` = :data:`msa_runtime.face.track.DEFAULT_REDETECT`, ``face_max_side =
640``), the mean IoU of the tracked boxes to per-frame detection, and the detector's own
reproducibility (IoU of per-frame detection on the clip moved by one pixel). ``--cosine PACK``
adds the issue's feature criterion: the mean cosine between the vision features (the pack's
vision encoder, its int8 file else fp32, on the CPU) of the tracked crops and of the per-frame
crops, and the same for the one-pixel-moved detection (the detector's own floor).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from msa_runtime.face.cascade import FaceDetector, choose_face, crop_face
from msa_runtime.pack import VisionPrep
from msa_runtime.preprocess import FaceTrack, vision_squares


def frames() -> dict[str, np.ndarray]:
    try:
        from skimage.data import astronaut
    except ImportError:
        sys.exit("bench_face needs scikit-image for its test portrait: pip install scikit-image")
    face = astronaut()
    wide = np.full((720, 1280, 3), 90, dtype=np.uint8)
    wide[104:616, 384:896] = face
    canvas = np.full((480, 640, 3), 90, dtype=np.uint8)
    canvas[:, 64:576] = face[16:496]
    small = np.ascontiguousarray(face[::2, ::2][16:240, 16:240])
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return {"1280x720 face": wide, "640x480 face": canvas, "224x224 face": small, "640x480 noise": noise}


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, help="folder with face_pnet/rnet/onet.onnx")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--reference", action="store_true", help="also time facenet-pytorch")
    parser.add_argument("--track", action="store_true", help="time the face tracker on clips")
    parser.add_argument("--out", type=Path, help="write the tracker table to this markdown file")
    parser.add_argument("--cosine", type=Path, help="with --track: a pack (vision feature cosine)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.models
        if folder is None:
            from msa_export.models.face import export_face_detector

            folder = Path(tmp)
            export_face_detector(folder)
        detector = FaceDetector.from_folder(folder, threads=args.threads)
        reference = None
        if args.reference:
            import torch
            from facenet_pytorch import MTCNN

            torch.set_num_threads(args.threads)
            reference = MTCNN()

        if args.track:
            from e2e.measure import Interference

            busy = Interference()
            lines = track_table(detector, args.repeat, args.cosine, args.threads)
            others = busy.result()["others_cpu_share"]
            print(f"other processes took {others:.0%} of the CPU meanwhile")
            if args.out is not None:
                head = [
                    f"# Face tracking on this VM ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
                    "",
                    f"Command: `python benchmarks/bench_face.py {' '.join(sys.argv[1:])}`",
                    f"threads={args.threads}; ms per frame of the whole clip (45 frames), "
                    f"median of the repeats; other processes took {others:.0%} of the CPU meanwhile.",
                    "",
                ]
                tmp_out = args.out.with_suffix(".tmp")
                tmp_out.write_text("\n".join(head + lines) + "\n", encoding="utf-8")
                tmp_out.replace(args.out)
            return
        face_prep, centre_prep = VisionPrep(crop="face"), VisionPrep(crop="center")
        print(f"threads={args.threads} repeat={args.repeat}")
        print(
            f"{'frame':<15} {'faces':>5} {'detect ms':>10} {'p90':>7} {'crop ms':>8}"
            f" {'face prep ms':>13} {'centre prep ms':>15}"
            + (f" {'facenet-pytorch ms':>19}" if reference is not None else "")
        )
        for name, rgb in frames().items():
            boxes, probs = detector.detect(rgb)
            median, p90 = timed(partial(detector.detect, rgb), args.repeat)
            k = choose_face(boxes, probs)
            crop = (
                f"{timed(partial(crop_face, rgb, boxes[k]), args.repeat)[0]:8.2f}"
                if k is not None
                else f"{'-':>8}"
            )
            prep_ms, _ = timed(partial(vision_squares, [rgb], face_prep, detector, FaceTrack()), args.repeat)
            centre_ms, _ = timed(partial(vision_squares, [rgb], centre_prep), args.repeat)
            line = (
                f"{name:<15} {len(boxes):>5} {median:10.1f} {p90:7.1f} {crop}"
                f" {prep_ms:13.1f} {centre_ms:15.2f}"
            )
            if reference is not None:
                ref_ms, _ = timed(partial(reference.detect, rgb), max(3, args.repeat // 5))
                line += f" {ref_ms:19.1f}"
            print(line)


class VisionFeatures:
    """The vision features of face crops through a pack's vision encoder (int8 file, else fp32)."""

    def __init__(self, pack: Path, threads: int) -> None:
        from msa_runtime.engine.sessions import make_session
        from msa_runtime.pack import load_manifest

        manifest = load_manifest(pack, encoder_files=False)
        self.prep = manifest.vision_prep()
        files = manifest.encoders["vision"].files
        name = files.get("int8") or files["fp32"]
        self.session = make_session(pack / name, "cpu", threads=threads)
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name

    def __call__(self, frames: list[np.ndarray], boxes: list[np.ndarray | None]) -> np.ndarray:
        from msa_runtime.preprocess import center_square, normalize_images

        size = self.prep.image_size
        squares = np.stack(
            [
                center_square(crop_face(f, b, 256, 0) if b is not None else f, size)
                for f, b in zip(frames, boxes)
            ]
        )
        x = normalize_images(squares, self.prep)
        out = [self.session.run([self.output], {self.input: x[i : i + 15]})[0] for i in range(0, len(x), 15)]
        return np.concatenate(out).astype(np.float64).reshape(len(x), -1)


def _cosine(a: np.ndarray, b: np.ndarray) -> str:
    return f"{float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean()):.4f}"


def track_table(
    detector: FaceDetector, repeat: int, cosine: Path | None = None, threads: int = 2
) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from media_factory import moving_face_frames

    from msa_runtime.face.cascade import box_iou
    from msa_runtime.face.track import FaceTrack, TrackOptions, locate_face

    features = VisionFeatures(cosine, threads) if cosine is not None else None
    lines = [
        "| clip | speed px/frame | per-frame detection ms/frame | tracked ms/frame | speed-up |"
        " full detections | mean IoU to per-frame | detector's own (1 px shift) |"
        + (" feature cosine to per-frame | detector's own (1 px shift) |" if features else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if features else ""),
    ]
    for size in ((640, 360), (1280, 720)):
        for speed in (0.0, 6.0, 12.0, 24.0):
            scale = size[0] / 640
            frames = moving_face_frames(45, size=size, speed=speed * scale, zoom=0.1)

            def run(
                options: TrackOptions, max_side: int, clip: list[np.ndarray] = frames
            ) -> tuple[list[np.ndarray | None], FaceTrack]:
                track = FaceTrack()
                return [locate_face(f, detector, track, options, max_side) for f in clip], track

            before_ms, _ = timed(partial(run, TrackOptions(redetect=1), 0), max(1, repeat // 10))
            after_ms, _ = timed(partial(run, TrackOptions(), 640), max(1, repeat // 10))
            reference, _ = run(TrackOptions(redetect=1), 0)
            tracked, track = run(TrackOptions(), 640)
            moved = [np.roll(f, (1, 1), axis=(0, 1)) for f in frames]
            shifted, _ = run(TrackOptions(redetect=1), 0, moved)
            shifted_back = [None if b is None else b - 1.0 for b in shifted]

            def iou(a: list[np.ndarray | None], b: list[np.ndarray | None]) -> str:
                pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
                if not pairs:
                    return "-"
                return f"{np.mean([box_iou(x, y[None])[0] for x, y in pairs]):.3f}"

            n = len(frames)
            line = (
                f"| {size[0]}x{size[1]} | {speed * scale:g} | {before_ms / n:.1f} | "
                f"{after_ms / n:.1f} | {before_ms / after_ms:.1f}x | {track.detections} "
                f"of {n} | {iou(tracked, reference)} | {iou(shifted_back, reference)} |"
            )
            if features is not None:
                want = features(frames, reference)
                line += (
                    f" {_cosine(features(frames, tracked), want)} |"
                    f" {_cosine(features(frames, shifted_back), want)} |"
                )
            lines.append(line)
            print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    main()
