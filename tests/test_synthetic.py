"""Tests of msa_export.data.synthetic: decodable media, intended label dependence,
determinism, atomic writing."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from msa_export.data import synthetic
from msa_export.data.datasets import DatasetError, load_dataset
from msa_export.data.synthetic import (
    AUDIO_PITCH_HZ,
    VIDEO_RGB,
    WORDS,
    choose_codecs,
    make_synthetic_dataset,
)
from msa_runtime.errors import InputError

RATE = 16000


def read_rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def decode(path: Path) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64], int]:
    """RGB frames, mono audio as floats in [-1, 1], audio sample rate."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(np.uint8)
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].rate
        chunks = []
        for frame in container.decode(audio=0):
            data = frame.to_ndarray().reshape(-1)
            if data.dtype == np.int16:
                chunks.append(data.astype(np.float64) / 32768.0)
            else:
                chunks.append(data.astype(np.float64))
    return frames, np.concatenate(chunks), rate


def audio_factor(wave: npt.NDArray[np.float64], rate: int) -> int:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    peak = float(np.fft.rfftfreq(wave.size, 1.0 / rate)[int(spectrum.argmax())])
    return min(AUDIO_PITCH_HZ, key=lambda f: abs(np.log(AUDIO_PITCH_HZ[f] / peak)))


def video_factor(frames: npt.NDArray[np.uint8]) -> int:
    colour = np.median(frames.reshape(-1, 3).astype(np.float64), axis=0)
    return min(VIDEO_RGB, key=lambda f: float(np.sum((np.array(VIDEO_RGB[f]) - colour) ** 2)))


def text_factor(text: str) -> int:
    votes = {f: sum(w in WORDS[f] for w in text.split()) for f in WORDS}
    best = max(votes, key=lambda f: votes[f])
    return best


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "synth"
    return make_synthetic_dataset(out, n_train=27, n_dev=3, n_test=3, seed=1, duration=0.8)


def test_layout_and_loader(small: Path) -> None:
    root = small.parent
    assert small.name == "manifest.csv"
    assert sorted(p.name for p in root.iterdir()) == ["manifest.csv", "media", "synthetic.json"]
    assert not list(root.parent.glob(".synth.tmp-*"))  # temp folder renamed away
    ds = load_dataset(small)
    assert ds.form == "manifest" and ds.name == "synth"
    assert ds.counts() == {"train": 27, "dev": 3, "test": 3}
    assert ds.has_media and ds.missing_media == ()
    assert all(s.media is not None and s.media.parent == root / "media" for s in ds.samples)
    info = json.loads((root / "synthetic.json").read_text())
    assert info["seed"] == 1 and info["counts"] == {"train": 27, "dev": 3, "test": 3}


def test_media_decode_and_carry_their_factor(small: Path) -> None:
    root = small.parent
    container = choose_codecs()[0]
    for row in read_rows(small):
        path = root / row["media"]
        assert path.suffix == f".{container}"
        frames, wave, rate = decode(path)
        assert rate == RATE
        assert frames.shape[1:] == (128, 128, 3)
        assert 11 <= frames.shape[0] <= 13  # 0.8 s at 15 fps
        assert wave.size >= int(0.8 * RATE)
        assert audio_factor(wave, rate) == int(row["audio_factor"]), row["id"]
        assert video_factor(frames) == int(row["video_factor"]), row["id"]
        assert text_factor(row["text"]) == int(row["text_factor"]), row["id"]


def test_label_is_sum_of_factors_and_needs_all_modalities(small: Path) -> None:
    rows = read_rows(small)
    factors = np.array(
        [[int(r["text_factor"]), int(r["audio_factor"]), int(r["video_factor"])] for r in rows]
    )
    labels = np.array([float(r["label"]) for r in rows])
    assert np.all(np.abs(labels - np.clip(factors.sum(axis=1), -3, 3)) < 0.5)
    assert np.all((labels >= -3) & (labels <= 3))
    train = factors[:27]
    # the 27 training clips are exactly the 27 factor combinations
    assert len({tuple(f) for f in train}) == 27
    # the best prediction from any single factor (its conditional mean) leaves a large error,
    # all three together leave only the noise
    for m in range(3):
        means = {v: labels[:27][train[:, m] == v].mean() for v in (-1, 0, 1)}
        mae_single = np.mean(np.abs(labels[:27] - np.array([means[v] for v in train[:, m]])))
        assert mae_single > 0.8
    assert np.mean(np.abs(labels - factors.sum(axis=1))) < 0.2


def test_deterministic(tmp_path: Path) -> None:
    a = make_synthetic_dataset(tmp_path / "a", n_train=2, n_dev=1, n_test=1, seed=5, duration=0.5)
    b = make_synthetic_dataset(tmp_path / "b", n_train=2, n_dev=1, n_test=1, seed=5, duration=0.5)
    c = make_synthetic_dataset(tmp_path / "c", n_train=2, n_dev=1, n_test=1, seed=6, duration=0.5)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    for row in read_rows(a):
        fa, wa, _ = decode(a.parent / row["media"])
        fb, wb, _ = decode(b.parent / row["media"])
        assert np.array_equal(fa, fb) and np.array_equal(wa, wb)


def test_fallback_codecs(tmp_path: Path) -> None:
    assert choose_codecs({"mpeg4", "mp2"}) == ("mkv", "mpeg4", "mp2")
    assert choose_codecs({"mpeg4", "pcm_s16le"}) == ("mkv", "mpeg4", "pcm_s16le")
    with pytest.raises(InputError):
        choose_codecs(set())
    for codecs in (("mkv", "mpeg4", "mp2"), ("mkv", "mpeg4", "pcm_s16le")):
        out = tmp_path / codecs[2]
        manifest = make_synthetic_dataset(out, n_train=1, n_dev=1, n_test=1, duration=0.5, codecs=codecs)
        for row in read_rows(manifest):
            assert row["media"].endswith(".mkv")
            frames, wave, rate = decode(out / row["media"])
            assert rate == RATE and frames.shape[1:] == (128, 128, 3)
            assert audio_factor(wave, rate) == int(row["audio_factor"])
            assert video_factor(frames) == int(row["video_factor"])


def test_refuses_non_empty_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        make_synthetic_dataset(out, n_train=1, n_dev=1, n_test=1, duration=0.5)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        make_synthetic_dataset(tmp_path / "file", n_train=1, n_dev=1, n_test=1, duration=0.5)


def test_accepts_empty_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    manifest = make_synthetic_dataset(out, n_train=1, n_dev=1, n_test=1, duration=0.5)
    assert manifest == out / "manifest.csv" and manifest.is_file()


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    def broken(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "write_clip", broken)
    with pytest.raises(RuntimeError):
        make_synthetic_dataset(tmp_path / "out", n_train=2, n_dev=1, n_test=1, duration=0.5)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"n_dev": 0}, {"duration": 0.1}, {"fps": 0}, {"size": 15}, {"sample_rate": 8000}],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        make_synthetic_dataset(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_text_uses_distinct_words() -> None:
    rng = np.random.default_rng(0)
    for factor in (-1, 0, 1):
        text = synthetic.make_text(factor, rng)
        words = text.split()
        own = [w for w in words if w in WORDS[factor]]
        assert len(own) == 2 and own[0] != own[1]
        others = [w for f in WORDS if f != factor for w in WORDS[f]]
        assert not any(w in others for w in words)
    assert not set(WORDS[-1]) & set(WORDS[0]) and not set(WORDS[0]) & set(WORDS[1])


def test_manifest_hash_is_stable_across_calls(tmp_path: Path) -> None:
    # guards against hidden global random state: two different seeds interleaved
    m1 = make_synthetic_dataset(tmp_path / "1", n_train=1, n_dev=1, n_test=1, seed=3, duration=0.5)
    make_synthetic_dataset(tmp_path / "2", n_train=1, n_dev=1, n_test=1, seed=4, duration=0.5)
    m3 = make_synthetic_dataset(tmp_path / "3", n_train=1, n_dev=1, n_test=1, seed=3, duration=0.5)
    assert hashlib.sha256(m1.read_bytes()).digest() == hashlib.sha256(m3.read_bytes()).digest()
