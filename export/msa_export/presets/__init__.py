"""Presets: which encoders, cut at which layer, with which preprocessing and head.

- :mod:`~msa_export.presets.registry`: preset cards (TOML data in :mod:`msa_export.presets.cards`),
  :func:`get_preset`, :func:`register_preset`.
- :mod:`~msa_export.presets.kinds`: registries of encoder kinds and head kinds.
"""

from msa_export.presets.registry import (
    EncoderCard,
    Preset,
    get_preset,
    list_presets,
    load_card,
    register_preset,
)

__all__ = [
    "EncoderCard",
    "Preset",
    "get_preset",
    "load_card",
    "list_presets",
    "register_preset",
]
