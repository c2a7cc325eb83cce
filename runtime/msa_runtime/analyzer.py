"""The runtime's public face: :class:`Analyzer` scores clips, arrays and text with a pack."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal, ParamSpec, TypeVar, overload

import numpy as np

from msa_runtime import checks
from msa_runtime.asr.speech import AsrOption, make_recognizer
from msa_runtime.boundary import public
from msa_runtime.engine.sessions import OPENVINO_ROUTES, default_threads
from msa_runtime.errors import InputError
from msa_runtime.limits import check_concurrent, check_long_window
from msa_runtime.loading.loader import SessionFactory, load_pack, warm_up
from msa_runtime.pack import AudioPrep, Prep, TextPrep, VisionPrep
from msa_runtime.preprocess import FaceTrack, audio_batch, normalize_images, vision_squares
from msa_runtime.scoring import inputs
from msa_runtime.scoring.clip import predict_source, score_arrays
from msa_runtime.scoring.core import (
    EncodedFrames,
    Feature,
    Features,
    Job,
    Prediction,
    feature,
    head_feeds,
    run_jobs,
)
from msa_runtime.scoring.stream import start_stream

__all__ = ["Analyzer", "EncodedFrames", "Features", "Prediction", "SessionFactory"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class Analyzer:
    """Score clips with a pack.

    ``providers``: ``"auto"`` (CUDA when available, else OpenVINO when it offers this machine's CPU,
    else ONNX Runtime's CPU execution provider), ``"cpu"``, ``"cuda"``, ``"openvino"``
    (``"openvino:GPU"`` for another OpenVINO device; ``"openvino-native"`` or ``"openvino-ep"`` for
    one route: :mod:`msa_runtime.engine.openvino`) or a list of ONNX Runtime providers; None reads
    ``MSA_EDGE_PROVIDERS``, else ``auto``. ``precision`` forces one file kind (int8, fp16, fp32,
    ov-int8) for every encoder; by default each encoder runs the file its manifest names for the
    provider (CPU: int8, CUDA: fp16, OpenVINO: ov-int8, else fp32 as bf16), or the fastest one a
    tuning record measured on this machine (``tuning``: path, False to ignore; default
    ``MSA_EDGE_TUNING``, else ``<pack>.tuning.json`` beside the pack; see
    :mod:`msa_runtime.loading.tuning`). ``threads`` (per session) falls back to ``MSA_EDGE_THREADS``, then
    the provider's default. Sessions are built once here and reused by every call; :attr:`choice`
    says what was picked and why.

    Loading checks the pack (:func:`msa_runtime.pack.load_manifest`: manifest digest and schema,
    the sha256 of every file it loads unless ``verify=False``) and each session's inputs and outputs against
    the manifest (:mod:`msa_runtime.pack.contract`). ``digest`` (else ``MSA_EDGE_PACK_DIGEST``) pins
    the pack: one whose digest (:func:`msa_runtime.pack.pack_digest`) differs is refused.

    ``asr`` turns on speech recognition (extra ``msa-edge[asr]``) for inputs without text: a
    Whisper size, hub id or CTranslate2 folder, ``"pack"`` (the pack's own model) or a
    :class:`~msa_runtime.asr.recognizer.Recognizer` (its own language); ``language``: a Whisper
    code (default: detected); ``offline`` keeps model resolution local (default: ``HF_HUB_OFFLINE``).

    ``long_window`` (seconds, default ``MSA_EDGE_LONG_WINDOW``, else 30): a file or arrays
    spanning longer are scored in equal windows of at most that length and the window scores
    averaged, weighted by duration, so memory stays bounded (:mod:`msa_runtime.scoring.long`).
    ``session_factory`` (:data:`SessionFactory`) replaces the local sessions (Triton's ensemble).

    ``concurrent`` (default ``MSA_EDGE_CONCURRENT``, else False) runs text, audio and vision
    (with its face crop) on three threads at once, each session keeping ``threads``: on 2 cores
    it fills the gaps one encoder leaves (ando2022-mosi on OpenVINO: ``benchmarks/bench_concurrent.py``).
    """

    @public
    def __init__(
        self,
        pack: str | os.PathLike[str],
        providers: str | Sequence[str] | None = None,
        threads: int | None = None,
        precision: str | None = None,
        *,
        verify: bool = True,
        digest: str | None = None,
        concurrent: bool | None = None,
        tuning: str | os.PathLike[str] | bool | None = None,
        asr: AsrOption = None,
        language: str | None = None,
        offline: bool | None = None,
        long_window: float | None = None,
        session_factory: SessionFactory | None = None,
    ) -> None:
        self._closed = False
        if not isinstance(pack, (str, os.PathLike)):
            raise InputError(f"pack must be a folder path (str or os.PathLike), got {type(pack).__name__}")
        self.folder = Path(pack)
        self.long_window = check_long_window(long_window)
        """Inputs spanning more seconds are scored in windows (:mod:`msa_runtime.scoring.long`)."""
        threads = default_threads(threads)  # checked, capped at the CPU count (with a warning)
        loaded = load_pack(
            self.folder,
            providers,
            threads,
            precision,
            verify=verify,
            digest=digest,
            tuning=tuning,
            session_factory=session_factory,
        )
        self.manifest = loaded.manifest
        self.providers = loaded.providers
        self.head = loaded.head
        self.plan = loaded.plan
        self.precision = loaded.precision
        self.sessions = loaded.sessions
        self.choice = loaded.choice
        """What runs where and why (auto's pick, the file per encoder, the tuning record)."""
        self.auto_provider = loaded.auto
        self.head_inputs = loaded.head_inputs
        self.face_detector = loaded.face_detector
        self.text_encoder = loaded.text_encoder
        self._pool = ThreadPoolExecutor(3) if check_concurrent(concurrent) else None
        if language is not None and not asr:
            raise InputError("a language is for speech recognition: give asr=MODEL with it")
        self.recognizer = make_recognizer(
            asr, self.folder, self.manifest.extras, language=language, threads=threads, offline=offline
        )
        self._warm: dict[str, float] | None = None  # what warm_up() measured
        self.notes: tuple[str, ...] = ()
        if not self.manifest.head.trained:
            self.notes = ("untrained head: scores are not meaningful",)
            warnings.warn(
                f"pack {self.folder} has an untrained fusion head (exported without "
                "--head): its scores are not meaningful",
                UserWarning,
                stacklevel=2,
            )

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.manifest.modalities

    @property
    def fps(self) -> float | None:
        """Frames per second the pack's vision encoder samples (its ``prep("vision").fps``);
        None when the pack has no vision encoder."""
        return self.prep("vision").fps if "vision" in self.sessions else None

    @property
    def sample_rate(self) -> int | None:
        """The sample rate (Hz) of the pack's audio encoder (its ``prep("audio").sample_rate``);
        None when the pack has no audio encoder."""
        return self.prep("audio").sample_rate if "audio" in self.sessions else None

    @overload
    def prep(self, modality: Literal["text"]) -> TextPrep: ...
    @overload
    def prep(self, modality: Literal["audio"]) -> AudioPrep: ...
    @overload
    def prep(self, modality: Literal["vision"]) -> VisionPrep: ...
    @overload
    def prep(self, modality: str) -> Prep: ...
    def prep(self, modality: str) -> Prep:
        """The pack's preprocessing of ``modality`` (typed: ``TextPrep``, ``AudioPrep``,
        ``VisionPrep``)."""
        return self.manifest.encoders[modality].prep

    # -- encoders -------------------------------------------------------------------------

    def encode_text(self, text: str) -> Feature:
        """Text -> ``([1, T, D] hidden states, [1, T] mask)``."""
        if self.text_encoder is None:
            raise InputError("this pack has no text encoder")
        ids, mask = self.text_encoder(text)
        feeds = {"input_ids": ids, "attention_mask": mask}
        hidden = self.sessions["text"].run(["hidden"], feeds)[0]
        return feature(hidden, mask)

    def encode_audio(self, samples: np.ndarray) -> Feature:
        """Mono float samples at the pack's rate -> ``([1, T, D], [1, T] ones)``."""
        wave = audio_batch(samples, self.prep("audio"))
        return feature(self.sessions["audio"].run(["hidden"], {"waveform": wave})[0])

    def encode_frames(
        self, frames: np.ndarray | list[np.ndarray], track: FaceTrack | None = None
    ) -> EncodedFrames:
        """Per-frame features ``[N, D]`` (N may be 0), cropped as the pack says (centre or face),
        and per frame whether a face was found (``face_found``; ``None`` for a centre-crop pack).

        ``track`` carries the face crop across calls (the chosen face, counters); without it
        each call starts afresh. ``feature(result.features)`` is the head's vision input.
        """
        prep = self.prep("vision")
        squares, found = vision_squares(frames, prep, self.face_detector, track)
        if len(squares) == 0:
            empty = np.zeros((0, self.manifest.encoders["vision"].hidden_size), np.float32)
            return EncodedFrames(empty, found)
        batch = normalize_images(squares, prep)
        return EncodedFrames(self.sessions["vision"].run(["hidden"], {"pixel_values": batch})[0], found)

    @public
    def encode(self, jobs: Mapping[str, Job], timings: dict[str, float] | None = None) -> Features:
        """Run encoder jobs (``{modality: callable returning a Feature}``), concurrently when the
        Analyzer was made with ``concurrent=True``; each job's ms goes to ``timings``. The jobs and
        what they return are checked (:mod:`msa_runtime.scoring.inputs`: an :class:`InputError`)."""
        self._check_open()
        checked = inputs.check_jobs(jobs, self.manifest.head.modalities)
        feats = run_jobs(checked, inputs.check_timings(timings), self._pool)
        dims = self._dims()
        return {
            mod: inputs.check_feature(mod, value, dims[mod], f"the {mod} job's")
            for mod, value in feats.items()
        }

    @property
    def concurrent(self) -> bool:
        """Whether encoders run on three threads (``concurrent=True``, ``MSA_EDGE_CONCURRENT``)."""
        return self._pool is not None

    def run_beside(self, job: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> Future[_T] | None:
        """Run ``job(*args, **kwargs)``, for what it does, beside the encoders: on the Analyzer's
        threads when it is :attr:`concurrent` (returns the ``Future``: call ``result()`` before
        using what the job made; its error is raised there), else here and now (returns None;
        its error is raised here). Streams encode a window's new frames this way while
        :meth:`encode` runs the audio and text encoders."""
        self._check_open()
        if self._pool is None:
            job(*args, **kwargs)
            return None
        return self._pool.submit(job, *args, **kwargs)

    def _dims(self) -> dict[str, int]:
        return {m: e.hidden_size for m, e in self.manifest.encoders.items()}

    @public
    def fuse(self, feats: Features) -> tuple[float, dict[str, float] | None]:
        """Run the head on the modalities ``feats`` holds (checked); the rest count as absent."""
        self._check_open()
        head = self.manifest.head
        dims = self._dims()
        feats = inputs.check_features(feats, head.modalities, dims)
        feeds = head_feeds(feats, head.modalities, dims, self.head_inputs)
        score, gates = self.head.run(["score", "gates"], feeds)
        gate_map = None
        if head.gates:
            gate_map = {m: float(g) for m, g in zip(head.modalities, gates[0]) if m in feats}
        return float(score[0]), gate_map

    @public
    def score_features(
        self,
        feats: Features,
        timings: dict[str, float] | None = None,
        *,
        notes: tuple[str, ...] = (),
        start: float | None = None,
        end: float | None = None,
        latency_ms: float | None = None,
        text: str | None = None,
        transcript_source: str | None = None,
    ) -> Prediction:
        """The :class:`Prediction` for encoded ``feats``: runs the head (its ms goes to
        ``timings["head"]``), adds the pack's notes, ``start``/``end``/``latency_ms`` for
        stream windows, and the ``text`` scored with where it came from. ``feats`` is checked first
        (:func:`msa_runtime.scoring.inputs.check_features`): an :class:`InputError`, never ONNX's."""
        timings = inputs.check_timings(timings)
        notes, start, end, latency_ms = inputs.check_fields(
            notes, start, end, latency_ms, text, transcript_source
        )
        t0 = time.perf_counter()
        score, gates = self.fuse(feats)
        timings["head"] = (time.perf_counter() - t0) * 1e3
        order = tuple(m for m in self.modalities if m in feats)
        return Prediction(
            score=score,
            modalities=order,
            gates=gates,
            timings_ms={k: round(v, 2) for k, v in timings.items()},
            notes=self.notes + notes,
            start=start,
            end=end,
            latency_ms=latency_ms,
            text=text,
            transcript_source=transcript_source,
        )

    # -- public scoring -------------------------------------------------------------------

    @public
    def predict_arrays(
        self,
        *,
        frames: np.ndarray | list[np.ndarray] | None = None,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        text: str | None = None,
    ) -> Prediction:
        """Score decoded inputs: RGB uint8 frames sampled at the pack's fps, mono float audio at
        ``sample_rate`` (resampled when it differs from the pack's), and/or text."""
        self._check_open()
        frames, audio = checks.frames("frames", frames), checks.audio("audio", audio)
        text = checks.text("text", text)
        if sample_rate is not None:
            sample_rate = checks.sample_rate("sample_rate", sample_rate)
        return score_arrays(self, frames, audio, sample_rate, text)

    @public
    def predict(
        self,
        source: str | os.PathLike[str] | None = None,
        *,
        text: str | None = None,
        transcript: str | os.PathLike[str] | None = None,
        start: float = 0.0,
        end: float | None = None,
        asr: bool | None = None,
        format: str | None = None,
    ) -> Prediction:
        """Score a media file (any container FFmpeg reads), with optional text or transcript
        sidecar; or text alone. Missing modalities are left out and reported.

        Without text or transcript, the clip's speech is transcribed when the Analyzer has an
        ASR model (``asr=False`` skips it; ``asr=True`` requires it); given text always wins.
        ``source="-"`` reads the clip from standard input (sniffed: see :mod:`msa_runtime.media.stdin`;
        ``format="s16le"`` for raw 16-bit mono PCM at the pack's rate).
        """
        self._check_open()
        text, asr = checks.text("text", text), checks.flag("asr", asr)
        start, end = checks.span("start", start, "end", end)
        script = None if transcript is None else checks.source("transcript", transcript)
        name = None if source is None else checks.source("source", source)
        return predict_source(self, name, text, script, start, end, asr, format)

    @public
    def stream(
        self,
        source: str | os.PathLike[str],
        *,
        text: str | None = None,
        transcript: str | os.PathLike[str] | None = None,
        window: float = 6.0,
        hop: float = 2.0,
        format: str | None = None,
        options: dict[str, str] | None = None,
        asr: bool | None = None,
    ) -> Iterator[Prediction]:
        """Score overlapping windows of a long file or live source, lazily, as they complete.

        ``source`` may be a file, a device or URL that PyAV opens (``format``/``options`` go to
        ``av.open``), or ``"-"`` for standard input: a container (sniffed by its magic number,
        see :mod:`msa_runtime.media.stdin`) or, with ``format="s16le"``, raw 16-bit mono PCM at the
        pack's rate.
        Each sampled frame is encoded once, however many windows it falls in. Without text or
        transcript, an Analyzer with an ASR model transcribes the stream live (``asr`` as in
        :meth:`predict`): words committed once two decodes agree, placed by their times.
        """
        self._check_open()
        return start_stream(
            self,
            source,
            text=text,
            transcript=transcript,
            window=window,
            hop=hop,
            format=format,
            options=options,
            asr=asr,
        )

    @public
    def warm_up(self) -> dict[str, float]:
        """Pay OpenVINO's one-time setup now, not on the first clip: run its encoders once on a
        small input (:meth:`stream` does). On OpenVINO's own runtime, load and first call together
        took 0.8-1.6 s per encoder of the edge pack with an empty compile cache and 0.4-0.5 s
        with a warm one (:func:`msa_runtime.engine.openvino.cache_dir`); through ONNX Runtime's
        plugin the first call alone took ~1 s per encoder. Returns ms per encoder."""
        if self._warm is None:
            self._warm = warm_up(self.manifest, self.folder, self.plan, self.sessions, OPENVINO_ROUTES)
        return self._warm

    def close(self) -> None:
        """Release the thread pool; the Analyzer cannot score afterwards."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown()

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("this Analyzer was closed: make a new one (Analyzer(pack)) to score again")

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
