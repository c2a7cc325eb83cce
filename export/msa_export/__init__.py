"""msa_export: the torch side of msa-edge (presets, export to ONNX packs, training)."""
