"""Fusion heads (torch) and their checkpoints.

``gated``: the head of Ando et al. 2022. Per modality an FC layer, multi-head self-attentive
pooling and an FC to an embedding z_m; gates a_m = sigmoid(FC([z_v; z_a; z_l])); the score is a
2-layer FC over sum(a_m * z_m).

Every head takes, per modality, features ``[B, T, D]`` and a mask ``[B, T]``, plus ``present``
``[B, M]`` (1 where the modality was given). A missing modality contributes nothing, so one head
serves clips with any subset of its modalities. Scores are clamped to [-3, 3].

Checkpoints are ``torch.save`` dictionaries of plain values and tensors, read back with
``weights_only=True`` (nothing arbitrary is unpickled).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from msa_export.errors import CheckpointError
from msa_export.presets.kinds import head_kind, head_kinds
from msa_runtime.atomic import atomic_write

CHECKPOINT_FORMAT = "msa-edge-head"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class HeadConfig:
    """Everything needed to rebuild a head: kind, modality order and feature sizes, sizes."""

    kind: str
    dims: dict[str, int]
    hidden: int = 128
    embed: int = 64
    heads: int = 4
    dropout: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.dims)


class AttentivePooling(nn.Module):
    """Multi-head self-attentive pooling: ``heads`` softmax-weighted means over time."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, heads))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.score(x).masked_fill(mask.unsqueeze(-1) <= 0, -1e4)
        weights = torch.softmax(logits, dim=1)
        return torch.einsum("bth,btd->bhd", weights, x).flatten(1)


class Branch(nn.Module):
    """One modality: FC -> attentive pooling -> FC to the embedding."""

    def __init__(self, dim: int, cfg: HeadConfig) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(dim, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.pool = AttentivePooling(cfg.hidden, cfg.heads)
        self.out = nn.Linear(cfg.hidden * cfg.heads, cfg.embed)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.pool(self.inp(x), mask))


class GatedHead(nn.Module):
    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.branches = nn.ModuleDict({m: Branch(d, cfg) for m, d in cfg.dims.items()})
        n = len(cfg.dims)
        self.gate = nn.Linear(cfg.embed * n, n)
        self.out = nn.Sequential(
            nn.Linear(cfg.embed, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, 1)
        )

    def embeddings(
        self, feats: list[torch.Tensor], masks: list[torch.Tensor], present: torch.Tensor
    ) -> torch.Tensor:
        """Per-modality embeddings ``[B, M, E]``, zero where a modality is absent."""
        z = torch.stack([b(f, m) for b, f, m in zip(self.branches.values(), feats, masks)], 1)
        return z * present.unsqueeze(-1)

    def forward(
        self, feats: list[torch.Tensor], masks: list[torch.Tensor], present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embeddings(feats, masks, present)
        gates = torch.sigmoid(self.gate(z.flatten(1))) * present
        score = self.out((gates.unsqueeze(-1) * z).sum(1)).squeeze(-1)
        return score.clamp(-3.0, 3.0), gates


class SelfAttentionBlock(nn.Module):
    """A small pre-norm transformer layer written out (exports cleanly with either exporter)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads).unbind(2)
        logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / (d // self.heads) ** 0.5
        logits = logits.masked_fill(mask[:, None, None, :] <= 0, -1e4)
        att = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(logits, -1), v).reshape(b, t, d)
        x = x + self.proj(att)
        return x + self.ff(self.norm2(x))


class CmsHead(nn.Module):
    """After CMSBERT-CLR: the non-verbal context of the whole utterance (pooled audio and visual
    features) shifts every text token through a gate, as MAG-BERT's adaptation gate does; a small
    transformer and attentive pooling then predict the score. :meth:`aligned` gives the
    per-modality embeddings that the contrastive loss pulls together."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        if cfg.modalities[0] != "text":
            raise CheckpointError("the cms head shifts text tokens: it needs the text modality")
        h = cfg.hidden
        self.cfg = cfg
        self.proj = nn.ModuleDict({m: nn.Linear(d, h) for m, d in cfg.dims.items()})
        self.ctx_pool = nn.ModuleDict({m: AttentivePooling(h, 1) for m in cfg.modalities[1:]})
        self.gate = nn.Linear(2 * h, h)
        self.shift = nn.Linear(h, h)
        self.norm = nn.LayerNorm(h)
        self.beta = float(cfg.extra.get("beta", 0.5))
        self.block = SelfAttentionBlock(h, cfg.heads, cfg.dropout)
        self.pool = AttentivePooling(h, cfg.heads)
        self.fuse = nn.Linear(h * cfg.heads, cfg.embed)
        self.out = nn.Sequential(nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.embed, 1))
        self.align = nn.ModuleDict({m: nn.Linear(h, cfg.embed) for m in cfg.modalities})
        self.text_pool = AttentivePooling(h, 1)

    def _encode(
        self, feats: list[torch.Tensor], masks: list[torch.Tensor], present: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mods = self.cfg.modalities
        tokens = self.proj["text"](feats[0])
        pooled = {"text": self.text_pool(tokens, masks[0])}
        ctx = torch.zeros_like(pooled["text"])
        for i, m in enumerate(mods[1:], 1):
            pooled[m] = self.ctx_pool[m](self.proj[m](feats[i]), masks[i])
            ctx = ctx + pooled[m] * present[:, i : i + 1]
        ctx = ctx / present[:, 1:].sum(1, keepdim=True).clamp(min=1.0)
        ctx_t = ctx.unsqueeze(1).expand_as(tokens)
        shift = torch.sigmoid(self.gate(torch.cat([tokens, ctx_t], -1))) * self.shift(ctx_t)
        scale = (
            tokens.norm(dim=-1, keepdim=True) / (shift.norm(dim=-1, keepdim=True) + 1e-6) * self.beta
        ).clamp(max=1.0)
        shifted = self.norm(tokens + scale * shift)
        z = self.fuse(self.pool(self.block(shifted, masks[0]), masks[0]))
        return z, pooled

    def aligned(
        self, feats: list[torch.Tensor], masks: list[torch.Tensor], present: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        _, pooled = self._encode(feats, masks, present)
        return {m: self.align[m](p) for m, p in pooled.items()}

    def forward(
        self, feats: list[torch.Tensor], masks: list[torch.Tensor], present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z, _ = self._encode(feats, masks, present)
        score = self.out(z).squeeze(-1).clamp(-3.0, 3.0)
        return score, present  # the cms head has no gates; the manifest says so


def build_head(cfg: HeadConfig, seed: int = 0) -> nn.Module:
    """A head with seeded initial weights, of a kind registered in :mod:`msa_export.presets.kinds`
    (``gated``, ``cms`` or one added with :func:`msa_export.presets.kinds.register_head_kind`)."""
    if cfg.kind not in head_kinds():
        raise CheckpointError(f"unknown head kind {cfg.kind!r}; valid: {', '.join(head_kinds())}")
    torch.manual_seed(seed)
    module: nn.Module = head_kind(cfg.kind).build(cfg)
    return module.eval()


class FlatHead(nn.Module):
    """ONNX-facing wrapper: flat inputs ``(m1, m1_mask, m2, m2_mask, ..., present)``."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, masks = list(args[0:-1:2]), list(args[1:-1:2])
        return self.head(feats, masks, args[-1])


def head_io(cfg: HeadConfig) -> tuple[list[str], dict[str, dict[int, str]]]:
    """Input names and dynamic axes of the exported head."""
    names: list[str] = []
    axes: dict[str, dict[int, str]] = {}
    for m in cfg.modalities:
        names += [m, f"{m}_mask"]
        axes[m] = {0: "batch", 1: f"{m}_len"}
        axes[f"{m}_mask"] = {0: "batch", 1: f"{m}_len"}
    names.append("present")
    axes["present"] = {0: "batch"}
    return names, axes


def save_checkpoint(
    path: str | Path,
    head: nn.Module,
    cfg: HeadConfig,
    *,
    layers: dict[str, int],
    encoders: dict[str, dict[str, Any]],
    preset: str,
    metrics: dict[str, Any] | None = None,
    utterances: Sequence[str] = (),
    tuned: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Write a checkpoint atomically (temp file, then rename). ``utterances``: a few dev-split
    texts that ``msa-export`` validates the text encoder's int8/fp16 files on. ``tuned``: per
    modality the fine-tuned encoder blocks (``msa-train --finetune``: ``blocks``, ``layer``,
    ``kind`` and ``state``, their weights under the encoder's parameter names)."""
    blob = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": asdict(cfg),
        "layers": layers,
        "encoders": encoders,
        "preset": preset,
        "metrics": metrics or {},
        "utterances": [str(u) for u in utterances],
        "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()},
        "tuned": dict(tuned or {}),
    }
    atomic_write(path, lambda fh: torch.save(blob, fh))


@dataclass(frozen=True)
class Checkpoint:
    config: HeadConfig
    layers: dict[str, int]
    encoders: dict[str, dict[str, Any]]
    preset: str
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any]
    utterances: tuple[str, ...] = ()
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)  # fine-tuned encoder blocks

    def head(self) -> nn.Module:
        head = build_head(self.config)
        try:
            head.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise CheckpointError(
                f"checkpoint weights do not fit a {self.config.kind} head: {str(exc).splitlines()[0]}"
            ) from exc
        return head.eval()


def load_checkpoint(path: str | Path) -> Checkpoint:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no head checkpoint at {p} (train one with msa-train)")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean the same here
        raise CheckpointError(
            f"{p} is not a readable head checkpoint ({type(exc).__name__}); "
            "give the head.pt written by msa-train"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p} is not an msa-edge head checkpoint (written by msa-train)")
    if int(data.get("version", 0)) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{p} has checkpoint version {data['version']}; upgrade msa-edge")
    cfg = HeadConfig(**data["config"])
    return Checkpoint(
        config=cfg,
        layers=dict(data["layers"]),
        encoders=dict(data["encoders"]),
        preset=str(data["preset"]),
        state_dict=data["state_dict"],
        metrics=dict(data.get("metrics", {})),
        utterances=tuple(str(u) for u in data.get("utterances", []) or []),
        tuned=dict(data.get("tuned", {}) or {}),
    )
