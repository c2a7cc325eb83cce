"""``msa-train --finetune MODALITY=K``: the last K kept blocks of a cut encoder trained with the head.

The blocks below stay frozen: each clip's hidden state entering the first trainable block is
cached once (:mod:`msa_export.training.states`) and every epoch runs only the trainable blocks
(:class:`msa_export.models.tuned.Tail`) from it. Modalities that are not fine-tuned use the
feature cache as in frozen training.

Recipe: L1 loss; AdamW with the blocks at their own learning rate (``lr``, default 5e-5),
scaled by ``decay`` per block downwards (layer-wise decay: the top tuned block gets ``lr``, the
one below ``lr * decay``, ...), the head at the head's learning rate; linear warm-up over the
first 10 % of steps, then cosine decay, for both; dev MAE after every epoch, the best epoch's
weights kept, and training stopped after ``patience`` epochs without a better dev MAE. Same
seeds, metrics and report as frozen training.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from msa_export.data.datasets import Sample
from msa_export.errors import DatasetError
from msa_export.models import encoders as enc
from msa_export.models.heads import HeadConfig, build_head
from msa_export.models.tuned import Tail
from msa_export.presets.registry import EncoderCard, Preset
from msa_export.training import states as st
from msa_export.training.metrics import regression_metrics
from msa_export.training.trainer import Split, TrainResult, make_batch

Progress = Callable[[str], None]
States = dict[str, list[torch.Tensor | None]]


def parse_finetune(values: Sequence[str]) -> dict[str, int]:
    """``["text=2", "audio=1"]`` -> ``{"text": 2, "audio": 1}`` (one-line errors)."""
    out: dict[str, int] = {}
    for value in values:
        for item in value.split(","):
            key, eq, num = item.strip().partition("=")
            if not eq or not key or not num.strip().isdigit():
                raise DatasetError(f"--finetune {value!r}: use MODALITY=K, e.g. --finetune text=2")
            if key in out:
                raise DatasetError(f"--finetune names {key} twice")
            out[key] = int(num)
    return out


def check_finetune(
    spec: dict[str, int], mods: Sequence[str], preset: Preset, layers: str | dict[str, int]
) -> dict[str, int]:
    """The modalities to fine-tune with their K (K = 0 dropped), checked against the head's
    modalities and the kept blocks before any work."""
    for m, k in spec.items():
        if m not in mods:
            raise DatasetError(
                f"--finetune {m}={k}: the head does not use {m} (it uses {', '.join(mods)}); "
                f"drop it or add it with --modalities"
            )
        if k and layers in ("sweep", "weighted"):
            raise DatasetError(
                f"--finetune {m}={k} needs one cut layer: use --layers best or {m}=N, not {layers}"
            )
        layer = (
            layers.get(m, preset.encoders[m].layer) if isinstance(layers, dict) else preset.encoders[m].layer
        )
        if k > layer + 1:
            raise DatasetError(
                f"--finetune {m}={k}: the {m} encoder cut at layer {layer} keeps only "
                f"{layer + 1} blocks; use K from 0 to {layer + 1}"
            )
    return {m: k for m, k in spec.items() if k > 0}


@dataclass
class FineTuneOptions:
    """The fine-tuning recipe (see the module doc)."""

    lr: float = 5e-5
    decay: float = 1.0
    head_lr: float = 1e-3
    epochs: int = 20
    patience: int = 4
    threads: int = 1  # torch threads while training (2 were 4x slower than 1 on a busy 2-core machine)
    batch_size: int = 16
    warmup: float = 0.1
    weight_decay: float = 0.01


@dataclass
class TunedData:
    """One split for fine-tuning: frozen features (``split``) and the cached states of the
    fine-tuned modalities."""

    split: Split
    states: States

    def __len__(self) -> int:
        return len(self.split)


@dataclass
class TunedResult:
    head: nn.Module
    tails: dict[str, Tail]
    best_epoch: int
    dev_loss: float
    history: list[tuple[float, float]] = field(default_factory=list)


def _pad(items: list[torch.Tensor | None], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max((len(x) for x in items if x is not None), default=1)
    batch = torch.zeros(len(items), length, dim)
    mask = torch.zeros(len(items), length)
    for j, x in enumerate(items):
        if x is not None:
            batch[j, : len(x)] = x
            mask[j, : len(x)] = 1.0
    return batch, mask


def _forward(
    head: nn.Module, tails: dict[str, Tail], data: TunedData, idx: Sequence[int], cfg: HeadConfig
) -> torch.Tensor:
    """Scores of samples ``idx``: tuned modalities through their tails, the rest from the cache."""
    frozen = [m for m in cfg.modalities if m not in tails]
    ff, fm, fp, _ = make_batch(data.split, idx, frozen, cfg.dims) if frozen else ([], [], None, None)
    feats, masks, present = [], [], []
    for m in cfg.modalities:
        if m in tails:
            items = [data.states[m][i] for i in idx]
            given = [x for x in items if x is not None]
            outs = iter(tails[m](given) if given else [])
            x, mask = _pad([next(outs) if x is not None else None for x in items], cfg.dims[m])
            present.append(torch.tensor([float(x is not None) for x in items]))
        else:
            j = frozen.index(m)
            x, mask = ff[j], fm[j]
            present.append(fp[:, j] if fp is not None else torch.ones(len(idx)))
        feats.append(x)
        masks.append(mask)
    score: torch.Tensor = head(feats, masks, torch.stack(present, 1))[0]
    return score


@torch.no_grad()
def predict_tuned(
    head: nn.Module, tails: dict[str, Tail], data: TunedData, cfg: HeadConfig, batch_size: int = 32
) -> np.ndarray:
    head.eval()
    for t in tails.values():
        t.eval()
    preds = [
        _forward(head, tails, data, range(s, min(len(data), s + batch_size)), cfg).numpy()
        for s in range(0, len(data), batch_size)
    ]
    return np.concatenate(preds) if preds else np.zeros(0, np.float32)


def _optimizer(head: nn.Module, tails: dict[str, Tail], opts: FineTuneOptions) -> torch.optim.Optimizer:
    groups: list[dict[str, object]] = [{"params": list(head.parameters()), "lr": opts.head_lr}]
    for tail in tails.values():
        n = len(tail.blocks)
        for i, block in enumerate(tail.blocks):  # the top block gets lr, each one below * decay
            groups.append({"params": list(block.parameters()), "lr": opts.lr * opts.decay ** (n - 1 - i)})
    return torch.optim.AdamW(groups, weight_decay=opts.weight_decay)


def _schedule(optim: torch.optim.Optimizer, total: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    warm = max(1, int(total * warmup))
    return torch.optim.lr_scheduler.LambdaLR(
        optim,
        lambda s: (
            min(1.0, (s + 1) / warm)
            * 0.5
            * (1 + math.cos(math.pi * min(1.0, max(0, s - warm) / max(1, total - warm))))
        ),
    )


def train_tuned(
    cfg: HeadConfig,
    base: dict[str, Tail],
    train: TunedData,
    dev: TunedData,
    *,
    seed: int = 0,
    opts: FineTuneOptions | None = None,
    progress: Progress = lambda m: None,
) -> TunedResult:
    """Train the head and copies of the ``base`` tails together; the best dev epoch's weights."""
    opts = opts or FineTuneOptions()
    threads = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    try:
        return _train_tuned(cfg, base, train, dev, seed, opts, progress)
    finally:
        torch.set_num_threads(threads)


def _train_tuned(
    cfg: HeadConfig,
    base: dict[str, Tail],
    train: TunedData,
    dev: TunedData,
    seed: int,
    opts: FineTuneOptions,
    progress: Progress,
) -> TunedResult:
    torch.manual_seed(seed)
    head = build_head(cfg, seed=seed)
    tails = {m: copy.deepcopy(t) for m, t in base.items()}
    optim = _optimizer(head, tails, opts)
    steps = max(1, math.ceil(len(train) / opts.batch_size))
    sched = _schedule(optim, steps * opts.epochs, opts.warmup)
    g = torch.Generator().manual_seed(seed)
    best: tuple[float, int, dict[str, dict[str, torch.Tensor]]] = (math.inf, -1, {})
    history: list[tuple[float, float]] = []
    for epoch in range(opts.epochs):
        head.train()
        for t in tails.values():
            t.train()
        order = torch.randperm(len(train), generator=g).tolist()
        running = 0.0
        for s in range(0, len(order), opts.batch_size):
            idx = order[s : s + opts.batch_size]
            y = torch.from_numpy(train.split.labels[idx].astype(np.float32))
            loss = F.l1_loss(_forward(head, tails, train, idx, cfg), y)
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            running += float(loss.detach()) * len(idx)
        dev_loss = float(np.abs(predict_tuned(head, tails, dev, cfg) - dev.split.labels).mean())
        history.append((running / len(train), dev_loss))
        progress(
            f"  epoch {epoch + 1}/{opts.epochs}: train loss {running / len(train):.4f}, "
            f"dev MAE {dev_loss:.4f}"
        )
        if dev_loss < best[0]:
            states = {"head": head.state_dict(), **{m: t.state_dict() for m, t in tails.items()}}
            best = (dev_loss, epoch, copy.deepcopy(states))
        elif epoch - best[1] >= opts.patience:
            progress(f"  early stop: no better dev MAE for {opts.patience} epochs")
            break
    head.load_state_dict(best[2]["head"])
    for m, t in tails.items():
        t.load_state_dict(best[2][m])
    progress(f"  best dev MAE {best[0]:.4f} at epoch {best[1] + 1}")
    return TunedResult(head.eval(), {m: t.eval() for m, t in tails.items()}, best[1], best[0], history)


def evaluate_tuned(
    result: TunedResult, data: TunedData, cfg: HeadConfig
) -> tuple[dict[str, float], np.ndarray]:
    preds = predict_tuned(result.head, result.tails, data, cfg)
    return regression_metrics(preds, data.split.labels), preds


Fit = tuple[TrainResult | TunedResult, HeadConfig, list[dict[str, float]], int, np.ndarray]
"""A training run's outcome: the best head on dev, its config, per-seed test metrics, the best
seed, its test predictions."""


def options_dict(opts: FineTuneOptions | None) -> dict[str, float]:
    """The recipe as plain numbers, for ``metrics.json``."""
    return {k: float(v) for k, v in vars(opts or FineTuneOptions()).items()}


def tuned_state(tails: dict[str, Tail]) -> dict[str, dict[str, object]]:
    """What ``head.pt`` stores of the tuned blocks, per modality: how many, at which cut layer,
    and their weights under the full model's parameter names."""
    return {
        m: {"blocks": len(t.blocks), "layer": t.card.layer, "kind": t.card.kind, "state": t.model_state()}
        for m, t in tails.items()
    }


def base_tails(cards: dict[str, EncoderCard], tuned: dict[str, int], offline: bool | None) -> dict[str, Tail]:
    """Per fine-tuned modality the pretrained last K kept blocks (each seed trains a copy)."""
    out = {}
    for m, k in tuned.items():
        model = enc.cut(enc.SPECS[cards[m].kind].build(cards[m], offline), cards[m].blocks)
        out[m] = Tail(cards[m], model, k)
    return out


def fit(
    cards: dict[str, EncoderCard],
    tuned: dict[str, int],
    cfg: HeadConfig,
    samples: dict[str, list[Sample]],
    splits: tuple[Split, Split, Split],
    cache_dir: str | Path,
    offline: bool | None,
    seeds: int,
    opts: FineTuneOptions | None,
    progress: Progress,
) -> Fit:
    """Cache the states, then one head (with its tuned blocks) per seed; see :data:`Fit`."""
    opts = opts or FineTuneOptions()
    folders = {
        m: st.extract_states(
            [s for name in ("train", "dev", "test") for s in samples[name]],
            cards[m],
            k,
            cache_dir,
            offline=offline,
            progress=progress,
        )
        for m, k in tuned.items()
    }
    data = [
        TunedData(
            split, {m: st.load_states(folders[m], samples[name], cards[m], k) for m, k in tuned.items()}
        )
        for name, split in zip(("train", "dev", "test"), splits)
    ]
    base = base_tails(cards, tuned, offline)
    results, metrics = [], []
    for seed in range(seeds):
        blocks = ", ".join(f"{k} {m}" for m, k in tuned.items())
        progress(f"seed {seed}: fine-tuning the last {blocks} blocks with the head")
        r = train_tuned(cfg, base, data[0], data[1], seed=seed, opts=opts, progress=progress)
        results.append(r)
        metrics.append(evaluate_tuned(r, data[2], cfg)[0])
    best = min(range(seeds), key=lambda i: results[i].dev_loss)
    return results[best], cfg, metrics, best, evaluate_tuned(results[best], data[2], cfg)[1]


def check_options(opts: FineTuneOptions) -> None:
    """One-line errors for a recipe that cannot train."""
    if not (opts.lr > 0 and opts.head_lr > 0):
        raise DatasetError("--finetune-lr must be > 0")
    if not 0 < opts.decay <= 1:
        raise DatasetError("--finetune-decay must be in (0, 1]")
    if opts.epochs < 1 or opts.patience < 1 or opts.threads < 1:
        raise DatasetError("--finetune-epochs and --patience must be >= 1")
