"""Registries of encoder kinds and head kinds: the one place that knows what a kind is.

An encoder kind (``bert``, ``wavlm``, ``clip``, ...) says which modality it encodes, which
``transformers`` classes build it (model and config), how the feature is taken from a hidden
state (its output slicing) and how many FLOPs it costs. A head kind (``gated``, ``cms``) says
which torch module implements it, whether it has gates and whether it needs text first. The
lists of valid kinds (preset validation, ``msa-train --head`` choices, benchmark FLOP counts)
are derived from these registries, so adding a kind is one :func:`register_encoder_kind` or
:func:`register_head_kind` call plus a preset card::

    from msa_export.presets.kinds import EncoderKind, register_encoder_kind, wav2vec2_flops
    register_encoder_kind(EncoderKind("hubert", "audio", "HubertModel", "HubertConfig",
                                      flops=wav2vec2_flops))

Importing this module does not import torch or transformers; they are imported when a kind is
built. What is per *modality* (graph input names, example inputs, how the model is called) lives
in :mod:`msa_export.models.encoders`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from msa_export.errors import PresetError
from msa_runtime.pack import MODALITIES

FlopFormula = Callable[[Any, int, int], dict[str, int]]
"""``(config object, blocks kept, input length) -> {"part": flops, ..., "total": flops}``."""
Select = Callable[[Any, int], Any]
"""``(hidden state [B, T, D], frame stride) -> the feature the head sees`` (torch or numpy)."""


def block_flops(tokens: int, d: int, ff: int) -> int:
    """One transformer block over a sequence of ``tokens``: Q, K, V and output projections
    (4 * 2*d*d per token), the MLP (2 * 2*d*ff per token), attention scores QK^T and the
    weighted sum AV (2 * 2*tokens*d per token, all heads together)."""
    return tokens * (8 * d * d + 4 * d * ff) + 4 * tokens * tokens * d


def conv_frames(samples: int, kernels: Iterable[int], strides: Iterable[int]) -> list[int]:
    """Output lengths of a stack of 1-D convolutions (no padding) over ``samples``."""
    lengths = []
    n = samples
    for k, s in zip(kernels, strides):
        n = (n - k) // s + 1
        lengths.append(n)
    return lengths


def text_flops(c: Any, blocks: int, length: int) -> dict[str, int]:
    """BERT-like text encoders over ``length`` tokens: the blocks only."""
    body = blocks * block_flops(length, c.hidden_size, c.intermediate_size)
    return {"blocks": body, "total": body}


def vit_flops(c: Any, blocks: int, length: int) -> dict[str, int]:
    """ViT over ``length`` frames: the patch convolution and the blocks, per frame."""
    d, ff = c.hidden_size, c.intermediate_size
    patches = (c.image_size // c.patch_size) ** 2
    tokens = patches + 1
    conv = 2 * patches * 3 * c.patch_size**2 * d
    body = blocks * block_flops(tokens, d, ff)
    return {
        "patch_conv": length * conv,
        "blocks": length * body,
        "total": length * (conv + body),
        "tokens": tokens,
    }


def wav2vec2_flops(c: Any, blocks: int, length: int, *, gate: bool = False) -> dict[str, int]:
    """wav2vec 2.0-style audio encoders over ``length`` samples: the convolutional front end,
    the feature projection, the grouped positional convolution and the blocks; ``gate`` adds
    WavLM's gated relative-position bias (a d_head -> 8 linear per head and token, per block)."""
    d, ff = c.hidden_size, c.intermediate_size
    lengths = conv_frames(length, c.conv_kernel, c.conv_stride)
    cins = [1, *c.conv_dim[:-1]]
    conv = sum(2 * n * ci * co * k for n, ci, co, k in zip(lengths, cins, c.conv_dim, c.conv_kernel))
    t = lengths[-1]
    proj = 2 * t * c.conv_dim[-1] * d
    pos = 2 * t * d * (d // c.num_conv_pos_embedding_groups) * c.num_conv_pos_embeddings
    extra = blocks * 2 * t * d * 8 if gate else 0
    body = blocks * block_flops(t, d, ff)
    return {
        "conv_frontend": conv,
        "projection": proj,
        "pos_conv": pos,
        "blocks": body + extra,
        "total": conv + proj + pos + body + extra,
        "tokens": t,
    }


def wavlm_flops(c: Any, blocks: int, length: int) -> dict[str, int]:
    """WavLM: wav2vec 2.0's parts plus the gated relative-position bias."""
    return wav2vec2_flops(c, blocks, length, gate=True)


def _tokens(hidden: Any, stride: int) -> Any:
    return hidden


def _frames(hidden: Any, stride: int) -> Any:
    return hidden[:, ::stride]


def _cls(hidden: Any, stride: int) -> Any:
    return hidden[:, 0]


SELECT_BY_MODALITY: dict[str, Select] = {"text": _tokens, "audio": _frames, "vision": _cls}
"""Default output slicing per modality: every token; every ``stride``-th audio frame; the CLS
token of each video frame."""


@dataclass(frozen=True)
class EncoderKind:
    """One encoder family. ``model_class``/``config_class`` are ``transformers`` class names;
    ``flops`` counts one input's cost; ``select`` takes the feature from a hidden state (default:
    the modality's, :data:`SELECT_BY_MODALITY`)."""

    kind: str
    modality: str
    model_class: str
    config_class: str
    flops: FlopFormula
    select: Select | None = None

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(
                f"encoder kind {self.kind!r}: modality {self.modality!r} is not one of {MODALITIES}"
            )

    def output(self, hidden: Any, stride: int = 1) -> Any:
        """The feature of a hidden state ``[B, T, D]``, sliced as this kind's pack gives it."""
        return (self.select or SELECT_BY_MODALITY[self.modality])(hidden, stride)

    def config(self, values: dict[str, Any]) -> Any:
        """The ``transformers`` config object of a card's ``config`` table."""
        import transformers

        return getattr(transformers, self.config_class)(**values)

    def count_flops(self, values: dict[str, Any], blocks: int, length: int) -> dict[str, int]:
        """FLOPs of the encoder cut to ``blocks`` blocks for one input of ``length``."""
        return self.flops(self.config(values), blocks, length)


@dataclass(frozen=True)
class HeadKind:
    """One fusion head. ``factory`` builds the torch module from a ``HeadConfig`` (a
    ``"module:attribute"`` string is imported when first used); ``gates``: the head reports
    per-modality gates; ``text_first``: the head needs text as its first modality;
    ``contrastive``: ``msa-train`` trains it with the contrastive alignment loss, EMA weights and
    label smoothing (CMSBERT-CLR's recipe)."""

    kind: str
    factory: Callable[[Any], Any] | str
    gates: bool = False
    text_first: bool = False
    contrastive: bool = False

    def build(self, cfg: Any) -> Any:
        factory = self.factory
        if isinstance(factory, str):
            import importlib

            module, _, attr = factory.partition(":")
            factory = getattr(importlib.import_module(module), attr)
        return factory(cfg)


ENCODER_KINDS: dict[str, EncoderKind] = {}
HEAD_KINDS: dict[str, HeadKind] = {}


def register_encoder_kind(kind: EncoderKind, *, replace: bool = False) -> EncoderKind:
    """Add an encoder kind (``replace=True`` to redefine one)."""
    if kind.kind in ENCODER_KINDS and not replace:
        raise ValueError(f"encoder kind {kind.kind!r} is already registered")
    ENCODER_KINDS[kind.kind] = kind
    return kind


def register_head_kind(kind: HeadKind, *, replace: bool = False) -> HeadKind:
    """Add a fusion head kind (``replace=True`` to redefine one)."""
    if kind.kind in HEAD_KINDS and not replace:
        raise ValueError(f"head kind {kind.kind!r} is already registered")
    HEAD_KINDS[kind.kind] = kind
    return kind


def encoder_kinds(modality: str | None = None) -> tuple[str, ...]:
    """Registered encoder kind names (of one modality)."""
    return tuple(k for k, v in ENCODER_KINDS.items() if modality in (None, v.modality))


def head_kinds() -> tuple[str, ...]:
    """Registered head kind names."""
    return tuple(HEAD_KINDS)


def encoder_kind(name: str) -> EncoderKind:
    if name not in ENCODER_KINDS:
        raise PresetError(f"unknown encoder kind {name!r}; valid: {', '.join(ENCODER_KINDS)}")
    return ENCODER_KINDS[name]


def head_kind(name: str) -> HeadKind:
    if name not in HEAD_KINDS:
        raise PresetError(f"unknown head kind {name!r}; valid: {', '.join(HEAD_KINDS)}")
    return HEAD_KINDS[name]


for _kind in (
    EncoderKind("bert", "text", "BertModel", "BertConfig", text_flops),
    EncoderKind("wavlm", "audio", "WavLMModel", "WavLMConfig", wavlm_flops),
    EncoderKind("clip", "vision", "CLIPVisionModel", "CLIPVisionConfig", vit_flops),
):
    register_encoder_kind(_kind)
register_head_kind(HeadKind("gated", "msa_export.models.heads:GatedHead", gates=True))
register_head_kind(HeadKind("cms", "msa_export.models.heads:CmsHead", text_first=True, contrastive=True))
