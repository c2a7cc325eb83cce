"""Make docs/img/stream-60s.png (and .html): a 60 s talk whose sentiment turns, scored as a
stream with the tour's trained pack, drawn by ``msa-run --plot``.

    python docs/img/make_stream_plot.py [--work /tmp/msa-plot] [--out docs/img]

Steps: train the tour's pack if ``WORK/tour/pack`` is missing (``python -m msa_export.tour``,
about 3 minutes on 2 cores); write ``WORK/turn.mp4`` (60 s) and ``WORK/turn.srt`` with the
synthetic dataset's generators (``msa_export.data.synthetic``/``synthetic_media``: the background
colour, the pitch and the words each carry a factor in {-1, 0, 1}), six 10 s segments whose
factors go from positive to negative and back; then run the ``msa-run`` command it prints
(the PNG) and draw the same records as HTML with :func:`msa_runtime.plot.plot_records`.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from msa_export.data.synthetic import make_text
from msa_export.data.synthetic_media import choose_codecs, make_audio, make_frames, write_clip
from msa_runtime.plot import plot_records, read_records

# (text, audio, video) factor per 10 s segment: positive, cooling, turning, negative, recovering.
SEGMENTS = ((1, 1, 1), (1, 1, 0), (0, -1, 0), (-1, -1, -1), (-1, -1, 0), (0, 1, 1))
SECONDS = 10.0
FPS, SIZE, RATE = 15, 128, 16000


def srt_time(t: float) -> str:
    ms = round(t * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def make_talk(folder: Path) -> tuple[Path, Path]:
    """``turn.mp4`` (or .mkv where FFmpeg has no H.264) and ``turn.srt``: two cues per segment."""
    rng = np.random.default_rng(60)
    codecs = choose_codecs()
    frames, waves, cues = [], [], []
    for i, (ft, fa, fv) in enumerate(SEGMENTS):
        frames += make_frames(fv, rng, duration=SECONDS, fps=FPS, size=SIZE)
        waves.append(make_audio(fa, rng, duration=SECONDS, sample_rate=RATE))
        half = SECONDS / 2
        cues += [(i * SECONDS + k * half, i * SECONDS + (k + 1) * half, make_text(ft, rng)) for k in range(2)]
    media = folder / f"turn.{codecs[0]}"
    write_clip(media, frames, np.concatenate(waves), fps=FPS, sample_rate=RATE, codecs=codecs)
    srt = folder / "turn.srt"
    blocks = [f"{n}\n{srt_time(a)} --> {srt_time(b)}\n{text}\n" for n, (a, b, text) in enumerate(cues, 1)]
    srt.write_text("\n".join(blocks), encoding="utf-8")
    return media, srt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/msa-plot"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    pack = args.work / "tour" / "pack"
    if not (pack / "manifest.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "msa_export.tour", "--out", str(args.work / "tour")], check=True
        )
    media, srt = make_talk(args.work)
    records = args.work / "stream-60s.jsonl"
    png = (args.out / "stream-60s.png").resolve()
    cmd = ["msa-run", media.name, "--pack", "tour/pack", "--transcript", srt.name, "--stream"]
    cmd += ["--providers", "cpu", "--format", "jsonl", "--plot", str(png)]
    print(f"$ cd {args.work} && {shlex.join(cmd)} > {records.name}", file=sys.stderr)
    cmd[0] = str(Path(sys.executable).parent / "msa-run")
    with open(records, "w", encoding="utf-8") as out:
        subprocess.run(cmd, check=True, stdout=out, cwd=args.work)
    # the same records as one self-contained HTML file, through the library
    plot_records(read_records(records), args.out / "stream-60s.html", title="a 60 s talk that turns")


if __name__ == "__main__":
    main()
