"""The MatMul rewrite of WavLM's convolutional front end (msa_export.models.wavlm_frontend): same function."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from msa_export.models.wavlm_frontend import (  # noqa: E402
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


def test_layer_norm_front_end_ships_as_matmuls_in_the_fp32_file(tmp_path: object) -> None:
    """A WavLM Large-style audio encoder (layer-norm front end): the pack's fp32 file computes the
    front end with MatMuls, its int8 and fp16 files keep the Conv form, every file passes the gate,
    and the Conv export used for them does not stay in the pack."""
    import dataclasses
    import importlib.util
    from pathlib import Path

    import numpy as np
    import onnx

    from msa_export.pack.build import build_pack
    from msa_export.presets.registry import get_preset
    from msa_runtime.engine.sessions import make_session

    preset = get_preset("tiny")
    audio = preset.encoders["audio"]
    layer_norm = {
        **audio.config,
        "feat_extract_norm": "layer",
        "do_stable_layer_norm": True,
        "conv_bias": True,
    }
    preset = dataclasses.replace(preset, encoders={"audio": dataclasses.replace(audio, config=layer_norm)})
    ov = all(importlib.util.find_spec(m) for m in ("nncf", "onnxruntime_ep_openvino"))
    out = Path(str(tmp_path)) / "pack"
    build_pack(preset, out, precisions=["fp32", "int8", "fp16", *(["ov-int8"] if ov else [])])

    def convs(name: str) -> int:
        return sum(n.op_type == "Conv" for n in onnx.load(str(out / name)).graph.node)

    assert convs("audio.fp32.onnx") == 1  # the positional conv: the whole front end is MatMuls
    assert convs("audio.int8.onnx") == convs("audio.fp16.onnx") == 8  # 7 front-end layers + positional
    assert not list(out.glob(".*")), "the Conv export stayed in the pack"
    if ov:  # OpenVINO's int8 placements: convolutions left out, then (the fallback) quantized
        from msa_export.convert.openvino import quantize_openvino

        feeds = [
            {"waveform": np.random.default_rng(s).standard_normal((1, 16000)).astype(np.float32)}
            for s in (1, 2)
        ]
        for convs in (False, True):
            dst = quantize_openvino(
                out / "audio.fp32.onnx", out.parent / f"q{convs}.onnx", feeds, quantize_convs=convs
            )
            graph = onnx.load(str(dst)).graph
            made_by = {o: n.op_type for n in graph.node for o in n.output}
            conv_inputs = [made_by.get(i) for n in graph.node if n.op_type == "Conv" for i in n.input]
            assert conv_inputs and ("DequantizeLinear" in conv_inputs) == convs
    wave = np.random.default_rng(0).standard_normal((1, 24000)).astype(np.float32)
    got = {
        name: make_session(out / name, "cpu").run(None, {"waveform": wave})[0]
        for name in ("audio.fp32.onnx", "audio.int8.onnx")
    }
    a, b = (v.ravel() for v in got.values())
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.999
