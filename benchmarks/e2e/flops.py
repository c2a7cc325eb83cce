"""FLOPs of the cut encoders, counted from their configs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def block_flops(tokens: int, d: int, ff: int) -> int:
    """One transformer block over a sequence of ``tokens``: Q, K, V and output projections
    (4 * 2*d*d per token), the MLP (2 * 2*d*ff per token), attention scores QK^T and the
    weighted sum AV (2 * 2*tokens*d per token, all heads together)."""
    return tokens * (8 * d * d + 4 * d * ff) + 4 * tokens * tokens * d


def model_config(kind: str, config: dict[str, Any]) -> Any:
    import transformers

    cls = {"bert": "BertConfig", "wavlm": "WavLMConfig", "clip": "CLIPVisionConfig"}[kind]
    return getattr(transformers, cls)(**config)


def wavlm_frames(samples: int, kernels: Iterable[int], strides: Iterable[int]) -> list[int]:
    lengths = []
    n = samples
    for k, s in zip(kernels, strides):
        n = (n - k) // s + 1
        lengths.append(n)
    return lengths


def encoder_flops(kind: str, config: dict[str, Any], blocks: int, length: int) -> dict[str, int]:
    """FLOPs of a cut encoder for one input: ``length`` = tokens (bert), samples (wavlm) or
    frames (clip). Returns the parts and the total."""
    c = model_config(kind, config)
    d, ff = c.hidden_size, c.intermediate_size
    if kind == "bert":
        return {
            "blocks": blocks * block_flops(length, d, ff),
            "total": blocks * block_flops(length, d, ff),
        }
    if kind == "clip":
        patches = (c.image_size // c.patch_size) ** 2
        tokens = patches + 1
        conv = 2 * patches * 3 * c.patch_size**2 * d
        per_frame = conv + blocks * block_flops(tokens, d, ff)
        return {
            "patch_conv": length * conv,
            "blocks": length * blocks * block_flops(tokens, d, ff),
            "total": length * per_frame,
            "tokens": tokens,
        }
    # wavlm: conv feature extractor, feature projection, positional conv, blocks, and the
    # gated relative-position bias (a d_head -> 8 linear per head and token, every block)
    lengths = wavlm_frames(length, c.conv_kernel, c.conv_stride)
    cins = [1, *c.conv_dim[:-1]]
    conv = sum(2 * n * ci * co * k for n, ci, co, k in zip(lengths, cins, c.conv_dim, c.conv_kernel))
    t = lengths[-1]
    proj = 2 * t * c.conv_dim[-1] * d
    pos = 2 * t * d * (d // c.num_conv_pos_embedding_groups) * c.num_conv_pos_embeddings
    gate = blocks * 2 * t * d * 8
    body = blocks * block_flops(t, d, ff)
    return {
        "conv_frontend": conv,
        "projection": proj,
        "pos_conv": pos,
        "blocks": body + gate,
        "total": conv + proj + pos + body + gate,
        "tokens": t,
    }


FLOPS_DOC = """FLOPs are counted from each encoder's config (multiply-add = 2; matmuls and
convolutions only; softmax, norms and activations not counted). Per transformer block over T
tokens of width d with MLP width f: `T*(8*d^2 + 4*d*f) + 4*T^2*d` (Q/K/V/output projections,
MLP, QK^T and AV). ViT: T = (image/patch)^2 + 1 per frame, plus the patch convolution
`2*patches*3*p^2*d`. WavLM: the 7-layer conv front end `sum 2*L_out*C_in*C_out*k`, the 512->d
feature projection, the grouped positional convolution `2*T*d*(d/groups)*K`, the blocks, and
the relative-position gate `2*T*d*8` per block. BERT: blocks only. Cut encoders keep
`layer + 1` blocks."""
