"""The last K kept blocks of a cut encoder, trainable, run from the hidden state below them.

Fine-tuning (``msa-train --finetune MODALITY=K``) trains the blocks ``layer-K+1 .. layer`` of an
encoder cut at ``layer`` together with the fusion head. The blocks below stay frozen, so their
output, the hidden state that enters block ``layer-K+1``, is computed once per clip
(:func:`capture_state`, cached by :mod:`msa_export.training.states`) and a :class:`Tail` runs only
the trainable blocks from it. The state is the whole sequence (every token, every audio frame,
every patch), not the sliced feature the head sees: the blocks attend over all of it.

A tail's weights go into the head checkpoint under the full model's parameter names
(:meth:`Tail.model_state`), and :func:`apply_tuned` loads them into a freshly built encoder, so
``msa-export --head`` cuts, exports and validates the fine-tuned encoder like any other.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from msa_export.errors import CheckpointError
from msa_export.models import encoders as enc
from msa_export.presets.registry import EncoderCard


def first_tuned(card: EncoderCard, k: int) -> int:
    """The index of the first trainable block when the last ``k`` of ``card.blocks`` are tuned."""
    return card.blocks - k


@torch.no_grad()
def capture_state(
    card: EncoderCard, model: nn.Module, inputs: tuple[torch.Tensor, ...], start: int
) -> torch.Tensor:
    """The hidden state entering block ``start`` of ``model`` for one clip, unsliced:
    ``[T, D]`` (text, audio) or ``[frames, T, D]`` (vision)."""
    blocks = enc.block_list(model)
    seen: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone())

    handle = blocks[start].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        enc.SPECS[card.kind].io.call(model, inputs, False)
    finally:
        handle.remove()
    if not seen:
        raise CheckpointError(f"block {start} of the {card.modality} encoder did not run")
    state = seen[0]
    return state if enc.SPECS[card.kind].io.frames_are_batch else state[0]


class Tail(nn.Module):
    """Blocks ``start .. card.layer`` of a cut encoder (deep copies, trainable), run from the
    state entering block ``start``; gives per clip the feature the head sees (as the pack's
    encoder file slices it)."""

    def __init__(self, card: EncoderCard, model: nn.Module, k: int) -> None:
        super().__init__()
        if not 1 <= k <= card.blocks:
            raise CheckpointError(
                f"cannot tune {k} blocks of a {card.modality} encoder keeping {card.blocks}"
            )
        self.card = card
        self.start = first_tuned(card, k)
        self.prefix = enc.block_prefix(model)
        kept = enc.block_list(model)
        self.blocks = nn.ModuleList([copy.deepcopy(kept[i]) for i in range(self.start, card.blocks)])
        self.info = enc.SPECS[card.kind].info
        self.bias: Any = None
        if self.info.modality == "audio" and self.start > 0:
            # WavLM: the first block's attention computes the relative position bias every
            # later block gates; it stays frozen (it is below the tuned blocks)
            self.bias = copy.deepcopy(cast(nn.Module, kept[0]).attention).requires_grad_(False)

    def forward(self, states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per clip the feature ``[T', D]`` (text: tokens; audio: every stride-th frame;
        vision: the CLS token of each frame) from its cached state."""
        modality = self.info.modality
        if modality == "text":
            return self._text(states)
        if modality == "vision":
            frames = torch.cat(list(states))
            out = self._run(frames, None)
            cls = self.info.output(out, self.card.frame_stride)
            return list(torch.split(cls, [len(s) for s in states]))
        return [self._audio(s) for s in states]  # unpadded, one clip at a time, as served

    def _run(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            out = block(hidden, mask)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def _text(self, states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        lengths = [len(s) for s in states]
        batch = nn.utils.rnn.pad_sequence(list(states), batch_first=True)
        keep = torch.arange(batch.shape[1])[None, :] < torch.tensor(lengths)[:, None]
        additive = (~keep).to(batch.dtype)[:, None, None, :] * torch.finfo(batch.dtype).min
        out = self.info.output(self._run(batch, additive), self.card.frame_stride)
        return [out[i, :n] for i, n in enumerate(lengths)]

    def _audio(self, state: torch.Tensor) -> torch.Tensor:
        hidden = state[None]
        bias = None
        if self.bias is not None:
            t = hidden.shape[1]
            heads = int(self.bias.num_heads)
            bias = self.bias.compute_bias(t, t).expand(1, -1, -1, -1).reshape(heads, t, t)
        for i, block in enumerate(self.blocks):
            hidden, bias = block(hidden, attention_mask=None, position_bias=bias, index=self.start + i)
        return self.info.output(hidden, self.card.frame_stride)[0]

    def model_state(self) -> dict[str, torch.Tensor]:
        """The tuned blocks' weights under the full model's parameter names."""
        return {
            f"{self.prefix}.{self.start + i}.{name}": value.detach().clone().cpu()
            for i, block in enumerate(self.blocks)
            for name, value in block.state_dict().items()
        }


def apply_tuned(model: nn.Module, tuned: dict[str, torch.Tensor], what: str) -> nn.Module:
    """Load fine-tuned block weights (:meth:`Tail.model_state`) into ``model``; a
    :class:`CheckpointError` naming ``what`` when a name or a shape does not fit."""
    own = model.state_dict()
    for name, value in tuned.items():
        if name not in own or own[name].shape != value.shape:
            found = "no such parameter" if name not in own else f"shape {tuple(own[name].shape)}"
            raise CheckpointError(
                f"the fine-tuned {what} weights do not fit this encoder ({name}: {found}): "
                "export with the preset and layer the checkpoint was trained with"
            )
    model.load_state_dict(tuned, strict=False)
    return model


def tuned_blocks(tuned: dict[str, torch.Tensor], prefix: str) -> list[int]:
    """The block indices a tuned state holds (names ``{prefix}.{index}.*``)."""
    found = set()
    for name in tuned:
        head, _, rest = name.partition(prefix + ".")
        index = rest.split(".", 1)[0]
        if head == "" and index.isdigit():
            found.add(int(index))
    return sorted(found)
