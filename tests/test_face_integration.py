"""Face crop through the whole product: export, runtime (files, arrays, streams), training cache.

A small card (the tiny preset with ``crop = "face"``) is exported once per module; it carries the
MTCNN face detector exported from the installed facenet-pytorch wheel. Clips are generated at
test time with PyAV: frames with a real face (scikit-image's public-domain astronaut portrait,
read at test time) and frames of noise. Tests skip, saying why, when facenet-pytorch, torch or
scikit-image are missing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import av
import numpy as np
import pytest
from click.testing import CliRunner

from msa_runtime import Analyzer, InputError, PackError, media
from msa_runtime.cli.run import main as cli_main
from msa_runtime.face.cascade import FACE_FILES
from msa_runtime.pack import MANIFEST, face_detector_files, load_manifest, sha256_file, write_manifest
from msa_runtime.preprocess import FaceTrack, center_square, face_note, vision_squares

pytestmark = pytest.mark.filterwarnings("ignore:pack .* untrained fusion head:UserWarning")

ROOT = Path(__file__).resolve().parent.parent


def _missing() -> str | None:
    for module, hint in (
        ("torch", "torch (the export side)"),
        (
            "facenet_pytorch",
            "facenet-pytorch (the MTCNN weights): pip install --no-deps facenet-pytorch",
        ),
    ):
        if importlib.util.find_spec(module) is None:
            return f"{hint} is not installed"
    return None


MISSING = _missing()


def _astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data", reason="scikit-image not installed (test portrait)")
    return np.asarray(data.astronaut())


def _face_frames(count: int) -> list[np.ndarray]:
    """640x480 frames with the astronaut's face drifting slowly to the right."""
    face = _astronaut()
    frames = []
    for i in range(count):
        canvas = np.full((480, 640, 3), 90, dtype=np.uint8)
        left = 32 + (i * 2) % 64
        canvas[:, left : left + 512] = face[16:496]
        frames.append(canvas)
    return frames


def _noise_frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(count)]


def _write_mp4(path: Path, frames: Sequence[np.ndarray], fps: int = 15) -> Path:
    """An H.264 (or MPEG-4) mp4 of the frames, video only."""
    codec = next(c for c in ("libx264", "h264", "mpeg4") if _has_encoder(c))
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream: Any = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = (ROOT / "export/msa_export/presets/cards/tiny.toml").read_text(encoding="utf-8")
    assert 'crop = "center"' in text
    text = text.replace('name = "tiny"', 'name = "tiny-face"').replace('crop = "center"', 'crop = "face"')
    card = tmp_path_factory.mktemp("cards") / "tiny-face.toml"
    card.write_text(text, encoding="utf-8")
    return card


@pytest.fixture(scope="module")
def face_pack(face_card: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if MISSING is not None:
        pytest.skip(MISSING)
    from msa_export.pack.build import build_pack
    from msa_export.presets.registry import load_card

    out = tmp_path_factory.mktemp("packs") / "tiny-face"
    messages: list[str] = []
    build_pack(load_card(face_card), out, precisions=("int8", "fp32"), progress=messages.append)
    assert any(m.startswith("face detector: exporting") for m in messages), messages
    assert any("stages validated" in m for m in messages), messages
    return out


@pytest.fixture(scope="module")
def an(face_pack: Path) -> Iterator[Analyzer]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analyzer = Analyzer(face_pack, threads=2)
    yield analyzer
    analyzer.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("face-clips")
    return {
        "face": _write_mp4(root / "face.mp4", _face_frames(30)),  # 2 s: 6 frames at 3 fps
        "long_face": _write_mp4(root / "long_face.mp4", _face_frames(75)),  # 5 s
        "noise": _write_mp4(root / "noise.mp4", _noise_frames(30)),
        "tiny": _write_mp4(root / "tiny.mp4", [np.full((16, 16, 3), 128, np.uint8)] * 15),
    }


# -- export --------------------------------------------------------------------------------


def test_pack_carries_the_detector_with_hashes(face_pack: Path) -> None:
    manifest = load_manifest(face_pack)  # verifies every sha256
    raw = json.loads((face_pack / MANIFEST).read_text(encoding="utf-8"))
    assert raw["encoders"]["vision"]["preprocess"]["crop"] == "face"
    entry = raw["face_detector"]
    assert entry == manifest.face_detector and entry["kind"] == "mtcnn"
    assert entry["thresholds"] == [0.6, 0.7, 0.7] and entry["min_face_size"] == 20
    names = face_detector_files(manifest)
    assert sorted(names) == sorted(FACE_FILES.values())
    for name in names:
        assert manifest.files[name]["sha256"] == sha256_file(face_pack / name)
        assert manifest.files[name]["bytes"] == (face_pack / name).stat().st_size
    checked = {v["file"]: v for v in manifest.validation if v["file"] in names}
    assert set(checked) == set(names)
    assert all(v["max_abs"] <= 1e-4 for v in checked.values())
    assert "face_detector" not in manifest.extras


def test_center_packs_have_no_detector(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from msa_export.pack.build import needs_face_detector
    from msa_export.presets.registry import get_preset

    assert not needs_face_detector(get_preset("tiny"))
    assert not needs_face_detector(get_preset("edge"))
    assert needs_face_detector(get_preset("ando2022-mosi"))
    assert needs_face_detector(get_preset("ando2022-mosei"))


def test_export_without_facenet_fails_before_the_encoders(
    face_card: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    import sys

    from msa_export.models.face import FaceExportError
    from msa_export.pack.build import build_pack
    from msa_export.presets.registry import load_card

    for name in [m for m in sys.modules if m.startswith("facenet_pytorch")] + ["facenet_pytorch"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    messages: list[str] = []
    with pytest.raises(FaceExportError, match="pip install --no-deps facenet-pytorch"):
        build_pack(load_card(face_card), tmp_path / "pack", progress=messages.append)
    assert not any(m.startswith(("text:", "audio:", "vision:")) for m in messages), messages
    assert not (tmp_path / "pack").exists()
    assert not list(tmp_path.glob(".pack.partial-*"))


# -- runtime -------------------------------------------------------------------------------


def test_clip_with_a_face_is_face_cropped(an: Analyzer, clips: dict[str, Path]) -> None:
    p = an.predict(clips["face"])
    assert p.modalities == ("vision",) and np.isfinite(p.score)
    assert not any(n.startswith("face not found") for n in p.notes), p.notes
    assert p.timings_ms["face"] > 0 and "vision" in p.timings_ms
    # the encoder saw the face crop, not the centre of the frame
    clip = media.decode(clips["face"], fps=an.prep("vision").fps, sample_rate=None)
    assert len(clip.frames) == 6
    track = FaceTrack()
    squares, found = vision_squares(clip.frames, an.prep("vision"), an.face_detector, track)
    assert found is not None and found.all() and track.fallbacks == 0
    assert track.detections == 1 and track.tracked == 5 and track.previous is not None
    size = an.prep("vision").image_size
    assert squares.shape == (6, size, size, 3)
    centre = center_square(clip.frames[0], size)
    assert np.mean(np.abs(squares[0].astype(float) - centre)) > 10
    # the tracked face follows the astronaut: it lies within her part of the frame
    x1, y1, x2, y2 = track.previous
    assert 32 < x1 < x2 < 640 - 32 and 0 <= y1 < y2 <= 480
    features, _ = an.encode_frames(clip.frames)
    assert features.shape == (6, an.manifest.encoders["vision"].hidden_size)


def test_noise_clip_falls_back_to_the_centre_crop(an: Analyzer, clips: dict[str, Path]) -> None:
    p = an.predict(clips["noise"])
    assert "face not found in 6 of 6 frames: centre crop used" in p.notes, p.notes
    assert p.to_dict()["notes"][-1].startswith("face not found")
    result = CliRunner().invoke(cli_main, ["--pack", str(an.folder), str(clips["noise"]), "--format", "json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)[0]
    assert "face not found in 6 of 6 frames: centre crop used" in record["notes"]
    assert record["timings_ms"]["face"] > 0
    clip = media.decode(clips["noise"], fps=3.0, sample_rate=None)
    squares, found = vision_squares(clip.frames, an.prep("vision"), an.face_detector)
    assert found is not None and not found.any()
    size = an.prep("vision").image_size
    expected = np.stack([center_square(f, size) for f in clip.frames])
    np.testing.assert_array_equal(squares, expected)


def test_mixed_frames_note_and_arrays(an: Analyzer) -> None:
    frames = _face_frames(3) + [np.zeros((480, 640, 3), np.uint8)]
    p = an.predict_arrays(frames=frames)
    assert "face not found in 1 of 4 frames: centre crop used" in p.notes
    assert face_note(np.array([True, True])) is None and face_note(None) is None


def test_face_crop_preset_without_detector_is_a_pack_error(face_pack: Path, tmp_path: Path) -> None:
    broken = tmp_path / "no-detector"
    shutil.copytree(face_pack, broken)
    data = json.loads((broken / MANIFEST).read_text(encoding="utf-8"))
    del data["face_detector"]
    for name in FACE_FILES.values():
        del data["files"][name]
        (broken / name).unlink()
    write_manifest(broken, data)
    with pytest.raises(PackError, match="expects face crops.*has no face detector") as info:
        Analyzer(broken)
    assert "\n" not in str(info.value)
    result = CliRunner().invoke(cli_main, ["--pack", str(broken), "--text", "hello"])
    assert result.exit_code == 2
    assert "has no face detector" in result.output and "Traceback" not in result.output


def test_detector_files_must_be_hashed_and_present(face_pack: Path, tmp_path: Path) -> None:
    unlisted = tmp_path / "unlisted"
    shutil.copytree(face_pack, unlisted)
    data = json.loads((unlisted / MANIFEST).read_text(encoding="utf-8"))
    del data["files"]["face_rnet.onnx"]
    write_manifest(unlisted, data)
    with pytest.raises(PackError, match="face_rnet.onnx is not listed with a sha256"):
        load_manifest(unlisted)
    tampered = tmp_path / "tampered"
    shutil.copytree(face_pack, tampered)
    onet = tampered / "face_onet.onnx"
    blob = onet.read_bytes()
    onet.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))  # same size: only the sha256 can tell
    with pytest.raises(PackError, match="face_onet.onnx does not match its sha256"):
        Analyzer(tampered)


def test_too_small_frame_is_an_input_error(an: Analyzer, clips: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="too small for face detection") as info:
        an.predict_arrays(frames=[np.zeros((16, 24, 3), np.uint8)])
    assert "\n" not in str(info.value)
    result = CliRunner().invoke(cli_main, ["--pack", str(an.folder), str(clips["tiny"]), str(clips["face"])])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tiny.mp4" in errors[0], result.output
    assert "16x16 is too small for face detection" in errors[0]
    assert "Traceback" not in result.output
    assert "face.mp4" in result.output  # the batch went on to the next input


def test_stream_detects_each_frame_once_and_keeps_the_face(an: Analyzer, clips: dict[str, Path]) -> None:
    assert an.face_detector is not None
    calls: list[tuple[int, ...]] = []
    real = an.face_detector.detect_anchored

    def counting(rgb: np.ndarray, **kwargs: Any) -> Any:
        calls.append(rgb.shape)
        return real(rgb, **kwargs)

    with mock.patch.object(an.face_detector, "detect_anchored", side_effect=counting):
        windows = list(an.stream(clips["long_face"], window=2.0, hop=1.0))
    assert len(windows) >= 4
    # 5 s at 3 fps = 15 sampled frames, each in up to two windows, each cropped once: the full
    # cascade ran on frame 0 (face_redetect = 15: once per 15 frames) and where the drifting face
    # jumps back (the clip's motion wraps around), the others followed the face
    assert 2 <= len(calls) <= 4
    for w in windows:
        assert not any(n.startswith("face not found") for n in w.notes), w.notes
    assert any("face" in w.timings_ms for w in windows)
    with mock.patch.object(an.face_detector, "detect_anchored", side_effect=counting):
        noisy = list(an.stream(clips["noise"], window=1.0, hop=1.0))
    assert all(any(n.startswith("face not found in 3 of 3") for n in w.notes) for w in noisy)


# -- training ------------------------------------------------------------------------------


def test_training_cache_crops_like_the_runtime(
    an: Analyzer, face_card: Path, clips: dict[str, Path], tmp_path: Path
) -> None:
    import torch

    from msa_export.data.datasets import Sample
    from msa_export.presets.registry import load_card
    from msa_export.training.features import FACE_FOLDER, _Extractor, cache_key, extract_features

    preset = load_card(face_card)
    card = preset.encoders["vision"]
    centre = dataclasses.replace(card, prep=dataclasses.replace(card.prep, crop="center"))
    assert cache_key(card) != cache_key(centre)

    clip = media.decode(clips["face"], fps=card.prep.fps, sample_rate=None)
    blank = np.full_like(clip.frames[0], 90)
    frames = np.concatenate([clip.frames[:3], blank[None]])  # three faces, then none
    mixed = dataclasses.replace(clip, frames=frames, frame_times=clip.frame_times[:4])

    extractor = _Extractor(card, None, face_dir=tmp_path / FACE_FOLDER)
    seen: dict[str, np.ndarray] = {}
    model = extractor.model

    def capture(*args: Any, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        seen["training"] = pixel_values.numpy().copy()
        return model(*args, pixel_values=pixel_values, **kwargs)

    extractor.model = capture
    sample = Sample(id="a", text="", label=0.0, split="train", media=None, start=None, end=None)
    extractor(sample, mixed)
    assert extractor.frames == 4 and extractor.fallbacks == 1

    session = an.sessions["vision"]

    class Capture:
        def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> Any:
            seen["runtime"] = feeds["pixel_values"].copy()
            return session.run(names, feeds)

    with mock.patch.dict(an.sessions, {"vision": Capture()}):
        p = an.predict_arrays(frames=mixed.frames)
    assert "face not found in 1 of 4 frames: centre crop used" in p.notes
    np.testing.assert_array_equal(seen["training"], seen["runtime"])

    # the whole extraction: the detector is exported once into the cache and reused
    samples = [
        Sample(id="face", text="", label=0.0, split="train", media=clips["face"], start=None, end=None),
        Sample(
            id="noise",
            text="",
            label=0.0,
            split="train",
            media=clips["noise"],
            start=None,
            end=None,
        ),
    ]
    messages: list[str] = []
    report = extract_features(samples, preset, tmp_path, modalities=["vision"], progress=messages.append)
    assert not report.failed and report.extracted == 2
    assert report.face_frames == 12 and report.face_fallbacks == 6
    assert report.folders["vision"].name == cache_key(card)
    assert (tmp_path / FACE_FOLDER / "face_detector.json").is_file()
    assert not any("exporting the MTCNN face detector" in m for m in messages), messages
    assert any("face found in 6 of 12 frames" in m for m in messages), messages
