"""Typed errors of the export side (``msa_export``: ``msa-export`` and ``msa-train``).

They derive from :class:`msa_runtime.errors.MsaError`, like the runtime's, so one ``except
MsaError`` catches every user-facing error of either side; the command-line tools print the
one-line message without a traceback. :class:`ExportSideError` is the base of this side:

=========================  ==========================================================
:class:`PresetError`       a preset is unknown or its card is invalid
:class:`ModelLoadError`    an encoder's weights or tokenizer cannot be loaded
:class:`CheckpointError`   a head checkpoint cannot be read or does not fit the preset
:class:`DatasetError`      a training dataset (or the feature cache built from it)
:class:`ExportError`       writing a pack: bad arguments, output folder, cutting
:class:`ValidationError`   an exported file differs from PyTorch beyond tolerance
:class:`FaceExportError`   the MTCNN face detector cannot be loaded, exported, validated
=========================  ==========================================================

Each class is also importable from the module that raises it (``msa_export.presets.registry.PresetError``
and so on). :func:`msa_export.console.fail_cleanly` is how the command-line tools print them.
"""

from __future__ import annotations

from msa_runtime.errors import MsaError

__all__ = [
    "CheckpointError",
    "DatasetError",
    "ExportError",
    "ExportSideError",
    "FaceExportError",
    "ModelLoadError",
    "PresetError",
    "ValidationError",
]


class ExportSideError(MsaError):
    """Base class of the export side's errors (``msa-export``, ``msa-train``)."""


class PresetError(ExportSideError):
    """A preset is unknown or its card is invalid."""


class ModelLoadError(ExportSideError):
    """An encoder's weights or tokenizer cannot be loaded."""


class CheckpointError(ExportSideError):
    """A head checkpoint cannot be read or does not fit the preset."""


class DatasetError(ExportSideError):
    """A dataset cannot be read, or has no usable clips; also an unusable feature cache."""


class ExportError(ExportSideError):
    """A pack cannot be written: bad arguments, an output folder in the way, an encoder that
    cannot be cut."""


class ValidationError(ExportSideError):
    """An exported file differs from PyTorch beyond its tolerance (nothing is written)."""


class FaceExportError(ExportSideError):
    """The face detector cannot be loaded, exported or validated."""


class CalibrationError(ExportSideError):
    """A calibration set (``--calibrate`` clips, ``--gate-text`` utterances) cannot be read or
    holds no usable item."""
