"""Device records (``pcm+jpeg``, :mod:`msa_runtime.media.records`): raw PCM and JPEG frames timed
by the sender decode onto the stream's grids, score like the media they came from, and every
malformed record is a one-line :class:`MediaError` naming it."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from media_factory import make_clip

from msa_runtime import media
from msa_runtime.errors import InputError, MediaError
from msa_runtime.media.records import HEADER, MAX_RECORD_BYTES, JpegEncoder, audio_record, frame_record

RATE = 16000
MSA_RUN = Path(sys.executable).with_name("msa-run")


def colour(i: int) -> np.ndarray:
    img = np.zeros((48, 64, 3), np.uint8)
    img[..., 0], img[..., 1] = 40 * (i % 6), 200 - 30 * (i % 6)
    return img


def items(data: bytes, **kw: Any) -> list[Any]:
    return list(media.iter_records(io.BytesIO(data), **{"fps": 2.0, "sample_rate": RATE, **kw}))


def test_audio_and_frames_land_on_the_grids() -> None:
    jpeg = JpegEncoder()
    tone = (np.sin(np.arange(3 * RATE) / RATE * 2 * np.pi * 220) * 9000).astype("<i2")
    data = b"".join(
        [frame_record(jpeg(colour(i)), i * 0.5) for i in range(6)]
        + [audio_record(tone[a : a + 4000], a / RATE) for a in range(0, tone.size, 4000)]
    )
    got = items(data)
    chunks = [x for x in got if isinstance(x, media.AudioChunk)]
    frames = [x for x in got if isinstance(x, media.Frame)]
    assert [c.start for c in chunks] == [0.0, 1.0, 2.0]
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), tone / 32768)
    assert [f.time for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    for i, f in enumerate(frames):  # JPEG at quality 2 keeps flat colours within a few levels
        assert np.abs(f.rgb.astype(int) - colour(i)).mean() < 4, i
    only_audio = items(data, fps=None)
    assert all(isinstance(x, media.AudioChunk) for x in only_audio) and len(only_audio) == 3


def test_lost_audio_is_filled_with_silence_and_late_audio_is_not_cut() -> None:
    second = np.full(RATE, 1000, "<i2")
    data = audio_record(second, 0.0) + audio_record(second, 2.0) + audio_record(second, 2.95)
    audio = np.concatenate([c.samples for c in items(data, fps=None)])
    assert audio.size == 4 * RATE  # 1 s, 1 s of silence, 1 s, and 1 s placed right after (0.05 s early)
    assert not audio[RATE : 2 * RATE].any() and audio[2 * RATE :].all()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"X" + bytes(12), "record 0: kind byte 58 is neither A (audio) nor V (video)"),
        (b"A" + bytes(5), "record 0: the stream ended inside a record header (6 of 13 bytes)"),
        (HEADER.pack(b"A", 0.0, 100) + bytes(10), "the stream ended inside a record (10 of 100 bytes)"),
        (HEADER.pack(b"A", -1.0, 2) + bytes(2), "record 0: time -1.0 is not seconds since the stream began"),
        (HEADER.pack(b"A", float("nan"), 2) + bytes(2), "time nan is not seconds"),
        (HEADER.pack(b"V", 0.0, MAX_RECORD_BYTES + 1), "a payload of 8,388,609 bytes is over the limit"),
        (audio_record(b"\x00" * 3, 0.0), "an audio record of 3 bytes: 16-bit PCM has whole 2-byte samples"),
        (audio_record(b"\x00" * 2, 31.0), "audio jumps from 0.00 s to 31.00 s"),
        (frame_record(b"GIF89a", 0.0), "the frame at 0.000 s is not a JPEG image (first bytes 47 49 46 38)"),
    ],
)
def test_malformed_records_are_named(data: bytes, message: str) -> None:
    with pytest.raises(MediaError, match="pcm\\+jpeg, record 0: ") as info:
        items(data)
    assert message in str(info.value)


def test_frames_must_not_go_back_nor_declare_too_many_pixels() -> None:
    jpeg = JpegEncoder()(colour(1))
    with pytest.raises(MediaError, match="record 1: a frame at 0.500 s after one at 1.000 s"):
        items(frame_record(jpeg, 1.0) + frame_record(jpeg, 0.5))
    sof = jpeg.index(b"\xff\xc0")  # declare 20000 x 20000: refused before the decoder allocates
    huge = jpeg[: sof + 5] + struct.pack(">HH", 20000, 20000) + jpeg[sof + 9 :]
    with pytest.raises(MediaError, match="20000x20000 video frames .* over the limit"):
        items(frame_record(huge, 0.0))
    scan = jpeg.index(b"\xff\xda") + 20  # the headers intact, the compressed picture zeroed
    broken = jpeg[:scan] + bytes(len(jpeg) - scan)
    got = []
    try:  # FFmpeg conceals some damage: a broken image either decodes to a frame or is named
        got = items(frame_record(broken, 0.0))
    except MediaError as exc:
        assert "the JPEG frame at 0.000 s does not decode" in str(exc)
    assert len(got) <= 1


@pytest.fixture(scope="module")
def records_of_clip(tiny_pack: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Path]:
    """The tiny pack, a 7 s clip, and the same media as device records: every frame as JPEG at
    its time, the audio as 16-bit PCM at the pack's rate."""
    from msa_runtime import Analyzer

    folder = tmp_path_factory.mktemp("records")
    clip = make_clip(folder / "clip.mp4", duration=7.0, size=(96, 72), fps=15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an = Analyzer(tiny_pack)
    decoded = media.decode(clip, fps=15, sample_rate=an.sample_rate)
    pcm = np.clip(np.round(decoded.audio * 32768), -32768, 32767).astype("<i2")
    jpeg, step = JpegEncoder(), an.sample_rate // 4
    parts = [frame_record(jpeg(f), float(t)) for f, t in zip(decoded.frames, decoded.frame_times)]
    parts += [audio_record(pcm[a : a + step], a / an.sample_rate) for a in range(0, pcm.size, step)]
    parts.sort(key=lambda r: HEADER.unpack(r[: HEADER.size])[1])  # as a device sends: by time
    records = folder / "clip.rec"
    records.write_bytes(b"".join(parts))
    return an, clip, records


def test_records_score_like_the_clip_they_came_from(records_of_clip: tuple[Any, Path, Path]) -> None:
    an, clip, records = records_of_clip
    local = list(an.stream(str(clip), window=4.0, hop=1.5))
    remote = list(an.stream(str(records), window=4.0, hop=1.5, format="pcm+jpeg"))
    assert [(p.start, p.end) for p in remote] == [(p.start, p.end) for p in local]
    # JPEG (quality 2) and 16-bit audio are the only differences: on the tiny pack's random
    # encoders they move a window's score by well under the 0.03 the remuxed MP4 moves it.
    for r, p in zip(remote, local):
        assert r.modalities == p.modalities
        assert r.score == pytest.approx(p.score, abs=0.01)
    with pytest.raises(InputError, match="format 'pcm\\+jpeg' .device records. is scored in windows"):
        an.predict(str(records), format="pcm+jpeg")


def test_msa_run_reads_records_from_a_file_and_standard_input(
    records_of_clip: tuple[Any, Path, Path], tiny_pack: Path
) -> None:
    _, _, records = records_of_clip
    argv = [str(MSA_RUN), "--pack", str(tiny_pack), "--stream", "--input-format", "pcm+jpeg"]
    argv += ["--format", "jsonl"]
    from_file = subprocess.run([*argv, str(records)], capture_output=True, text=True, timeout=120)
    assert from_file.returncode == 0, from_file.stderr
    piped = subprocess.run([*argv, "-"], input=records.read_bytes(), capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert len(from_file.stdout.splitlines()) == len(piped.stdout.splitlines()) == 2
    bad = subprocess.run([*argv, "-"], input=b"not records at all", capture_output=True, timeout=120)
    err = bad.stderr.decode()
    assert bad.returncode != 0 and "Traceback" not in err
    assert "kind byte 6e is neither A (audio) nor V (video)" in err, err
