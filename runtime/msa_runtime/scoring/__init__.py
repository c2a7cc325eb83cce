"""Scoring: encoders' features into the head, for a clip, a long input or a stream.

- :mod:`~msa_runtime.scoring.core`: what every path shares (:class:`Prediction`, features, the
  head's feeds, encoder jobs).
- :mod:`~msa_runtime.scoring.clip`: one clip scored whole (a file, stdin, arrays, text alone).
- :mod:`~msa_runtime.scoring.long`: long inputs in windows, in bounded memory.
- :mod:`~msa_runtime.scoring.stream`: sliding windows over a long file or a live source.
"""

from msa_runtime.scoring.core import EncodedFrames, Prediction

__all__ = [
    "EncodedFrames",
    "Prediction",
]
