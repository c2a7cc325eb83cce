"""Typed errors of msa-edge.

Every error a user can cause derives from :class:`MsaError`. Its message is one line that says
what is wrong and how to fix it; the command-line tools print it without a traceback.
"""

from __future__ import annotations


class MsaError(Exception):
    """Base class of all user-facing msa-edge errors."""


class PackError(MsaError):
    """A pack folder is missing, incomplete, tampered with or of an unsupported format."""


class MediaError(MsaError):
    """A media file cannot be opened or decoded."""


class TextError(MsaError):
    """Text or a transcript file cannot be read."""


class ProviderError(MsaError):
    """An ONNX Runtime execution provider is not available or a session cannot be built."""


class InputError(MsaError):
    """Arguments that do not fit together (no modality given, bad window, ...)."""


class MissingExtraError(MsaError):
    """A feature needs an optional extra that is not installed (the message names it)."""


class AsrError(MsaError):
    """A speech-recognition model cannot be found, loaded or copied."""
