"""The training feature cache is keyed by what went into each item, not by clip id only."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from msa_export.data.datasets import load_dataset  # noqa: E402
from msa_export.presets.registry import get_preset  # noqa: E402
from msa_export.training import features as fc  # noqa: E402


def _labels(path: Path, texts: list[str]) -> Path:
    rows = ["id,text,label,mode"]
    splits = ["train", "dev", "test"]
    rows += [f"clip{i},{t},0.5,{splits[i % 3]}" for i, t in enumerate(texts)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _text_feats(csv: Path, cache: Path) -> list[np.ndarray]:
    ds = load_dataset(csv)
    preset = get_preset("tiny")
    report = fc.extract_features(ds.samples, preset, cache, modalities=["text"])
    feats, _ = fc.load_layer(report.folders["text"], ds.samples, 2, "text")
    assert all(f is not None for f in feats)
    return [np.asarray(f) for f in feats if f is not None]


def test_same_ids_other_texts_get_their_own_features(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _text_feats(_labels(tmp_path / "a.csv", ["i loved it", "awful film", "so so"]), cache)
    second = _text_feats(_labels(tmp_path / "b.csv", ["terrible acting", "what a delight", "fine"]), cache)
    for a, b in zip(first, second, strict=True):
        assert a.shape != b.shape or not np.allclose(a, b)
    # the first file again: every item reused, the same features as the first time
    ds = load_dataset(tmp_path / "a.csv")
    report = fc.extract_features(ds.samples, get_preset("tiny"), cache, modalities=["text"])
    assert report.extracted == 0 and report.reused == len(ds.samples)
    again = _text_feats(tmp_path / "a.csv", cache)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    folder = report.folders["text"]
    assert not list(folder.glob(".*tmp*"))  # atomic writes leave no temporary files


def _wav(path: Path, freq: float, seconds: float = 1.0) -> Path:
    rate = 16000
    t = np.arange(int(rate * seconds)) / rate
    pcm = (0.4 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes(pcm.tobytes())
    return path


def test_a_replaced_media_file_is_extracted_again(tmp_path: Path) -> None:
    media_dir = tmp_path / "media"
    media_dir.mkdir()
    for i in range(3):
        _wav(media_dir / f"c{i}.wav", 220.0 * (i + 1))
    csv = tmp_path / "manifest.csv"
    csv.write_text(
        "media,label,split\nmedia/c0.wav,1,train\nmedia/c1.wav,0,dev\nmedia/c2.wav,-1,test\n",
        encoding="utf-8",
    )
    ds = load_dataset(csv)
    preset = get_preset("tiny")
    cache = tmp_path / "cache"
    report = fc.extract_features(ds.samples, preset, cache, modalities=["audio"])
    before, _ = fc.load_layer(report.folders["audio"], ds.samples, None, "audio")
    # same name, other content (and another modification time)
    _wav(media_dir / "c0.wav", 1500.0, seconds=1.5)
    st = (media_dir / "c0.wav").stat()
    os.utime(media_dir / "c0.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    report = fc.extract_features(ds.samples, preset, cache, modalities=["audio"])
    assert report.extracted == 1 and report.reused == 2
    after, _ = fc.load_layer(report.folders["audio"], ds.samples, None, "audio")
    assert before[0] is not None and after[0] is not None
    assert before[0].shape != after[0].shape
    np.testing.assert_array_equal(np.asarray(before[1]), np.asarray(after[1]))


def test_item_key_covers_text_media_and_range(tmp_path: Path) -> None:
    from msa_export.data.datasets import Sample

    media = _wav(tmp_path / "x.wav", 440.0)
    base = Sample("a", "hello", 0.0, "train", media, None, None)
    assert fc.item_key(base, "text") != fc.item_key(
        Sample("a", "hullo", 0.0, "train", media, None, None), "text"
    )
    assert fc.item_key(base, "audio") == fc.item_key(
        Sample("a", "hullo", 0.0, "train", media, None, None), "audio"
    )
    assert fc.item_key(base, "audio") != fc.item_key(
        Sample("a", "hello", 0.0, "train", media, 0.2, None), "audio"
    )
    assert fc.item_key(base, "audio") != fc.item_key(base, "vision")
