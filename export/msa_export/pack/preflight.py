"""Checks that run before any export work: does the head checkpoint fit the preset's encoders?

A head trained on one encoder's features is meaningless on another's, and a checkpoint whose
layer lies beyond the encoder cannot be cut. Both are caught here, from the checkpoint and the
encoders' configurations (no weights loaded), with a message that says what to do.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from msa_export.models import encoders as enc
from msa_export.models.heads import Checkpoint, CheckpointError
from msa_export.presets.registry import EncoderCard, Preset


def encoder_config(card: EncoderCard, offline: bool | None) -> dict[str, Any] | None:
    """The encoder's configuration (the card's own for random weights, else the model folder's
    or hub cache's ``config.json``); None when it cannot be read here (loading the model later
    reports why)."""
    if card.source == "random":
        return dict(card.config)
    import transformers

    try:
        location = enc.resolve_source(card.source)
        cls = getattr(transformers, enc.SPECS[card.kind].config_class)
        local = enc.offline_default() if offline is None else offline
        return dict(cls.from_pretrained(location, local_files_only=local).to_dict())
    except (OSError, ValueError, enc.ModelLoadError):
        return dict(card.config) or None


def check_checkpoint(preset: Preset, ckpt: Checkpoint, offline: bool | None = None) -> None:
    """Raise :class:`CheckpointError` when ``ckpt`` was trained on other encoders than
    ``preset``'s (kind, source, feature size) or names a layer the encoder does not have."""
    fix = (
        f"export with --preset {ckpt.preset}"
        if ckpt.preset != preset.name
        else "train the head with this preset (msa-train --preset ...)"
    )
    for mod in ckpt.config.modalities:
        if mod not in preset.encoders:
            raise CheckpointError(
                f"the head was trained with {mod} features but preset "
                f"{preset.name} has no {mod} encoder: {fix}"
            )
        card = preset.encoders[mod]
        info = ckpt.encoders.get(mod, {})
        kind, source = info.get("kind"), info.get("source")
        if kind is not None and kind != card.kind:
            raise CheckpointError(
                f"the head was trained on {kind} {mod} features ({source}, preset "
                f"{ckpt.preset}) but preset {preset.name} has a {card.kind} "
                f"{mod} encoder: {fix}"
            )
        if source is not None and source != card.source and ckpt.preset != preset.name:
            raise CheckpointError(
                f"the head was trained on {mod} features of {source} (preset "
                f"{ckpt.preset}) but preset {preset.name} encodes {mod} with "
                f"{card.source}: {fix}"
            )
        config = encoder_config(card, offline)
        if config is None:
            continue
        size = config.get("hidden_size")
        if isinstance(size, int) and ckpt.config.dims[mod] != size:
            raise CheckpointError(
                f"the head expects {ckpt.config.dims[mod]}-d {mod} features but "
                f"preset {preset.name} gives {size}-d: the checkpoint was "
                f"trained with preset {ckpt.preset}; {fix}"
            )
        blocks = config.get("num_hidden_layers")
        layer = ckpt.layers.get(mod)
        if isinstance(blocks, int) and layer is not None and not 0 <= layer < blocks:
            raise CheckpointError(
                f"the checkpoint's {mod} layer {layer} is beyond the encoder: "
                f"{card.source} has {blocks} blocks (valid 0..{blocks - 1}); "
                f"the checkpoint was trained with preset {ckpt.preset}: {fix}"
            )
        mix = ckpt.config.extra.get("layer_weights", {}).get(mod)
        if isinstance(blocks, int) and mix is not None and len(mix) != blocks + 1:
            raise CheckpointError(
                f"the checkpoint mixes {len(mix)} {mod} hidden states but "
                f"{card.source} has {blocks + 1}: {fix}"
            )


def match_checkpoint(preset: Preset, ckpt: Checkpoint, layers: dict[str, int]) -> Preset:
    """``preset`` narrowed to the checkpoint's modalities and cut at its layers (and layer mixes);
    a CheckpointError when a feature size or a ``--layer`` contradicts the checkpoint."""
    for mod in ckpt.config.modalities:
        if mod not in preset.encoders:
            raise CheckpointError(
                f"the head was trained with {mod} features but preset {preset.name} has no {mod} encoder"
            )
        card = preset.encoders[mod]
        size = card.config.get("hidden_size")
        if size is not None and ckpt.config.dims[mod] != size:
            raise CheckpointError(
                f"the head expects {ckpt.config.dims[mod]}-d {mod} features but "
                f"preset {preset.name} gives {size}-d: the checkpoint was "
                f"trained with preset {ckpt.preset}"
            )
        want = ckpt.layers.get(mod)
        if mod in layers and want is not None and layers[mod] != want:
            raise CheckpointError(
                f"--layer {mod}={layers[mod]} contradicts the checkpoint, "
                f"whose head was trained on {mod} layer {want}"
            )
    keep = {m: c for m, c in preset.encoders.items() if m in ckpt.config.modalities}
    preset = dataclasses.replace(preset, encoders=keep)
    preset = preset.with_layers({m: v for m, v in ckpt.layers.items() if m in keep})
    mixes = ckpt.config.extra.get("layer_weights", {})
    return preset._replace_encoders({m: {"layer_weights": tuple(w)} for m, w in mixes.items()})


def check_tuned(preset: Preset, ckpt: Checkpoint) -> None:
    """Fine-tuned encoder blocks (``msa-train --finetune``) fit only the encoder and layer they
    were trained from: a :class:`CheckpointError` for another preset, source, kind or layer."""
    for mod, tuned in ckpt.tuned.items():
        card = preset.encoders.get(mod)
        source = ckpt.encoders.get(mod, {}).get("source")
        trained = f"{tuned.get('blocks')} {mod} blocks fine-tuned from preset {ckpt.preset}"
        if ckpt.preset != preset.name or card is None:
            raise CheckpointError(
                f"the checkpoint holds {trained}; preset {preset.name} is another encoder: "
                f"export with --preset {ckpt.preset}"
            )
        if source is not None and card.source != source or tuned.get("kind", card.kind) != card.kind:
            raise CheckpointError(
                f"the checkpoint holds {trained} ({source}), not {card.source}: export with "
                f"--preset {ckpt.preset} and its own weights (no --random-weights or --source {mod}=...)"
            )
        if card.layer != tuned.get("layer"):
            raise CheckpointError(
                f"the checkpoint holds {trained} at layer {tuned.get('layer')}, not {card.layer}: "
                f"export at layer {tuned.get('layer')} (drop --layer {mod}=...)"
            )
