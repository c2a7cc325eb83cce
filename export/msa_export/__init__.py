"""msa_export: the torch side of msa-edge (presets, export to ONNX packs, training)."""

from msa_runtime import moved

moved.install(moved.EXPORT_MOVES)
