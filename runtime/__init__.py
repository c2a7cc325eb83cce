"""msa_runtime: run msa-edge packs with ONNX Runtime (numpy, tokenizers and PyAV only).

    from msa_runtime import Analyzer
    an = Analyzer("pack/")
    print(an.predict("clip.mp4", text="i loved it").score)
"""

from msa_runtime.analyzer import Analyzer, Prediction
from msa_runtime.errors import InputError, MediaError, MsaError, PackError, ProviderError, TextError

__all__ = ["Analyzer", "InputError", "MediaError", "MsaError", "PackError", "Prediction",
           "ProviderError", "TextError"]
