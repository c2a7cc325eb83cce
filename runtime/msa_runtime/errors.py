"""Typed errors of the runtime (``msa_runtime``).

Every error a user can cause derives from :class:`MsaError`. Its message is one line that says
what is wrong and how to fix it; the command-line tools print it without a traceback. One class
per kind of cause, so callers can tell them apart:

==========================  ==================================================================
:class:`InputError`         the caller's arguments or settings (bad window, ``threads < 1``,
                            ``fps <= 0``, frames of the wrong shape, nothing to score)
:class:`MediaError`         a media file or live source (missing, not media, truncated, no
                            usable track)
:class:`TextError`          text or a transcript file
:class:`PackError`          a pack folder (missing, incomplete, tampered with, unsupported)
:class:`ProviderError`      ONNX Runtime (provider missing, session cannot be built)
:class:`MissingExtraError`  an optional extra is not installed (the message names it)
:class:`AsrError`           a speech-recognition model (not found, not loadable, not copyable)
:class:`ClusterError`       a Ray cluster (unreachable, not joined in time, not started)
==========================  ==================================================================

Arguments are checked where they enter (:mod:`msa_runtime.checks`); whatever a dependency still
raises inside a public :class:`~msa_runtime.Analyzer` method is translated once, at the API
boundary (:mod:`msa_runtime.boundary`). The export side (``msa_export.errors``) derives its own
classes from :class:`MsaError` too.
"""

from __future__ import annotations


class MsaError(Exception):
    """Base class of all user-facing msa-edge errors."""


class PackError(MsaError):
    """A pack folder is missing, incomplete, tampered with or of an unsupported format."""


class MediaError(MsaError):
    """A media file or source cannot be opened or decoded, or holds nothing usable."""


class TextError(MsaError):
    """Text or a transcript file cannot be read."""


class ProviderError(MsaError):
    """An ONNX Runtime execution provider is not available or a session cannot be built."""


class InputError(MsaError):
    """Arguments or settings that are invalid or do not fit together (no modality given, bad
    window, ``threads < 1``, ...)."""


class MissingExtraError(MsaError):
    """A feature needs an optional extra that is not installed (the message names it)."""


class AsrError(MsaError):
    """A speech-recognition model cannot be found, loaded or copied."""


class ClusterError(MsaError):
    """A Ray cluster cannot be reached, joined or started in the time allowed."""
