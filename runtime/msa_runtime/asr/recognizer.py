"""Speech recognition: transcripts where none were given (extra ``msa-edge[asr]``).

A small interface of our own over faster-whisper (Whisper on CTranslate2, with its Silero VAD):
:func:`resolve_model` finds a model, :class:`Recognizer` turns mono 16 kHz samples into a
:class:`Transcript` of timed :class:`Word`\\ s. Live streams use
:class:`msa_runtime.asr.live.LiveTranscriber` on top of it.

Models are named like the encoders: a size (``tiny``, ``base``, ``small``, ``large-v3``, ...), a
hub id of a CTranslate2 conversion (``Systran/faster-whisper-small``) or a local folder holding
one (``model.bin``, ``config.json``, ``tokenizer.json``). Offline (``offline=True`` or
``HF_HUB_OFFLINE=1``) only local folders and the hub cache are used. Recognition quality is the
loaded model's: the runtime adds VAD gating, word times and the placement of words into windows.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from msa_runtime.asr.transcript import Cue
from msa_runtime.errors import AsrError, InputError, MissingExtraError
from msa_runtime.limits import (
    MAX_CONFIG_BYTES,
    MAX_PACK_FILE_BYTES,
    MAX_TOKENIZER_BYTES,
    check_regular,
    read_bounded,
)

SAMPLE_RATE = 16000
INSTALL = "pip install 'msa-edge[asr]'"
#: Whisper's language codes in the order of its language tokens (``<|en|>`` is id 50259).
LANGUAGES = tuple(
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th "
    "ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr "
    "pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt "
    "haw ln ha ba jw su yue".split()
)
#: Files of a CTranslate2 Whisper folder that belong in a pack (those faster-whisper reads).
MODEL_FILES = (
    "model.bin",
    "config.json",
    "tokenizer.json",
    "preprocessor_config.json",
    "vocabulary.json",
    "vocabulary.txt",
    "vocab.json",
)
#: Upper bound of tokens a decode may emit per second of audio (fast speech is ~5 with
#: timestamps); stops a looping decoder from spending seconds on a short buffer.
TOKENS_PER_SECOND = 8


def _faster_whisper() -> Any:
    try:
        import faster_whisper
    except ImportError as exc:
        raise MissingExtraError(
            f"speech recognition needs faster-whisper ({exc.name} is missing): {INSTALL}"
        ) from exc
    return faster_whisper


@dataclass(frozen=True)
class Word:
    """A recognised word, ``start``/``end`` in seconds on the input's timeline."""

    start: float
    end: float
    text: str
    probability: float = 1.0


@dataclass(frozen=True)
class Transcript:
    """What :meth:`Recognizer.transcribe` heard: the text, its words, the language, seconds of
    speech the VAD kept and the decoding time (ms)."""

    text: str
    words: tuple[Word, ...]
    language: str | None
    speech_seconds: float
    decode_ms: float

    def cues(self) -> list[Cue]:
        """One cue per word, for :func:`msa_runtime.asr.transcript.text_between` and friends."""
        return [Cue(w.start, w.end, w.text) for w in self.words]


def model_files(folder: Path) -> list[Path]:
    """The model files of a CTranslate2 Whisper folder, in :data:`MODEL_FILES` order."""
    return [folder / n for n in MODEL_FILES if (folder / n).is_file()]


def check_model_folder(folder: Path) -> None:
    """Raise :class:`AsrError` unless ``folder`` looks like a CTranslate2 Whisper model."""
    if not folder.is_dir():
        raise AsrError(
            f"ASR model folder {folder} does not exist: give a size (tiny, base, small), "
            "a hub id or a CTranslate2 Whisper folder"
        )
    missing = [n for n in ("model.bin", "config.json") if not (folder / n).is_file()]
    if missing:
        raise AsrError(
            f"{folder} is not a CTranslate2 Whisper model ({', '.join(missing)} "
            "missing): convert one with ct2-transformers-converter --model "
            "openai/whisper-small --output_dir DIR --copy_files tokenizer.json"
        )
    fix = "re-convert or re-copy the model"
    for name in model_files(folder):  # CTranslate2 and tokenizers read them whole: regular, bounded
        limit = MAX_TOKENIZER_BYTES if name.suffix in (".json", ".txt") else MAX_PACK_FILE_BYTES
        check_regular(name, limit, label=f"ASR model file {name}", error=AsrError, fix=fix)
    try:
        config = read_bounded(
            folder / "config.json",
            MAX_CONFIG_BYTES,
            label=f"ASR model file {folder}/config.json",
            error=AsrError,
            fix=fix,
        )
        json.loads(config.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AsrError(
            f"{folder}/config.json is not valid JSON ({exc}): re-convert or re-copy the model"
        ) from exc
    if not (folder / "tokenizer.json").is_file():
        raise AsrError(
            f"{folder} has no tokenizer.json (faster-whisper would download one): "
            "re-convert with --copy_files tokenizer.json"
        )


def resolve_model(model: str | os.PathLike[str], *, offline: bool | None = None) -> Path:
    """The local folder of an ASR model given by size name, hub id or path.

    ``offline`` defaults to ``HF_HUB_OFFLINE``; offline, a size or hub id must already be in the
    hub cache. Raises :class:`AsrError` saying how to get a model that cannot be found.
    """
    name = os.fspath(model)
    if not name.strip():
        raise AsrError(
            "the ASR model name (--asr, asr=) is empty: give a Whisper size (tiny, base, small, "
            "...), a hub id like Systran/faster-whisper-small or a CTranslate2 Whisper folder"
        )
    path = Path(name).expanduser()
    given = os.path.lexists(path)
    if given or name.startswith((".", "/", "~")) or os.sep in name and name.count("/") > 1:
        if not given:
            raise AsrError(
                f"ASR model folder {name} does not exist: give a size (tiny, base, small), "
                "a hub id or a CTranslate2 Whisper folder"
            )
        _check_given_path(name, path)
        check_model_folder(path)
        return path
    if offline is None:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    fw = _faster_whisper()
    if "/" not in name and name not in fw.available_models():
        raise AsrError(
            f"unknown ASR model {name!r}: give a size ({', '.join(fw.available_models())}"
            "), a hub id like Systran/faster-whisper-small or a local folder"
        )
    try:
        found = Path(fw.download_model(name, local_files_only=bool(offline)))
    except Exception as exc:  # huggingface_hub raises many types (offline, 404, network)
        how = (
            f"download it once where the hub is reachable (huggingface-cli download "
            f"{name if '/' in name else 'Systran/faster-whisper-' + name}) or give a local "
            "CTranslate2 folder"
        )
        state = "not in the hub cache (offline)" if offline else f"not available ({type(exc).__name__})"
        raise AsrError(f"ASR model {name!r} is {state}: {how}") from exc
    check_model_folder(found)
    return found


def _check_given_path(name: str, path: Path) -> None:
    """An ASR model path that is there but no folder: say what it is, as the user typed it."""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AsrError(f"ASR model {name} is a symbolic link loop: point it at a model folder") from exc
        raise AsrError(f"ASR model {name} cannot be read ({exc.strerror}): check the path") from exc
    if not path.is_dir():
        raise AsrError(
            f"ASR model {name} is a file, not a folder: give a CTranslate2 Whisper folder "
            "(model.bin, config.json, tokenizer.json), a Whisper size or a hub id"
        )


def default_threads(threads: int | None) -> int:
    """Threads for CTranslate2: argument, then ``MSA_EDGE_THREADS``, then 0 (its default)."""
    if threads is not None:
        return threads
    env = os.environ.get("MSA_EDGE_THREADS", "")
    return int(env) if env.isdigit() else 0


class Recognizer:
    """Whisper on CTranslate2 with VAD gating and word timestamps.

    ``model``: size, hub id or folder (:func:`resolve_model`). ``language``: a Whisper code
    (``en``, ``de``, ...); ``None`` detects it per call. ``compute_type`` defaults to ``int8`` on
    CPU. ``beam_size`` 1 (greedy) keeps the cost low on small CPUs; ``threads`` per model
    (argument, ``MSA_EDGE_THREADS``, CTranslate2's default). Decoding uses temperature 0 only, so
    the same audio gives the same words (live streams rely on that).
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        language: str | None = None,
        threads: int | None = None,
        compute_type: str = "int8",
        beam_size: int = 1,
        offline: bool | None = None,
        device: str = "cpu",
    ) -> None:
        fw = _faster_whisper()
        self.folder = resolve_model(model, offline=offline)
        self.source = os.fspath(model)
        try:
            self.model = fw.WhisperModel(
                str(self.folder),
                device=device,
                compute_type=compute_type,
                cpu_threads=default_threads(threads),
            )
        except Exception as exc:  # CTranslate2 and tokenizers raise several types
            first = (str(exc).splitlines() or [""])[0][:200]
            raise AsrError(
                f"ASR model {self.folder} cannot be loaded ({first}): it is corrupt or "
                "not a CTranslate2 Whisper model; re-convert or re-download it"
            ) from exc
        self.pipeline = fw.BatchedInferencePipeline(self.model)
        self.beam_size = beam_size
        self.language = self.check_language(language)
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)

    def check_language(self, language: str | None) -> str | None:
        if language is None:
            return None
        code = language.strip().lower()
        known = self.model.supported_languages
        tok = self.model.hf_tokenizer
        if code not in known or (self.model.model.is_multilingual and tok.token_to_id(f"<|{code}|>") is None):
            raise InputError(
                f"unknown language {language!r} for this ASR model: use a Whisper "
                f"language code ({', '.join(sorted(known)[:12])}, ...)"
            )
        return code

    def speech(
        self, samples: np.ndarray, *, min_silence_ms: int = 500, pad_ms: int = 200
    ) -> list[tuple[int, int]]:
        """Speech regions ``[(first, end), ...]`` in samples (Silero VAD)."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        if len(samples) < 512:
            return []
        opts = VadOptions(min_silence_duration_ms=min_silence_ms, speech_pad_ms=pad_ms)
        return [(c["start"], c["end"]) for c in get_speech_timestamps(samples, opts)]

    def transcribe(
        self, samples: np.ndarray, *, offset: float = 0.0, vad: bool = True, prompt: str | None = None
    ) -> Transcript:
        """Transcribe mono float samples at 16 kHz; word times are ``offset`` + seconds.

        With ``vad`` only the speech the VAD finds is decoded (the speech regions are joined into
        one decode and the word times mapped back); no speech gives an empty transcript without
        decoding.
        """
        t0 = time.perf_counter()
        audio = np.ascontiguousarray(samples, np.float32).reshape(-1)
        if audio.size == 0:
            return Transcript("", (), self.language, 0.0, 0.0)
        seconds = audio.size / SAMPLE_RATE
        budget = min(200, math.ceil(TOKENS_PER_SECOND * min(seconds, 30.0)) + 16)
        # The batched pipeline decodes each (VAD-joined) chunk of up to 30 s once: one encoder
        # pass per chunk, word times from the cross-attention alignment. (The sequential
        # pipeline re-seeks to the last word's end, costing a second encoder pass per call.)
        segments, info = self.pipeline.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            temperature=0.0,
            word_timestamps=True,
            vad_filter=vad,
            batch_size=4,
            vad_parameters={"min_silence_duration_ms": 500, "speech_pad_ms": 200},
            initial_prompt=prompt or None,
            max_new_tokens=budget,
            without_timestamps=True,
            clip_timestamps=None if vad else [{"start": 0.0, "end": min(seconds, 30.0)}],
        )
        words = []
        for seg in segments:
            for w in seg.words or ():
                text = w.word.strip()
                if text:  # alignment may run past the last sample (chunks are padded): clamp
                    start = offset + min(max(float(w.start), 0.0), seconds)
                    end = offset + min(max(float(w.end), 0.0), seconds)
                    words.append(
                        Word(round(start, 3), round(max(start, end), 3), text, round(float(w.probability), 4))
                    )
        text = " ".join(w.text for w in words)
        speech = float(info.duration_after_vad) if vad else seconds
        return Transcript(
            text, tuple(words), info.language, round(speech, 3), (time.perf_counter() - t0) * 1e3
        )


def pack_model(folder: str | os.PathLike[str], extras: dict[str, Any]) -> Path | None:
    """The ASR model folder a pack carries (``msa-export --asr``), or None.

    ``extras`` are the manifest's extra keys (:attr:`msa_runtime.pack.Manifest.extras`); the
    files themselves were hashed with the pack's when it was loaded.
    """
    entry = extras.get("asr")
    if entry is None:
        return None
    root = Path(folder)
    if not isinstance(entry, dict) or not isinstance(entry.get("folder"), str):
        raise AsrError(f"pack {root}: its 'asr' entry is malformed; rebuild the pack")
    path = (root / entry["folder"]).resolve()
    if not path.is_relative_to(root.resolve()):
        raise AsrError(f"pack {root}: its ASR folder points outside the pack; refusing it")
    return path
