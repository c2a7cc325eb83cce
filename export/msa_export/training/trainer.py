"""Training one head: batching of cached features, augmentation, the loop, evaluation.

As in Ando et al.: L1 loss on the score, Adam (lr 1e-4), batch 16, cosine schedule with linear
warm-up, SpecAugment-style feature masking, best checkpoint on dev loss. Added: modality dropout
(a modality is hidden from a sample with probability ``modality_dropout``, never all of them), so
packs still predict when a modality is missing. The ``cms`` head adds a contrastive loss that
aligns the modality embeddings of an utterance against the other utterances of the batch, an
exponential moving average of the weights (the EMA weights are evaluated and kept), and label
smoothing (targets shrunk towards the neutral 0 by ``label_smoothing``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from msa_export.models.heads import CmsHead, HeadConfig, build_head
from msa_export.presets.kinds import head_kind
from msa_export.training.metrics import regression_metrics


@dataclass
class Split:
    """Features per modality (per sample ``[T, D]``, ``[L+1, T, D]`` in weighted mode, or None
    when the sample lacks the modality) and labels."""

    feats: dict[str, list[np.ndarray | None]]
    labels: np.ndarray
    ids: list[str]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TrainOptions:
    epochs: int = 50
    lr: float = 1e-4
    batch_size: int = 16
    warmup: float = 0.1
    mask_time: float = 0.2
    mask_feature: float = 0.1
    modality_dropout: float = 0.15
    contrastive: float = 0.1
    temperature: float = 0.1
    ema: float = 0.99
    label_smoothing: float = 0.1


@dataclass
class TrainResult:
    head: nn.Module
    mix: LayerMix | None
    best_epoch: int
    dev_loss: float
    history: list[tuple[float, float]] = field(default_factory=list)


class LayerMix(nn.Module):
    """The "weighted" mode: a learned softmax-weighted sum over all hidden states."""

    def __init__(self, states: dict[str, int]) -> None:
        super().__init__()
        self.logits = nn.ParameterDict({m: nn.Parameter(torch.zeros(n)) for m, n in states.items()})

    def weights(self) -> dict[str, list[float]]:
        return {m: torch.softmax(p.detach(), 0).tolist() for m, p in self.logits.items()}

    def forward(self, mod: str, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.logits[mod], 0)
        return torch.einsum("l,bltd->btd", w, x)


def make_batch(
    split: Split, idx: Sequence[int], modalities: Sequence[str], dims: dict[str, int]
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Pad a batch: features ``[B, T, D]`` (``[B, L+1, T, D]`` weighted), masks, present, labels."""
    feats, masks, present = [], [], []
    for m in modalities:
        items = [split.feats[m][i] for i in idx]
        length = max((x.shape[-2] for x in items if x is not None), default=1)
        lead = next((x.shape[:-2] for x in items if x is not None), ())
        batch = np.zeros((len(idx), *lead, length, dims[m]), np.float32)
        mask = np.zeros((len(idx), length), np.float32)
        for j, x in enumerate(items):
            if x is not None:
                batch[j, ..., : x.shape[-2], :] = x
                mask[j, : x.shape[-2]] = 1.0
        feats.append(torch.from_numpy(batch))
        masks.append(torch.from_numpy(mask))
        present.append([float(x is not None) for x in items])
    pres = torch.tensor(present, dtype=torch.float32).T.contiguous()
    return feats, masks, pres, torch.from_numpy(split.labels[list(idx)].astype(np.float32))


def _augment(
    feats: list[torch.Tensor],
    masks: list[torch.Tensor],
    present: torch.Tensor,
    opts: TrainOptions,
    g: torch.Generator,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    out = []
    for x, mask in zip(feats, masks):
        x = x.clone()
        for j in range(x.shape[0]):
            n = int(mask[j].sum())
            span = int(torch.randint(0, max(1, int(n * opts.mask_time)) + 1, (1,), generator=g))
            if span and n > span:
                s = int(torch.randint(0, n - span + 1, (1,), generator=g))
                x[j, ..., s : s + span, :] = 0
            d = x.shape[-1]
            width = int(torch.randint(0, max(1, int(d * opts.mask_feature)) + 1, (1,), generator=g))
            if width:
                s = int(torch.randint(0, d - width + 1, (1,), generator=g))
                x[j, ..., s : s + width] = 0
        out.append(x)
    if opts.modality_dropout > 0 and present.shape[1] > 1:
        drop = (torch.rand(present.shape, generator=g) < opts.modality_dropout).float()
        kept = present * (1 - drop)
        keep_all = kept.sum(1, keepdim=True) == 0  # never hide every modality
        present = torch.where(keep_all, present, kept)
    return out, present


def _contrastive(
    emb: dict[str, torch.Tensor], present: torch.Tensor, modalities: Sequence[str], temperature: float
) -> torch.Tensor:
    """InfoNCE between text and each other modality of the same utterance."""
    loss = torch.zeros(())
    anchor = F.normalize(emb[modalities[0]], dim=-1)
    for i, m in enumerate(modalities[1:], 1):
        rows = (present[:, 0] * present[:, i]) > 0
        if rows.sum() < 2:
            continue
        other = F.normalize(emb[m], dim=-1)
        logits = anchor[rows] @ other[rows].T / temperature
        target = torch.arange(int(rows.sum()))
        loss = loss + (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    return loss


def _forward(
    head: nn.Module,
    mix: LayerMix | None,
    feats: list[torch.Tensor],
    masks: list[torch.Tensor],
    present: torch.Tensor,
    modalities: Sequence[str],
) -> tuple[list[torch.Tensor], torch.Tensor]:
    if mix is not None:
        feats = [mix(m, x) for m, x in zip(modalities, feats)]
    return feats, head(feats, masks, present)[0]


@torch.no_grad()
def predict(
    head: nn.Module, mix: LayerMix | None, split: Split, cfg: HeadConfig, batch_size: int = 64
) -> np.ndarray:
    head.eval()
    preds = []
    for s in range(0, len(split), batch_size):
        idx = list(range(s, min(len(split), s + batch_size)))
        feats, masks, present, _ = make_batch(split, idx, cfg.modalities, cfg.dims)
        preds.append(_forward(head, mix, feats, masks, present, cfg.modalities)[1].numpy())
    return np.concatenate(preds) if preds else np.zeros(0, np.float32)


def train_head(
    cfg: HeadConfig,
    train: Split,
    dev: Split,
    *,
    seed: int = 0,
    opts: TrainOptions | None = None,
    weighted_states: dict[str, int] | None = None,
    progress: Callable[[str], None] = lambda m: None,
) -> TrainResult:
    """Train one head; returns the weights of the epoch with the lowest dev loss."""
    opts = opts or TrainOptions()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small head: more threads only add synchronisation
    try:
        return _train(cfg, train, dev, seed, opts, weighted_states, progress)
    finally:
        torch.set_num_threads(threads)


def _train(
    cfg: HeadConfig,
    train: Split,
    dev: Split,
    seed: int,
    opts: TrainOptions,
    weighted_states: dict[str, int] | None,
    progress: Callable[[str], None],
) -> TrainResult:
    torch.manual_seed(seed)
    head = build_head(cfg, seed=seed).train()
    mix = LayerMix(weighted_states) if weighted_states else None
    params = list(head.parameters()) + (list(mix.parameters()) if mix is not None else [])
    optim = torch.optim.Adam(params, lr=opts.lr)
    steps_per_epoch = max(1, math.ceil(len(train) / opts.batch_size))
    total = steps_per_epoch * opts.epochs
    warm = max(1, int(total * opts.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim,
        lambda s: (
            min(1.0, (s + 1) / warm)
            * 0.5
            * (1 + math.cos(math.pi * min(1.0, max(0, s - warm) / max(1, total - warm))))
        ),
    )
    is_cms = head_kind(cfg.kind).contrastive  # the cms recipe: EMA, smoothing, contrastive
    ema = copy.deepcopy(head).eval() if is_cms else None
    g = torch.Generator().manual_seed(seed)
    best: tuple[float, int, dict, dict | None] = (math.inf, -1, {}, None)
    history = []
    for epoch in range(opts.epochs):
        head.train()
        order = torch.randperm(len(train), generator=g).tolist()
        running = 0.0
        for s in range(0, len(order), opts.batch_size):
            idx = order[s : s + opts.batch_size]
            feats, masks, present, y = make_batch(train, idx, cfg.modalities, cfg.dims)
            feats, present = _augment(feats, masks, present, opts, g)
            mixed, pred = _forward(head, mix, feats, masks, present, cfg.modalities)
            target = y * (1 - opts.label_smoothing) if is_cms else y
            loss = F.l1_loss(pred, target)
            if is_cms and opts.contrastive > 0:
                emb = cast(CmsHead, head).aligned(mixed, masks, present)
                loss = loss + opts.contrastive * _contrastive(emb, present, cfg.modalities, opts.temperature)
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            if ema is not None:
                with torch.no_grad():
                    for pe, p in zip(ema.parameters(), head.parameters()):
                        pe.mul_(opts.ema).add_(p.detach(), alpha=1 - opts.ema)
            running += float(loss.detach()) * len(idx)
        evaluated = ema if ema is not None else head
        dev_loss = float(np.abs(predict(evaluated, mix, dev, cfg) - dev.labels).mean())
        history.append((running / len(train), dev_loss))
        if (epoch + 1) % max(1, opts.epochs // 5) == 0:
            progress(
                f"  epoch {epoch + 1}/{opts.epochs}: train loss {running / len(train):.4f}, "
                f"dev MAE {dev_loss:.4f}"
            )
        if dev_loss < best[0]:
            best = (
                dev_loss,
                epoch,
                copy.deepcopy(evaluated.state_dict()),
                copy.deepcopy(mix.state_dict()) if mix is not None else None,
            )
    final = build_head(cfg)
    final.load_state_dict(best[2])
    if mix is not None and best[3] is not None:
        mix.load_state_dict(best[3])
    progress(f"  best dev MAE {best[0]:.4f} at epoch {best[1] + 1}/{opts.epochs}")
    return TrainResult(head=final.eval(), mix=mix, best_epoch=best[1], dev_loss=best[0], history=history)


def evaluate(result: TrainResult, split: Split, cfg: HeadConfig) -> tuple[dict[str, float], np.ndarray]:
    preds = predict(result.head, result.mix, split, cfg)
    return regression_metrics(preds, split.labels), preds


def ridge_baseline(
    train: Split, dev: Split, test: Split, mod: str, alphas: Sequence[float] = (0.1, 1.0, 10.0, 100.0, 1000.0)
) -> tuple[dict[str, float], dict[str, float]]:
    """Ridge regression on mean-pooled features; alpha picked on dev. (dev, test) metrics."""

    def pooled(split: Split) -> tuple[np.ndarray, np.ndarray]:
        rows = [i for i, x in enumerate(split.feats[mod]) if x is not None]
        x = np.stack([split.feats[mod][i].mean(-2) for i in rows])  # type: ignore[union-attr]
        return x, split.labels[rows]

    xtr, ytr = pooled(train)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    xtr = np.c_[(xtr - mean) / std, np.ones(len(xtr))]
    fits = []
    for a in alphas:
        reg = a * np.eye(xtr.shape[1])
        reg[-1, -1] = 0
        w = np.linalg.solve(xtr.T @ xtr + reg, xtr.T @ ytr)
        xd, yd = pooled(dev)
        pd = np.c_[(xd - mean) / std, np.ones(len(xd))] @ w
        fits.append((float(np.abs(pd - yd).mean()), a, w))
    _, _, w = min(fits, key=lambda f: f[0])
    out = []
    for split in (dev, test):
        x, y = pooled(split)
        out.append(regression_metrics(np.clip(np.c_[(x - mean) / std, np.ones(len(x))] @ w, -3, 3), y))
    return out[0], out[1]
