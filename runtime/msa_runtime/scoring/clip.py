"""One clip scored whole: a media file, standard input, text alone or decoded arrays (the work
of :meth:`Analyzer.predict` and :meth:`Analyzer.predict_arrays` once their arguments are checked).

A file spanning more than the Analyzer's ``long_window`` goes to :mod:`msa_runtime.scoring.long`,
one without text to speech recognition (:mod:`msa_runtime.asr.speech`) when the Analyzer has a model;
otherwise the span is decoded at the pack's fps and sample rate, its transcript's cues give the
text, and :meth:`Analyzer.predict_arrays` scores the arrays. A local file is opened once: probed
for its duration (a bad file's error comes first), then decoded from the same open container
(:func:`msa_runtime.media.decoding.open_file`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from msa_runtime import media
from msa_runtime.asr.recognizer import SAMPLE_RATE, Recognizer
from msa_runtime.asr.speech import clip_text, wants_asr
from msa_runtime.asr.transcript import read_transcript
from msa_runtime.checks import visible
from msa_runtime.errors import InputError, MediaError
from msa_runtime.limits import LONG_SLACK
from msa_runtime.media import stdin
from msa_runtime.media.resample import resample_audio
from msa_runtime.preprocess import FaceTrack, face_note, split_face_time
from msa_runtime.scoring import long as long_input
from msa_runtime.scoring.context import ScoringContext
from msa_runtime.scoring.core import Feature, Job, Prediction, feature, text_for_span


def predict_source(
    an: ScoringContext,
    name: str | None,
    text: str | None,
    transcript: str | None,
    start: float,
    end: float | None,
    asr: bool | None,
    format: str | None,
) -> Prediction:
    """Score ``name`` (a file, ``"-"`` for standard input, or None for text alone) with its
    ``text`` or ``transcript`` file, from ``start`` to ``end``: :meth:`Analyzer.predict`."""
    if format == media.RECORDS:
        raise InputError(
            f"format {media.RECORDS!r} (device records) is scored in windows: use "
            "Analyzer.stream (msa-run --stream)"
        )
    if name is not None:
        if name == "-":
            rate = SAMPLE_RATE if an.sample_rate is None else an.sample_rate
            with stdin.opened(stdin.standard_input(), format, spool=True, pcm_rate=rate) as piped:
                try:
                    return _predict(an, _Request(piped.path or "-", text, transcript, start, end, asr, piped))
                except MediaError as exc:  # the spooled copy is ours: the user gave standard input
                    if not piped.path or piped.path not in str(exc):
                        raise
                    raise MediaError(str(exc).replace(piped.path, stdin.LABEL)) from exc
    return _predict(an, _Request(name, text, transcript, start, end, asr, None, format))


@dataclass(frozen=True)
class _Request:
    """What :meth:`Analyzer.predict` was asked, its arguments checked; ``piped``: the standard
    input it came from (spooled to ``source``), whose own format then applies."""

    source: str | None
    text: str | None
    transcript: str | None
    start: float
    end: float | None
    asr: bool | None
    piped: stdin.Piped | None
    format: str | None = None


def _predict(an: ScoringContext, req: _Request) -> Prediction:
    if req.text is not None and req.transcript is not None:
        raise InputError("give text or transcript, not both")
    source = req.source
    if source is None or (an.sample_rate is None and an.fps is None) or not os.path.isfile(source):
        return _score(an, req)
    t0 = time.perf_counter()
    with media.open_file(source) as opened:  # probed (its errors come first), decoded without reopening
        span = long_input.file_span(opened.info, req.start, req.end)
        if span <= an.long_window + LONG_SLACK:
            return _score(an, req, opened, (time.perf_counter() - t0) * 1e3)
    return long_input.predict_file(
        an,
        os.fspath(source),
        text=req.text,
        transcript=None if req.transcript is None else os.fspath(req.transcript),
        start=req.start,
        end=req.end,
        span=span,
        asr=wants_asr(an.recognizer, req.asr, req.text, req.transcript),
    )


def _score(
    an: ScoringContext, req: _Request, opened: media.Opened | None = None, opened_ms: float = 0.0
) -> Prediction:
    """Score ``req.source`` whole (or the text alone). ``opened``: the file :func:`_predict`
    probed (in ``opened_ms``), decoded without a second open unless a format or standard input
    asks for one; the open counts as decoding time."""
    source, text, transcript, start, end = req.source, req.text, req.transcript, req.start, req.end
    rec = an.recognizer
    if source is not None and wants_asr(rec, req.asr, text, transcript) and rec is not None:
        if opened is not None:
            opened.close()  # speech recognition decodes the file its own way
        return predict_heard(an, rec, source, start=start, end=end)
    cues = read_transcript(transcript) if transcript is not None else None
    if source is None:
        if cues is not None:
            text = text_for_span(cues, start, math.inf if end is None else end)
        if text is None:
            raise InputError("give a media file, text, or both")
        return an.predict_arrays(text=text)
    t0 = time.perf_counter()
    fps, rate = an.fps, an.sample_rate
    if fps is None and rate is None:
        if cues is not None:
            text = text_for_span(cues, start, math.inf if end is None else end)
        if text is None:
            raise InputError(f"this pack scores {', '.join(an.modalities)} only: give text")
        return an.predict_arrays(text=text)
    label, forced = (None, req.format) if req.piped is None else (stdin.LABEL, req.piped.format)
    if opened is not None and label is None and forced is None:  # opened as decode would open it
        clip = media.decode(opened, fps=fps, sample_rate=rate, start=start, end=end)
    else:
        opened_ms = 0.0  # decode opens the file itself (timed below)
        clip = media.decode(
            source, fps=fps, sample_rate=rate, start=start, end=end, format=forced, label=label
        )
    decode_ms = opened_ms + (time.perf_counter() - t0) * 1e3
    if cues is not None:  # the cues of the span decoded, as a stream window takes them
        text = text_for_span(cues, start, media_end(clip, fps, rate, start, end))
    if len(clip.frames) == 0 and len(clip.audio) == 0 and not text:
        raise MediaError(
            f"{label or source}: no {'audio or video' if fps and rate else 'usable media'} "
            f"for this pack (it scores {', '.join(an.modalities)})"
        )
    p = an.predict_arrays(
        frames=clip.frames if len(clip.frames) else None,
        audio=clip.audio if len(clip.audio) else None,
        sample_rate=rate,
        text=text,
    )
    return Prediction(**{**p.__dict__, "timings_ms": {"decode": round(decode_ms, 2), **p.timings_ms}})


def predict_heard(
    an: ScoringContext, rec: Recognizer, source: str, *, start: float = 0.0, end: float | None = None
) -> Prediction:
    """:meth:`Analyzer.predict` for a clip whose text comes from ASR (``rec``): decode once
    (frames at the pack's fps, audio at the pack's rate, or at 16 kHz for ASR alone),
    transcribe, score.

    The prediction carries ``text``, ``transcript_source="asr"``, an ``asr`` note and
    ``timings_ms["asr"]``; a clip without audio or speech is scored without text.
    """
    t0 = time.perf_counter()
    fps = an.fps
    rate = SAMPLE_RATE if an.sample_rate is None else an.sample_rate
    clip = media.decode(source, fps=fps, sample_rate=rate, start=start, end=end)
    decode_ms = (time.perf_counter() - t0) * 1e3
    heard = clip_text(rec, clip.audio if len(clip.audio) else None, rate, offset=start)
    frames = clip.frames if len(clip.frames) else None
    audio = clip.audio if len(clip.audio) and an.sample_rate is not None else None
    if frames is None and audio is None and not heard.text:
        raise MediaError(
            f"{source}: nothing to score: no usable audio or video for this pack "
            f"(it scores {', '.join(an.modalities)}) and no speech was recognised"
        )
    words = heard.text if heard.text and visible(heard.text) else None  # nothing visible: no text
    p = an.predict_arrays(frames=frames, audio=audio, sample_rate=rate, text=words)
    timings = {"decode": round(decode_ms, 2), "asr": round(heard.ms, 2), **p.timings_ms}
    return dataclasses.replace(
        p, timings_ms=timings, notes=p.notes + heard.notes, text=heard.text, transcript_source="asr"
    )


def score_arrays(
    an: ScoringContext,
    frames: np.ndarray | list[np.ndarray] | None,
    audio: np.ndarray | None,
    sample_rate: int | None,
    text: str | None,
) -> Prediction:
    """Score checked arrays (:meth:`Analyzer.predict_arrays`): in windows when they span more
    than ``an.long_window``, else each modality the pack has and the input holds, at once."""
    timings: dict[str, float] = {}
    jobs: dict[str, Job] = {}
    span = long_input.array_span(an, frames, audio, sample_rate)
    if span > an.long_window + LONG_SLACK:
        rate = sample_rate if audio is not None and len(audio) else None
        return long_input.predict_arrays(
            an, frames=frames, audio=audio, sample_rate=rate, text=text, span=span
        )
    if text is not None and text.strip() and "text" in an.sessions:
        jobs["text"] = lambda: an.encode_text(text)
    rate = an.sample_rate
    if audio is not None and len(audio) and rate is not None:
        if sample_rate is None:
            raise InputError("predict_arrays(audio=...) needs sample_rate")
        samples = audio if sample_rate == rate else resample_audio(audio, sample_rate, rate)
        jobs["audio"] = lambda: an.encode_audio(samples)
    track = FaceTrack()
    found: list[np.ndarray | None] = [None]
    if frames is not None and len(frames) and an.fps is not None:

        def vision() -> Feature:
            encoded = an.encode_frames(frames, track)
            found[0] = encoded.face_found
            return feature(encoded.features)

        jobs["vision"] = vision
    if not jobs:
        raise InputError(
            "nothing to score: give media with audio or video, or text, for a "
            f"pack with {', '.join(an.modalities)}"
        )
    feats = an.encode(jobs, timings)
    notes: tuple[str, ...] = ()
    if track.detections:
        split_face_time(timings, track.crop_ms)
        note = face_note(found[0])
        notes = (note,) if note else ()
    return an.score_features(
        feats, timings, notes=notes, text=text, transcript_source=None if text is None else "given"
    )


def media_end(
    clip: media.Decoded, fps: float | None, rate: int | None, start: float, end: float | None
) -> float:
    """Where the decoded span ends: its last frame's interval or last sample, whichever is later
    (as a stream's last window ends), capped at ``end``. With nothing decoded (a file without
    the tracks the pack scores), the span is open: ``end``, else infinity, so its text is used."""
    last = -math.inf
    if fps and len(clip.frame_times):
        last = max(last, float(clip.frame_times[-1]) + 1.0 / fps)
    if rate and len(clip.audio):
        last = max(last, start + len(clip.audio) / rate)
    if last == -math.inf:
        return math.inf if end is None else end
    return last if end is None else min(last, end)
