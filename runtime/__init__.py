"""msa_runtime: run msa-edge packs with ONNX Runtime (numpy, tokenizers and PyAV only)."""

from msa_runtime.errors import InputError, MediaError, MsaError, PackError, ProviderError, TextError

__all__ = ["InputError", "MediaError", "MsaError", "PackError", "ProviderError", "TextError"]
