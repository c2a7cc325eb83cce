"""The MatMul rewrite of WavLM's convolutional front end (msa_export.frontend): same function."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from msa_export.frontend import (  # noqa: E402
    MatMulFeatureEncoder,
    StridedMatMul,
    rewrite_frontend,
    smooth_frontend,
)


def _model(norm: str) -> object:
    torch.manual_seed(0)
    config = transformers.WavLMConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=[48] * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm=norm,
        do_stable_layer_norm=norm == "layer",
        conv_bias=norm == "layer",
    )
    return transformers.WavLMModel(config).eval()


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_rewrite_matches_the_conv_front_end(norm: str) -> None:
    model = _model(norm)
    original = model.feature_extractor
    rewritten = MatMulFeatureEncoder(original).eval()
    with torch.no_grad():
        for samples in (400, 401, 719, 16000, 23457):  # odd lengths exercise every remainder
            x = torch.randn(2, samples)
            want, got = original(x), rewritten(x)
            assert got.shape == want.shape
            assert float((got - want).abs().max()) < 1e-5
        whole = model(x).last_hidden_state
        rewrite_frontend(model)
        assert isinstance(model.feature_extractor, MatMulFeatureEncoder)
        assert float((model(x).last_hidden_state - whole).abs().max()) < 1e-4
        smooth_frontend(model, [torch.randn(1, 8000)])  # SmoothQuant: the same fp32 function
        assert float((model(x).last_hidden_state - whole).abs().max()) < 1e-4


def test_only_supported_convolutions_are_rewritten() -> None:
    with pytest.raises(ValueError, match="kernel"):
        StridedMatMul(torch.nn.Conv1d(4, 4, kernel_size=5, stride=2))
    with pytest.raises(ValueError, match="unpadded"):
        StridedMatMul(torch.nn.Conv1d(4, 4, kernel_size=3, stride=2, padding=1))
    plain = torch.nn.Linear(3, 3)
    assert rewrite_frontend(plain) is plain
