"""msa-export: cut encoders, exported files, validation, pack contract and bad input."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from msa_export.cli import main as export_main
from msa_export.convert import onnx_file as convert
from msa_export.errors import ValidationError
from msa_export.gate import checks as gate
from msa_export.models import encoders as enc
from msa_export.models.heads import HeadConfig, build_head, save_checkpoint
from msa_export.pack.build import build_pack, default_precisions
from msa_export.presets.registry import get_preset
from msa_runtime.engine.sessions import make_session
from msa_runtime.errors import PackError
from msa_runtime.pack import load_manifest, write_manifest


def _block_indices(path: Path) -> set[int]:
    """Indices of the transformer blocks that the ONNX graph's node names mention."""
    names = " ".join(n.name for n in onnx.load(str(path)).graph.node)
    return {int(i) for i in re.findall(r"/(?:layer|layers)\.(\d+)/", names)}


def test_pack_contract(tiny_pack: Path) -> None:
    m = load_manifest(tiny_pack)
    assert m.modalities == ("text", "audio", "vision")
    assert not m.head.trained
    for mod, e in m.encoders.items():
        # ov-int8 too when NNCF and the OpenVINO plugin are installed and the file passed its
        # gate (tests/test_openvino.py checks it)
        assert {"int8", "fp16", "fp32"} <= set(e.files) <= set(default_precisions())
        assert e.layer == get_preset("tiny").encoders[mod].layer
    assert {"torch", "onnx", "onnxruntime", "transformers"} <= set(m.tools)
    assert m.validation and all("max_abs" in c for c in m.validation)
    assert "tokenizer.json" in m.files
    assert not list(tiny_pack.parent.glob(".*partial*")), "temp folder left behind"


def test_exported_graph_keeps_only_the_blocks_up_to_the_layer(tiny_pack: Path) -> None:
    tiny = get_preset("tiny")
    for mod, card in tiny.encoders.items():
        assert _block_indices(tiny_pack / f"{mod}.fp32.onnx") == set(range(card.layer + 1)), mod


@pytest.mark.parametrize(
    "mod,overrides",
    [
        ("text", {}),
        ("vision", {}),
        ("audio", {}),
        ("audio", {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}),
    ],
)
def test_cut_reproduces_full_model_hidden_state(mod: str, overrides: dict) -> None:
    base = get_preset("tiny").encoders[mod]
    for layer in range(base.config["num_hidden_layers"]):
        card = dataclasses.replace(base, layer=layer, config={**base.config, **overrides})
        spec = enc.SPECS[card.kind]
        model = spec.build(card)
        x = spec.make_inputs(card, model.config.to_dict(), spec.lengths(card, {})[-1], 0)
        ref = enc.reference_output(card, model, x)
        with torch.no_grad():
            out = enc.wrap(card, enc.cut(model, card.blocks))(*x)
        got = (out[0] if isinstance(out, tuple) else out).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-5, err_msg=f"{mod} layer {layer}")


def test_int8_quantizes_matmul_only_and_spares_relative_position(tiny_pack: Path) -> None:
    audio = onnx.load(str(tiny_pack / "audio.int8.onnx")).graph
    ops = {n.op_type for n in audio.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert "ConvInteger" not in ops
    rel = [n for n in audio.node if "gru_rel_pos" in n.name and n.op_type.startswith("MatMul")]
    assert rel and all(n.op_type == "MatMul" for n in rel)


def test_dynamic_batch_and_length(tiny_pack: Path) -> None:
    text = make_session(tiny_pack / "text.fp32.onnx", "cpu")
    for batch, length in [(1, 5), (3, 40)]:
        ids = np.full((batch, length), 2000, np.int64)
        out, mask = text.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        assert out.shape == (batch, length, 32) and mask.shape == (batch, length)
    audio = make_session(tiny_pack / "audio.int8.onnx", "cpu")
    for seconds in (0.5, 7.0):
        hidden, mask = audio.run(None, {"waveform": np.zeros((1, int(16000 * seconds)), np.float32)})
        assert hidden.shape[1] == pytest.approx(5 * seconds, abs=1)  # 5 frames per second
    vision = make_session(tiny_pack / "vision.int8.onnx", "cpu")
    assert vision.run(None, {"pixel_values": np.zeros((7, 3, 32, 32), np.float32)})[0].shape == (7, 32)


def test_tampered_file_and_newer_format_are_refused(tiny_pack: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_pack, copy)
    head = copy / "head.onnx"
    head.write_bytes(head.read_bytes()[:-1] + b"\0")
    with pytest.raises(PackError, match="head.onnx does not match its sha256"):
        load_manifest(copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["format_version"] = 99
    write_manifest(copy, data)
    with pytest.raises(PackError, match="format version 99.*upgrade"):
        load_manifest(copy)
    data["format_version"] = 1
    data["files"]["../escape"] = {"sha256": "0"}
    write_manifest(copy, data)
    with pytest.raises(PackError, match="outside the pack"):
        load_manifest(copy)


def test_analyzer_hashes_the_encoder_files_it_loads(tiny_pack: Path, tmp_path: Path) -> None:
    """An encoder file is hashed when it is loaded; its unused variants are not read."""
    import shutil
    import warnings

    from msa_runtime import Analyzer
    from msa_runtime.pack import verify_files

    copy = tmp_path / "copy"
    shutil.copytree(tiny_pack, copy)
    fp32 = copy / "audio.fp32.onnx"
    fp32.write_bytes(fp32.read_bytes()[:-1] + b"\0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert Analyzer(copy, providers="cpu", precision="int8").plan["audio"].file == "audio.int8.onnx"
        with pytest.raises(PackError, match="audio.fp32.onnx does not match its sha256"):
            Analyzer(copy, providers="cpu", precision="fp32")
        loaded: list[str] = []  # a file is hashed before its session loads it

        def record(path: Path, providers: list[str], threads: int | None) -> object:
            from msa_runtime.engine.sessions import make_session

            loaded.append(path.name)
            return make_session(path, providers, threads=threads)

        with pytest.raises(PackError, match="audio.fp32.onnx does not match its sha256"):
            Analyzer(copy, providers="cpu", precision="fp32", session_factory=record)
        assert loaded and "audio.fp32.onnx" not in loaded
    manifest = load_manifest(copy, encoder_files=False)
    with pytest.raises(PackError, match="audio.fp32.onnx does not match"):
        verify_files(copy, manifest, ["audio.int8.onnx", "audio.fp32.onnx"])
    with pytest.raises(PackError, match="audio.fp32.onnx does not match"):
        load_manifest(copy)


def test_failed_validation_names_file_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gate, "FP32_ATOL", 0.0)
    out = tmp_path / "pack"
    with pytest.raises(ValidationError, match=r"text\.fp32\.onnx: output hidden .*max \|diff\|"):
        build_pack(get_preset("tiny"), out, precisions=["fp32"])
    assert not out.exists() and not list(tmp_path.iterdir())


def test_trained_head_checkpoint_is_exported_and_its_layers_used(tmp_path: Path) -> None:
    cfg = HeadConfig(kind="gated", dims={"text": 32}, hidden=16, embed=8)
    head = build_head(cfg, seed=3)
    ckpt = tmp_path / "head.pt"
    save_checkpoint(ckpt, head, cfg, layers={"text": 1}, encoders={"text": {"kind": "bert"}}, preset="tiny")
    pack = build_pack(get_preset("tiny"), tmp_path / "pack", head=ckpt, precisions=["int8"]).out
    m = load_manifest(pack)
    assert m.head.trained and m.modalities == ("text",) and m.encoders["text"].layer == 1
    assert _block_indices(pack / "text.int8.onnx") <= {0, 1}


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(export_main, list(args))
    return result.exit_code, result.output


def test_cli_bad_input_is_one_line_and_nonzero(tmp_path: Path, tiny_pack: Path) -> None:
    code, out = _run("--preset", "nope", "--out", str(tmp_path / "x"))
    assert code == 2 and "unknown preset 'nope'; valid:" in out and "Traceback" not in out
    code, out = _run("--preset", "tiny", "--out", str(tmp_path / "x"), "--layer", "vision=9")
    assert code == 2 and "vision.layer 9 is out of range" in out
    code, out = _run("--preset", "tiny", "--out", str(tiny_pack))
    assert code == 2 and "already exists; pass --force" in out
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder cannot be made below a file, even as root
    code, out = _run("--preset", "tiny", "--out", str(blocker / "sub" / "pack"))
    assert code == 2 and "cannot write" in out and "Not a directory" in out
    code, out = _run("--preset", "tiny", "--out", str(tmp_path / "y"), "--layer", "smell=1")
    assert code == 2 and "MODALITY=VALUE" in out
    bad = tmp_path / "bad.pt"
    cfg = HeadConfig(kind="gated", dims={"text": 1024})
    save_checkpoint(bad, build_head(cfg), cfg, layers={"text": 19}, encoders={}, preset="ando2022-mosi")
    code, out = _run("--preset", "tiny", "--out", str(tmp_path / "z"), "--head", str(bad))
    assert code == 2 and "expects 1024-d text features" in out
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    code, out = _run("--preset", "tiny", "--out", str(tmp_path / "z"), "--head", str(tmp_path / "junk.pt"))
    assert code == 2 and "not a readable head checkpoint" in out
    assert not (tmp_path / "z").exists()


def test_cli_list_presets() -> None:
    code, out = _run("--list-presets")
    assert code == 0 and "ando2022-mosi" in out and "bert@19" in out


def test_remove_onnx_takes_its_external_data_along(tmp_path: Path) -> None:
    """A file dropped from a pack (fp32 not asked for, the Conv export of a MatMul front end)
    leaves no external-data file behind, which the manifest would then have to list."""
    big, small = tmp_path / "a.fp32.onnx", tmp_path / "b.fp32.onnx"
    for f in (big, small, tmp_path / "a.fp32.onnx.data"):
        f.write_bytes(b"x")
    convert.remove_onnx(big)
    convert.remove_onnx(small)
    assert not list(tmp_path.iterdir())
