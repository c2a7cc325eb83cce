"""A small synthetic multimodal sentiment dataset whose label needs all three modalities.

Each clip gets three independent factors in ``{-1, 0, +1}``, one per modality:

- **text**: a sentence from a few fixed templates whose two adjectives come from a positive,
  neutral or negative word list (``"the movie was wonderful and really great"``). Nouns and
  templates are shared by all classes, so only the adjectives carry the factor. Every word is a
  single token of the ``bert-base-uncased`` vocabulary.
- **audio** (16 kHz mono): a harmonic tone whose *pitch* carries the factor (about 200 Hz, 500 Hz
  or 1250 Hz, +-5 % per clip), with a syllable-rate amplitude envelope and a little noise. The
  loudness is random per clip and carries nothing, so a model must read the pitch.
- **video** (128x128, 15 fps): the background colour carries the factor, in hue *and* brightness
  (dark blue, mid green, bright orange; +-12 per channel per clip), with a skin-coloured disc
  moving across the frame that carries nothing.

``label = text + audio + video + N(0, label_noise)``, clipped to ``[-3, 3]`` and rounded to two
decimals. Given one modality the best prediction of the label is that factor alone, which leaves
the other two factors as error (mean absolute error about 1.0); a model that reads all three
reaches the noise floor. The signals are global and strong (overall colour, pitch, distinct
words) so that even small randomly initialised encoders separate them.

The factors of every clip are balanced: each split cycles through the 27 factor combinations in
a shuffled order. The dataset is written in the CSV manifest form of
:mod:`msa_export.data.datasets` (``manifest.csv`` with ``id, media, text, label, split`` and
the extra columns ``text_factor, audio_factor, video_factor``), with the media under ``media/``
and the generation parameters in ``synthetic.json``. Output is deterministic for a given seed
(same manifest, same decoded frames and samples).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msa_runtime.errors import InputError

from .datasets import DatasetError
from .synthetic_media import (
    AUDIO_PITCH_HZ,
    VIDEO_RGB,
    choose_codecs,
    make_audio,
    make_frames,
    write_clip,
)

FACTORS: tuple[int, ...] = (-1, 0, 1)

POSITIVE_WORDS: tuple[str, ...] = (
    "good",
    "great",
    "wonderful",
    "excellent",
    "amazing",
    "fantastic",
    "brilliant",
    "enjoyable",
    "beautiful",
    "perfect",
)
NEUTRAL_WORDS: tuple[str, ...] = (
    "ordinary",
    "average",
    "plain",
    "typical",
    "standard",
    "regular",
    "usual",
    "normal",
    "moderate",
    "common",
)
NEGATIVE_WORDS: tuple[str, ...] = (
    "bad",
    "terrible",
    "awful",
    "horrible",
    "boring",
    "disappointing",
    "dull",
    "annoying",
    "ugly",
    "poor",
)
WORDS: dict[int, tuple[str, ...]] = {-1: NEGATIVE_WORDS, 0: NEUTRAL_WORDS, 1: POSITIVE_WORDS}
NOUNS: tuple[str, ...] = ("movie", "film", "story", "acting", "ending", "plot", "music", "scene")
TEMPLATES: tuple[str, ...] = (
    "the {noun} was {a} and really {b}",
    "i think the {noun} is {a} and quite {b}",
    "honestly the {noun} felt {a} and so {b}",
    "what a {a} {noun} it was very {b}",
    "the {noun} is {a} i mean {b}",
)

SAMPLE_RATES: tuple[int, ...] = (16000, 22050, 24000, 32000, 44100, 48000)

MANIFEST_NAME = "manifest.csv"
INFO_NAME = "synthetic.json"
MANIFEST_COLUMNS: tuple[str, ...] = (
    "id",
    "media",
    "text",
    "label",
    "split",
    "text_factor",
    "audio_factor",
    "video_factor",
)

_SPLIT_INDEX = {"train": 0, "dev": 1, "test": 2}


def _factor_plan(n: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """``n`` (text, audio, video) factor triples cycling through all 27 in shuffled rounds."""
    combos = [(t, a, v) for t in FACTORS for a in FACTORS for v in FACTORS]
    plan: list[tuple[int, int, int]] = []
    while len(plan) < n:
        order = rng.permutation(len(combos))
        plan.extend(combos[int(i)] for i in order)
    return plan[:n]


def make_text(factor: int, rng: np.random.Generator) -> str:
    """A sentence whose two adjectives carry ``factor`` (see the module doc)."""
    words = WORDS[factor]
    a, b = rng.choice(len(words), size=2, replace=False)
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    noun = NOUNS[int(rng.integers(len(NOUNS)))]
    return template.format(noun=noun, a=words[int(a)], b=words[int(b)])


def _check_args(
    n_train: int, n_dev: int, n_test: int, duration: float, fps: int, size: int, rate: int
) -> None:
    for name, n in (("n_train", n_train), ("n_dev", n_dev), ("n_test", n_test)):
        if not isinstance(n, int) or n < 1:
            raise InputError(f"{name} is {n!r}: every split needs at least 1 clip")
    if not 0.5 <= duration <= 30.0:
        raise InputError(f"duration is {duration!r} s: choose between 0.5 and 30 seconds")
    if not 1 <= fps <= 60:
        raise InputError(f"fps is {fps!r}: choose between 1 and 60")
    if size % 2 or not 16 <= size <= 512:
        raise InputError(f"size is {size!r}: choose an even frame size between 16 and 512")
    if rate not in SAMPLE_RATES:
        raise InputError(f"sample_rate is {rate!r}: choose one of {', '.join(map(str, SAMPLE_RATES))}")


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} exists and is not a folder: choose a new output folder")
    if out.is_dir() and any(out.iterdir()):
        raise DatasetError(f"{out} already exists and is not empty: remove it or choose a new output folder")


@dataclass(frozen=True)
class _Params:
    """The generation parameters every clip of one dataset shares."""

    seed: int
    duration: float
    fps: int
    size: int
    sample_rate: int
    label_noise: float
    codecs: tuple[str, str, str]


def _clip_row(p: _Params, tmp: Path, split: str, i: int, factors: tuple[int, int, int]) -> dict[str, str]:
    """Write clip ``i`` of ``split`` under ``tmp/media`` and return its manifest row."""
    ft, fa, fv = factors
    clip_id = f"{split}_{i:04d}"
    # a generator per clip, seeded by split and index: its content depends only on the seed and its place
    rng = np.random.default_rng([p.seed, _SPLIT_INDEX[split], 1, i])
    text = make_text(ft, rng)
    wave = make_audio(fa, rng, duration=p.duration, sample_rate=p.sample_rate)
    frames = make_frames(fv, rng, duration=p.duration, fps=p.fps, size=p.size)
    noise = rng.normal(0.0, p.label_noise) if p.label_noise > 0 else 0.0
    label = float(np.clip(ft + fa + fv + noise, -3.0, 3.0))
    rel = f"media/{clip_id}.{p.codecs[0]}"
    write_clip(tmp / rel, frames, wave, fps=p.fps, sample_rate=p.sample_rate, codecs=p.codecs)
    return {
        "id": clip_id,
        "media": rel,
        "text": text,
        "label": f"{label:.2f}",
        "split": split,
        "text_factor": str(ft),
        "audio_factor": str(fa),
        "video_factor": str(fv),
    }


def _write_manifest(tmp: Path, rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (tmp / MANIFEST_NAME).write_text(buf.getvalue(), encoding="utf-8")


def _write_info(tmp: Path, p: _Params, counts: dict[str, int]) -> None:
    """``synthetic.json``: how the dataset was generated, so a reader can tell what each factor means."""
    info = {
        "generator": "msa_export.data.synthetic",
        "seed": p.seed,
        "counts": counts,
        "duration_s": p.duration,
        "fps": p.fps,
        "size": [p.size, p.size],
        "sample_rate": p.sample_rate,
        "label_noise": p.label_noise,
        "container": p.codecs[0],
        "video_codec": p.codecs[1],
        "audio_codec": p.codecs[2],
        "label": "clip(text_factor + audio_factor + video_factor + noise, -3, 3)",
        "audio_pitch_hz": {str(k): v for k, v in AUDIO_PITCH_HZ.items()},
        "video_rgb": {str(k): list(v) for k, v in VIDEO_RGB.items()},
        "words": {str(k): list(v) for k, v in WORDS.items()},
    }
    (tmp / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _move_into_place(tmp: Path, out: Path) -> None:
    _check_out_dir(out)  # it may have been filled while we worked
    if out.is_dir():
        out.rmdir()
    try:
        os.rename(tmp, out)
    except OSError as exc:
        raise DatasetError(
            f"cannot move the generated dataset into {out} ({exc.strerror or exc}): "
            "choose a new output folder"
        ) from exc


def make_synthetic_dataset(
    out_dir: str | os.PathLike[str],
    *,
    n_train: int = 135,
    n_dev: int = 27,
    n_test: int = 54,
    seed: int = 0,
    duration: float = 2.0,
    fps: int = 15,
    size: int = 128,
    sample_rate: int = 16000,
    label_noise: float = 0.1,
    codecs: tuple[str, str, str] | None = None,
) -> Path:
    """Write the synthetic dataset into ``out_dir`` and return the path of its manifest CSV.

    ``out_dir`` must not exist or be an empty folder (else :class:`DatasetError`); the dataset
    is built in a temporary folder beside it and renamed into place, so ``out_dir`` is either
    complete or absent. ``codecs`` forces a (container, video codec, audio codec) triple of
    :data:`~msa_export.data.synthetic_media.CODEC_CHOICES`; by default the first one
    available is used (h264/aac in ``.mp4``).
    The defaults (216 clips of 2 s, a multiple of the 27 factor combinations per split) take
    about 20 s on two busy cores (mostly encoding).
    """
    _check_args(n_train, n_dev, n_test, duration, fps, size, sample_rate)
    if not label_noise >= 0.0:
        raise InputError(f"label_noise is {label_noise!r}: use a non-negative std")
    out = Path(out_dir)
    _check_out_dir(out)
    chosen = codecs if codecs is not None else choose_codecs()
    params = _Params(seed, duration, fps, size, sample_rate, label_noise, chosen)
    counts = {"train": n_train, "dev": n_dev, "test": n_test}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "media").mkdir()
        rows: list[dict[str, str]] = []
        for split, n in counts.items():
            plan = _factor_plan(n, np.random.default_rng([seed, _SPLIT_INDEX[split], 0]))
            rows += [_clip_row(params, tmp, split, i, factors) for i, factors in enumerate(plan)]
        _write_manifest(tmp, rows)
        _write_info(tmp, params, counts)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / MANIFEST_NAME
