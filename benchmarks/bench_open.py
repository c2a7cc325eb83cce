"""What opening a local clip once saves in ``Analyzer.predict``: the old path (``media.probe`` to
read the duration, then ``media.decode`` opening the file again) against the new one
(``media.open_file``, then ``decode`` on the open container), on generated clips, alternating.

    python benchmarks/bench_open.py [--repeat 30]

Prints, per clip, the median ms of each path, the saving and the saving's share of the whole
decode. The encoders, which dominate ``predict``, are not part of it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from media_factory import make_clip

from msa_runtime import media

CLIPS = {  # name: make_clip arguments (5 s each)
    "mp4 640x480 + AAC 44.1 kHz stereo": {"suffix": ".mp4", "size": (640, 480)},
    "webm 640x480 + Opus 48 kHz stereo": {"suffix": ".webm", "size": (640, 480)},
    "wav 44.1 kHz stereo": {"suffix": ".wav"},
    "wav 16 kHz mono": {"suffix": ".wav", "sample_rate": 16000, "channels": 1},
}


def _old(path: Path) -> None:
    media.probe(path)
    media.decode(path, fps=3, sample_rate=16000)


def _new(path: Path) -> None:
    with media.open_file(path) as opened:
        media.decode(opened, fps=3, sample_rate=16000)


def _ms(fn: Callable[[Path], None], path: Path) -> float:
    t0 = time.perf_counter()
    fn(path)
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores here: others' work shows in it)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in CLIPS.items():
            kwargs = dict(spec)
            path = make_clip(Path(tmp) / f"clip{len(name)}{kwargs.pop('suffix')}", duration=5.0, **kwargs)
            old: list[float] = []
            new: list[float] = []
            for _ in range(args.repeat):  # alternating, so drift hits both alike
                old.append(_ms(_old, path))
                new.append(_ms(_new, path))
            a, b = statistics.median(old), statistics.median(new)
            saved = f"saved {a - b:6.2f} ms ({(a - b) / a:.0%})"
            print(f"{name:36s} probe+decode {a:7.2f} ms  open once {b:7.2f} ms  {saved}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
