"""FLOPs of the cut encoders, from each encoder kind's formula (the registry in
:mod:`msa_export.presets.kinds`)."""

from __future__ import annotations

from typing import Any


def model_config(kind: str, config: dict[str, Any]) -> Any:
    """The transformers config of an encoder kind (the registry in :mod:`msa_export.presets.kinds`)."""
    from msa_export.presets.kinds import encoder_kind

    return encoder_kind(kind).config(config)


def encoder_flops(kind: str, config: dict[str, Any], blocks: int, length: int) -> dict[str, int]:
    """FLOPs of a cut encoder for one input: ``length`` = tokens (text), samples (audio) or
    frames (vision); the formula is the kind's (:mod:`msa_export.presets.kinds`). Parts and total."""
    from msa_export.presets.kinds import encoder_kind

    return encoder_kind(kind).count_flops(config, blocks, length)


FLOPS_DOC = """FLOPs are counted from each encoder's config (multiply-add = 2; matmuls and
convolutions only; softmax, norms and activations not counted). Per transformer block over T
tokens of width d with MLP width f: `T*(8*d^2 + 4*d*f) + 4*T^2*d` (Q/K/V/output projections,
MLP, QK^T and AV). ViT: T = (image/patch)^2 + 1 per frame, plus the patch convolution
`2*patches*3*p^2*d`. WavLM: the 7-layer conv front end `sum 2*L_out*C_in*C_out*k`, the 512->d
feature projection, the grouped positional convolution `2*T*d*(d/groups)*K`, the blocks, and
the relative-position gate `2*T*d*8` per block. BERT: blocks only. Cut encoders keep
`layer + 1` blocks."""
