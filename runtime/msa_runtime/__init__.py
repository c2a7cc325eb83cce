"""msa_runtime: run msa-edge packs with ONNX Runtime (numpy, tokenizers and PyAV only).

from msa_runtime import Analyzer
an = Analyzer("pack/")
print(an.predict("clip.mp4", text="i loved it").score)
"""

from msa_runtime import moved
from msa_runtime.analyzer import Analyzer
from msa_runtime.errors import (
    AsrError,
    ClusterError,
    InputError,
    MediaError,
    MissingExtraError,
    MsaError,
    PackError,
    ProviderError,
    TextError,
)
from msa_runtime.scoring.core import EncodedFrames, Prediction

moved.install(moved.RUNTIME_MOVES)

__all__ = [
    "Analyzer",
    "AsrError",
    "ClusterError",
    "EncodedFrames",
    "InputError",
    "MediaError",
    "MissingExtraError",
    "MsaError",
    "PackError",
    "Prediction",
    "ProviderError",
    "TextError",
]
