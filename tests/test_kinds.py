"""Registries of encoder and head kinds (issue 14): a kind registered from outside the package
is a valid preset kind, builds, cuts and exports like a built-in one, and has a FLOP count; a head
kind registered from outside is built, accepted by cards and offered by ``msa-train --head``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="the export side needs torch (pip install 'msa-edge[export]')")

from click.testing import CliRunner  # noqa: E402
from torch import nn  # noqa: E402

from msa_export.models import encoders as enc  # noqa: E402
from msa_export.models.heads import HeadConfig, build_head  # noqa: E402
from msa_export.presets import kinds  # noqa: E402
from msa_export.presets.registry import PresetError, parse_preset  # noqa: E402

HUBERT_CONFIG = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [32] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}


@pytest.fixture
def hubert() -> Iterator[kinds.EncoderKind]:
    """HuBERT, added the way a user adds a family: one registry entry (plus a card)."""
    kind = kinds.register_encoder_kind(
        kinds.EncoderKind("hubert", "audio", "HubertModel", "HubertConfig", flops=kinds.wav2vec2_flops)
    )
    yield kind
    kinds.ENCODER_KINDS.pop("hubert")


class MeanHead(nn.Module):
    """A trivial head from outside the package: the mean of each modality, summed, to a score."""

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self.out = nn.ModuleDict({m: nn.Linear(d, 1) for m, d in cfg.dims.items()})

    def forward(
        self, feats: list[torch.Tensor], masks: list[torch.Tensor], present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [
            lin((f * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)).squeeze(-1)
            for lin, f, m in zip(self.out.values(), feats, masks)
        ]
        score = (torch.stack(parts, 1) * present).sum(1)
        return score.clamp(-3.0, 3.0), present


@pytest.fixture
def mean_head() -> Iterator[kinds.HeadKind]:
    kind = kinds.register_head_kind(kinds.HeadKind("mean", MeanHead))
    yield kind
    kinds.HEAD_KINDS.pop("mean")


def _card(kind: str) -> dict[str, Any]:
    return {
        "name": "hubert-tiny",
        "audio": {"kind": kind, "source": "random", "layer": 1, "frame_stride": 10, "config": HUBERT_CONFIG},
    }


def test_builtin_registries_feed_the_lists() -> None:
    assert kinds.encoder_kinds("text") == ("bert",) and kinds.encoder_kinds("audio") == ("wavlm",)
    assert set(kinds.head_kinds()) >= {"gated", "cms"}
    assert kinds.head_kind("gated").gates and not kinds.head_kind("cms").gates
    assert set(enc.SPECS) == set(kinds.ENCODER_KINDS)
    with pytest.raises(PresetError, match="kind 'hubert' is not one of"):
        parse_preset(_card("hubert"))


def test_encoder_kind_registered_from_outside(hubert: kinds.EncoderKind) -> None:
    preset = parse_preset(_card("hubert"))
    card = preset.encoders["audio"]
    assert "hubert" in kinds.encoder_kinds("audio") and "hubert" in enc.SPECS
    spec = enc.SPECS["hubert"]
    assert spec.input_names == ("waveform",) and spec.model_class == "HubertModel"
    model = spec.build(card)
    config = model.config.to_dict()
    x = spec.make_inputs(card, config, spec.lengths(card, config)[0], 0)
    reference = enc.reference_output(card, model, x)  # block 1 of the full model, every 10th frame
    states = enc.all_states(card, model, x)  # what the feature cache stores
    assert states.shape[0] == enc.num_blocks(model) + 1
    torch.testing.assert_close(states[card.blocks], torch.from_numpy(reference[0]))
    wrapped = enc.wrap(card, enc.cut(model, card.blocks))
    with torch.no_grad():
        hidden, mask = wrapped(*x)
    torch.testing.assert_close(hidden, torch.from_numpy(reference), atol=1e-5, rtol=0)
    assert mask.shape == hidden.shape[:2]
    flops = hubert.count_flops(card.config, card.blocks, 16000)
    assert flops["total"] == sum(v for k, v in flops.items() if k not in ("total", "tokens"))
    assert flops["tokens"] == 49  # 1 s at 16 kHz through the 7-layer conv front end (320x)
    wavlm = kinds.encoder_kind("wavlm").count_flops(card.config, card.blocks, 16000)
    assert wavlm["total"] > flops["total"]  # WavLM adds its gated relative-position bias


def test_head_kind_registered_from_outside(mean_head: kinds.HeadKind) -> None:
    cfg = HeadConfig(kind="mean", dims={"text": 8, "audio": 4})
    head = build_head(cfg, seed=1)
    feats = [torch.ones(2, 3, 8), torch.ones(2, 5, 4)]
    masks = [torch.ones(2, 3), torch.ones(2, 5)]
    score, _ = head(feats, masks, torch.ones(2, 2))
    assert score.shape == (2,)
    preset = parse_preset(
        {
            "name": "p",
            "text": {"kind": "bert", "source": "random", "layer": 0, "config": {"num_hidden_layers": 2}},
            "head": {"kind": "mean"},
        }
    )
    assert preset.head.kind == "mean"
    from msa_export.training.cli import main as train_main

    result = CliRunner().invoke(train_main, ["--help"])
    assert result.exit_code == 0 and "mean" in result.output and "cms" in result.output
