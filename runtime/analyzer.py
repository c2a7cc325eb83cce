"""The runtime's public face: :class:`Analyzer` scores clips, arrays and text with a pack."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from msa_runtime import media
from msa_runtime.errors import AsrError, InputError, MediaError, PackError
from msa_runtime.face import FaceDetector
from msa_runtime.pack import PRECISIONS, Manifest, load_manifest
from msa_runtime.preprocess import (
    FaceTrack,
    TextEncoder,
    audio_batch,
    face_note,
    normalize_images,
    vision_squares,
)
from msa_runtime.sessions import make_session, resolve_providers
from msa_runtime.speech import AsrOption, make_recognizer
from msa_runtime.transcript import read_transcript

Features = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Prediction:
    """One score. ``score`` is in [-3, 3] (CMU-MOSI/MOSEI scale); ``modalities`` lists what was
    used; ``gates`` are the head's per-modality weights (gated head only); ``start``/``end``
    are set for stream windows, with ``latency_ms`` from the window's end being available to
    the prediction being ready."""

    score: float
    modalities: tuple[str, ...]
    gates: dict[str, float] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None
    latency_ms: float | None = None
    notes: tuple[str, ...] = ()
    text: str | None = None
    transcript_source: str | None = None

    @property
    def polarity(self) -> str:
        return "positive" if self.score > 0 else "negative" if self.score < 0 else "neutral"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["polarity"] = self.polarity
        out["modalities"] = list(self.modalities)
        out["notes"] = list(self.notes)
        return {k: v for k, v in out.items() if v is not None and v != []}


def _choose_precision(manifest: Manifest, providers: list[str], precision: str | None) -> str:
    files = {p for e in manifest.encoders.values() for p in e.files}
    if precision is not None:
        if precision not in PRECISIONS:
            raise InputError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        if precision not in files:
            raise InputError(f"the pack has no {precision} files; it has "
                             f"{', '.join(sorted(files))}")
        return precision
    cuda = providers[0] == "CUDAExecutionProvider"
    order = ("fp16", "fp32", "int8") if cuda else ("int8", "fp32", "fp16")
    return next(p for p in order if p in files)


def _face_detector(manifest: Manifest, folder: Path, threads: int | None
                   ) -> FaceDetector | None:
    """The pack's face detector when its vision encoder expects face crops (else None).

    It runs on CPU whatever the encoders use: the same ONNX Runtime provider as the training
    feature cache, so serving and training crop the same pixels.
    """
    vision = manifest.encoders.get("vision")
    if vision is None or vision.prep.crop != "face":
        return None
    if manifest.face_detector is None:
        raise PackError(f"pack {folder}: its vision encoder expects face crops (vision "
                        "preprocess crop = 'face') but the pack has no face detector; re-export "
                        "it with msa-export (pip install --no-deps facenet-pytorch first)")
    return FaceDetector.from_folder(folder, manifest.face_detector, threads=threads,
                                    providers=["CPUExecutionProvider"])


class Analyzer:
    """Score clips with a pack.

    ``providers``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or a list of
    ONNX Runtime provider names. ``precision`` defaults to int8 on CPU and fp16 on CUDA.
    ``threads`` (per session) falls back to ``MSA_EDGE_THREADS``, then ONNX Runtime's default.
    Sessions are built once here and reused by every call.

    ``asr`` turns on speech recognition (extra ``msa-edge[asr]``) for inputs without text: a
    Whisper size, hub id or CTranslate2 folder, ``"pack"`` (the pack's own model) or a
    :class:`msa_runtime.asr.Recognizer`; ``language`` is a Whisper code (default: detected);
    ``offline`` keeps model resolution to local files (default: ``HF_HUB_OFFLINE``).
    """

    def __init__(self, pack: str | os.PathLike[str], providers: str | Sequence[str] = "auto",
                 threads: int | None = None, precision: str | None = None, *,
                 verify: bool = True, concurrent: bool = False, asr: AsrOption = None,
                 language: str | None = None, offline: bool | None = None) -> None:
        self.folder = Path(pack)
        self.manifest = load_manifest(self.folder, verify=verify)
        self.providers = resolve_providers(providers)
        self.head = make_session(self.folder / self.manifest.head.file, self.providers,
                                 threads=threads)
        if self.providers[0] not in self.head.get_providers():
            # CUDA fell back to CPU (warned once by make_session): the encoders follow, at the
            # CPU precision, instead of each failing over with its own warning.
            self.providers = list(self.head.get_providers())
        self.precision = _choose_precision(self.manifest, self.providers, precision)
        self.sessions: dict[str, Any] = {}
        for mod, entry in self.manifest.encoders.items():
            name = entry.files.get(self.precision) or next(iter(entry.files.values()))
            self.sessions[mod] = make_session(self.folder / name, self.providers, threads=threads)
        self.head_inputs = [i.name for i in self.head.get_inputs()]
        self.face_detector = _face_detector(self.manifest, self.folder, threads)
        self.text_encoder = None
        if "text" in self.manifest.encoders:
            prep = self.manifest.encoders["text"].prep
            self.text_encoder = TextEncoder(self.folder / prep.tokenizer, prep)
        self._pool = ThreadPoolExecutor(3) if concurrent else None
        if language is not None and not asr:
            raise InputError("a language is for speech recognition: give asr=MODEL with it")
        self.recognizer = make_recognizer(asr, self.folder, self.manifest.extras,
                                          language=language, threads=threads, offline=offline)
        self._stream_text: Any = None  # the last stream's live transcription (for inspection)
        self.notes: tuple[str, ...] = ()
        if not self.manifest.head.trained:
            self.notes = ("untrained head: scores are not meaningful",)
            warnings.warn(f"pack {self.folder} has an untrained fusion head (exported without "
                          "--head): its scores are not meaningful", UserWarning, stacklevel=2)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.manifest.modalities

    def prep(self, modality: str) -> Any:
        return self.manifest.encoders[modality].prep

    # -- encoders -------------------------------------------------------------------------

    def encode_text(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        if self.text_encoder is None:
            raise InputError("this pack has no text encoder")
        ids, mask = self.text_encoder(text)
        feeds = {"input_ids": ids, "attention_mask": mask}
        hidden = self.sessions["text"].run(["hidden"], feeds)[0]
        return hidden, mask.astype(np.float32)

    def encode_audio(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wave = audio_batch(samples, self.prep("audio"))
        hidden = self.sessions["audio"].run(["hidden"], {"waveform": wave})[0]
        return hidden, np.ones(hidden.shape[:2], np.float32)

    def encode_frames(self, frames: np.ndarray | list[np.ndarray],
                      track: FaceTrack | None = None) -> np.ndarray:
        """Per-frame features ``[N, D]`` (N may be 0), cropped as the pack says (centre or face).

        ``track`` carries the face crop across calls (the chosen face, counters, per-frame
        found flags in ``track.last_found``); without it each call starts afresh.
        """
        prep = self.prep("vision")
        squares, _ = vision_squares(frames, prep, self.face_detector, track)
        if len(squares) == 0:
            return np.zeros((0, self.manifest.encoders["vision"].hidden_size), np.float32)
        batch = normalize_images(squares, prep)
        return self.sessions["vision"].run(["hidden"], {"pixel_values": batch})[0]

    def fuse(self, feats: Features) -> tuple[float, dict[str, float] | None]:
        """Run the head on whatever modalities ``feats`` holds; the rest count as absent."""
        feeds: dict[str, np.ndarray] = {}
        present = []
        for mod in self.manifest.head.modalities:
            if mod in feats:
                x, mask = feats[mod]
                present.append(1.0)
            else:
                dim = self.manifest.encoders[mod].hidden_size
                x, mask = np.zeros((1, 1, dim), np.float32), np.zeros((1, 1), np.float32)
                present.append(0.0)
            feeds[mod], feeds[f"{mod}_mask"] = x.astype(np.float32), mask.astype(np.float32)
        feeds["present"] = np.asarray([present], np.float32)
        score, gates = self.head.run(["score", "gates"], {k: feeds[k] for k in self.head_inputs})
        gate_map = None
        if self.manifest.head.gates:
            gate_map = {m: float(g) for m, g in zip(self.manifest.head.modalities, gates[0])
                        if m in feats}
        return float(score[0]), gate_map

    # -- public scoring -------------------------------------------------------------------

    def predict_arrays(self, *, frames: np.ndarray | list[np.ndarray] | None = None,
                       audio: np.ndarray | None = None, sample_rate: int | None = None,
                       text: str | None = None) -> Prediction:
        """Score decoded inputs: RGB uint8 frames sampled at the pack's fps, mono float audio at
        ``sample_rate`` (resampled when it differs from the pack's), and/or text."""
        timings: dict[str, float] = {}
        jobs: dict[str, Any] = {}
        frames, audio = _check_frames(frames), _check_audio(audio)
        if text is not None and text.strip() and "text" in self.sessions:
            jobs["text"] = lambda: self.encode_text(text)
        if audio is not None and len(audio) and "audio" in self.sessions:
            rate = self.prep("audio").sample_rate
            if sample_rate is None:
                raise InputError("predict_arrays(audio=...) needs sample_rate")
            samples = audio if sample_rate == rate else _resample(audio, sample_rate, rate)
            jobs["audio"] = lambda: self.encode_audio(samples)
        track = FaceTrack()
        if frames is not None and len(frames) and "vision" in self.sessions:
            def vision() -> tuple[np.ndarray, np.ndarray]:
                per_frame = self.encode_frames(frames, track)
                return per_frame[None], np.ones((1, len(per_frame)), np.float32)
            jobs["vision"] = vision
        if not jobs:
            raise InputError("nothing to score: give media with audio or video, or text, for a "
                             f"pack with {', '.join(self.modalities)}")
        feats = self._run_jobs(jobs, timings)
        notes: tuple[str, ...] = ()
        if track.detections:
            _split_face_time(timings, track.crop_ms)
            note = face_note(track.last_found)
            notes = (note,) if note else ()
        return self._finish(feats, timings, notes=notes, text=text,
                            transcript_source=None if text is None else "given")

    def _run_jobs(self, jobs: dict[str, Any], timings: dict[str, float]) -> Features:
        def timed(mod: str) -> tuple[np.ndarray, np.ndarray]:
            t0 = time.perf_counter()
            out = jobs[mod]()
            timings[mod] = (time.perf_counter() - t0) * 1e3
            return out
        if self._pool is not None and len(jobs) > 1:
            futures = {m: self._pool.submit(timed, m) for m in jobs}
            return {m: f.result() for m, f in futures.items()}
        return {m: timed(m) for m in jobs}

    def _finish(self, feats: Features, timings: dict[str, float], *,
                notes: tuple[str, ...] = (), **extra: Any) -> Prediction:
        t0 = time.perf_counter()
        score, gates = self.fuse(feats)
        timings["head"] = (time.perf_counter() - t0) * 1e3
        order = tuple(m for m in self.modalities if m in feats)
        return Prediction(score=score, modalities=order, gates=gates,
                          timings_ms={k: round(v, 2) for k, v in timings.items()},
                          notes=self.notes + notes, **extra)

    def predict(self, source: str | os.PathLike[str] | None = None, *, text: str | None = None,
                transcript: str | os.PathLike[str] | None = None, start: float = 0.0,
                end: float | None = None, asr: bool | None = None) -> Prediction:
        """Score a media file (any container FFmpeg reads), with optional text or transcript
        sidecar; or text alone. Missing modalities are left out and reported.

        Without text or transcript, the clip's speech is transcribed when the Analyzer has an
        ASR model (``asr=False`` skips it; ``asr=True`` requires it); given text always wins.
        """
        if text is not None and transcript is not None:
            raise InputError("give text or transcript, not both")
        if source is not None and self._wants_asr(asr, text, transcript):
            from msa_runtime.speech import predict_clip

            return predict_clip(self, source, start=start, end=end)
        if transcript is not None:
            cues = read_transcript(transcript)
            text = " ".join(c.text for c in cues
                            if c.end > start and (end is None or c.start < end))
        if source is None:
            if text is None:
                raise InputError("give a media file, text, or both")
            return self.predict_arrays(text=text)
        t0 = time.perf_counter()
        fps = self.prep("vision").fps if "vision" in self.sessions else None
        rate = self.prep("audio").sample_rate if "audio" in self.sessions else None
        if fps is None and rate is None:
            if text is None:
                raise InputError(f"this pack scores {', '.join(self.modalities)} only: give text")
            return self.predict_arrays(text=text)
        clip = media.decode(source, fps=fps, sample_rate=rate, start=start, end=end)
        decode_ms = (time.perf_counter() - t0) * 1e3
        if len(clip.frames) == 0 and len(clip.audio) == 0 and not text:
            raise MediaError(f"{source}: no {'audio or video' if fps and rate else 'usable media'} "
                             f"for this pack (it scores {', '.join(self.modalities)})")
        p = self.predict_arrays(frames=clip.frames if len(clip.frames) else None,
                                audio=clip.audio if len(clip.audio) else None,
                                sample_rate=rate, text=text)
        return Prediction(**{**p.__dict__, "timings_ms": {"decode": round(decode_ms, 2),
                                                          **p.timings_ms}})

    def _wants_asr(self, asr: bool | None, text: str | None, transcript: object) -> bool:
        if asr is False or text is not None or transcript is not None:
            return False
        if self.recognizer is None:
            if asr:
                raise AsrError("this Analyzer has no ASR model: give one (Analyzer(..., "
                               "asr='small'), msa-run --asr small)")
            return False
        return True

    def stream(self, source: str | os.PathLike[str], *, text: str | None = None,
               transcript: str | os.PathLike[str] | None = None, window: float = 6.0,
               hop: float = 2.0, format: str | None = None,
               options: dict[str, str] | None = None, asr: bool | None = None
               ) -> Iterator[Prediction]:
        """Score overlapping windows of a long file or live source, lazily, as they complete.

        ``source`` may be a file, a device or URL that PyAV opens (``format``/``options`` go to
        ``av.open``), or ``"-"`` for raw 16-bit mono PCM on standard input at the pack's rate.
        Each sampled frame is encoded once, however many windows it falls in. Without text or
        transcript, an Analyzer with an ASR model transcribes the stream live (``asr`` as in
        :meth:`predict`): words committed once two decodes agree, placed by their times.
        """
        from msa_runtime.stream import stream_windows

        return stream_windows(self, source, text=text, transcript=transcript, window=window,
                              hop=hop, format=format, options=options,
                              asr=self._wants_asr(asr, text, transcript))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split_face_time(timings: dict[str, float], face_ms: float) -> None:
    """Report face detection and cropping as ``face``, apart from the vision encoder's time."""
    if "vision" in timings:
        timings["vision"] = max(0.0, timings["vision"] - face_ms)
    timings["face"] = face_ms


def _check_frames(frames: np.ndarray | list[np.ndarray] | None
                  ) -> np.ndarray | list[np.ndarray] | None:
    """Frames must be H x W x 3 uint8 RGB (an ``[N, H, W, 3]`` array or a list)."""
    if frames is None:
        return None
    for f in frames:
        f = np.asarray(f)
        if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise InputError(f"frames must be H x W x 3 uint8 RGB images, got shape {f.shape} "
                             f"{f.dtype}: convert them (e.g. frame.to_ndarray(format='rgb24'))")
    return frames


def _check_audio(audio: np.ndarray | None) -> np.ndarray | None:
    """Audio must be mono: a 1-D array (``[1, n]`` is accepted)."""
    if audio is None:
        return None
    x = np.asarray(audio)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.number):
        raise InputError(f"audio must be mono 1-D float samples, got shape {x.shape} {x.dtype}: "
                         "downmix first (e.g. audio.mean(axis=0) for [channels, n])")
    return x.astype(np.float32, copy=False)


def _resample(samples: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Resample mono float audio with FFmpeg's resampler (the same one decoding uses)."""
    import av

    frame = av.AudioFrame.from_ndarray(np.asarray(samples, np.float32)[None], format="flt",
                                       layout="mono")
    frame.sample_rate = src
    resampler = av.AudioResampler(format="flt", layout="mono", rate=dst)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)
