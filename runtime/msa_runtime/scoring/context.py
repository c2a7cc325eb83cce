"""What the scoring paths use of the :class:`~msa_runtime.Analyzer` that runs them.

The clip, long-input and stream paths (:mod:`~msa_runtime.scoring.clip`,
:mod:`~msa_runtime.scoring.long`, :mod:`~msa_runtime.scoring.stream`) sit a layer below the
Analyzer (``docs/architecture.md``): they take a :class:`ScoringContext`, this declaration of
what they call, and never the Analyzer's class. The Analyzer passes itself, so mypy checks at
each call that it still offers all of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import ParamSpec, Protocol, TypeVar

import numpy as np

from msa_runtime.asr.recognizer import Recognizer
from msa_runtime.engine import Session
from msa_runtime.face import FaceDetector
from msa_runtime.preprocess import FaceTrack
from msa_runtime.scoring.core import EncodedFrames, Feature, Features, Job, Prediction

__all__ = ["ScoringContext"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class ScoringContext(Protocol):
    """The loaded pack's sessions and rates, its encoders and head, and the Analyzer's settings
    (long window, speech recognizer, threads), as the scoring paths need them."""

    @property
    def sessions(self) -> Mapping[str, Session]:
        """The encoder and head sessions by name: ``"text" in sessions`` when the pack has
        that encoder."""
        ...

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the pack scores, in the head's order (for messages)."""
        ...

    @property
    def fps(self) -> float | None:
        """Frames per second the vision encoder samples; None when the pack has no vision
        encoder."""
        ...

    @property
    def sample_rate(self) -> int | None:
        """The audio encoder's sample rate (Hz); None when the pack has no audio encoder."""
        ...

    @property
    def long_window(self) -> float:
        """Inputs spanning more seconds are scored in windows (:mod:`msa_runtime.scoring.long`)."""
        ...

    @property
    def recognizer(self) -> Recognizer | None:
        """The speech recognizer for inputs without text; None without one."""
        ...

    @property
    def face_detector(self) -> FaceDetector | None:
        """The face detector of a face-crop pack; None for a centre-crop one."""
        ...

    def encode_text(self, text: str) -> Feature: ...

    def encode_audio(self, samples: np.ndarray) -> Feature: ...

    def encode_frames(
        self, frames: np.ndarray | list[np.ndarray], track: FaceTrack | None = None
    ) -> EncodedFrames: ...

    def encode(self, jobs: Mapping[str, Job], timings: dict[str, float] | None = None) -> Features: ...

    def run_beside(self, job: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> Future[_T] | None: ...

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
    ) -> Prediction: ...

    def predict_arrays(
        self,
        *,
        frames: np.ndarray | list[np.ndarray] | None = None,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        text: str | None = None,
    ) -> Prediction:
        """Score decoded arrays, checked (:meth:`Analyzer.predict_arrays`)."""
        ...

    def warm_up(self) -> dict[str, float]:
        """Pay OpenVINO's one-time setup now (:meth:`Analyzer.warm_up`)."""
        ...
