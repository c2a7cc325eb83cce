"""Import paths of modules that moved when the packages were grouped by pipeline stage.

``import msa_runtime.long_input`` (and every other old path below) still works: it gives the module
at its new path and a :class:`DeprecationWarning` naming that path. The tables are the record of
what moved; new code imports the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Mapping, Sequence
from types import ModuleType

RUNTIME_MOVES: dict[str, str] = {
    "msa_runtime.schema": "msa_runtime.pack.schema",
    "msa_runtime.pack_manifest": "msa_runtime.pack.manifest",
    "msa_runtime.pack_parse": "msa_runtime.pack.parse",
    "msa_runtime.pack_prep": "msa_runtime.pack.prep",
    "msa_runtime.pack_face": "msa_runtime.pack.face",
    "msa_runtime.contract": "msa_runtime.pack.contract",
    "msa_runtime.media_probe": "msa_runtime.media.probe",
    "msa_runtime.stdin": "msa_runtime.media.stdin",
    "msa_runtime.timeline": "msa_runtime.media.timeline",
    "msa_runtime.resample": "msa_runtime.face.area",
    "msa_runtime.face_boxes": "msa_runtime.face.boxes",
    "msa_runtime.face_track": "msa_runtime.face.track",
    "msa_runtime.sessions": "msa_runtime.engine.sessions",
    "msa_runtime.openvino_engine": "msa_runtime.engine.openvino",
    "msa_runtime.tuning": "msa_runtime.loading.tuning",
    "msa_runtime.loaded_pack": "msa_runtime.loading.loader",
    "msa_runtime.clip_input": "msa_runtime.scoring.clip",
    "msa_runtime.long_input": "msa_runtime.scoring.long",
    "msa_runtime.stream": "msa_runtime.scoring.stream",
    "msa_runtime.live_asr": "msa_runtime.asr.live",
    "msa_runtime.speech": "msa_runtime.asr.speech",
    "msa_runtime.transcript": "msa_runtime.asr.transcript",
    "msa_runtime.records": "msa_runtime.cli.records",
    "msa_runtime.batch_output": "msa_runtime.cli.batch_output",
    "msa_runtime.ray": "msa_runtime.cli.ray",
}
EXPORT_MOVES: dict[str, str] = {
    "msa_export.kinds": "msa_export.presets.kinds",
    "msa_export.cards": "msa_export.presets.cards",
    "msa_export.encoders": "msa_export.models.encoders",
    "msa_export.frontend": "msa_export.models.wavlm_frontend",
    "msa_export.face": "msa_export.models.face",
    "msa_export.asr": "msa_export.models.asr",
    "msa_export.heads": "msa_export.models.heads",
    "msa_export.int8": "msa_export.convert.int8_search",
    "msa_export.openvino": "msa_export.convert.openvino",
    "msa_export.calibration": "msa_export.gate.inputs",
    "msa_export.build": "msa_export.pack.build",
    "msa_export.encoder_export": "msa_export.pack.encoder",
    "msa_export.head_export": "msa_export.pack.head",
    "msa_export.packdir": "msa_export.pack.folder",
    "msa_export.preflight": "msa_export.pack.preflight",
    "msa_export.report": "msa_export.pack.report",
    "msa_export.training.datasets": "msa_export.data.datasets",
    "msa_export.training.synthetic": "msa_export.data.synthetic",
    "msa_export.training.synthetic_media": "msa_export.data.synthetic_media",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{self.old} moved to {self.new}; import it from there", DeprecationWarning, stacklevel=2
        )
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """The module at the new path is already executed."""


class _MovedFinder(importlib.abc.MetaPathFinder):
    def __init__(self, moves: Mapping[str, str]) -> None:
        self.moves = dict(moves)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = self.moves.get(fullname)
        return None if new is None else importlib.util.spec_from_loader(fullname, _Alias(fullname, new))


def install(moves: Mapping[str, str]) -> None:
    """Serve the old paths of ``moves`` (old -> new module name) from now on; idempotent."""
    for finder in sys.meta_path:
        if isinstance(finder, _MovedFinder):
            finder.moves.update(moves)
            return
    sys.meta_path.append(_MovedFinder(moves))
