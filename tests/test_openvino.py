"""OpenVINO as a provider (ONNX Runtime's OpenVINO EP plugin), the pack's ov-int8 file (NNCF), its
calibration, and the per-machine tuning record. Tests that need the plugin or NNCF skip with a
reason when they are absent; scripts/setup.sh installs both, so CI runs them."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner
from media_factory import make_clip

from msa_runtime import Analyzer
from msa_runtime.cli import main as run_main
from msa_runtime.errors import PackError, ProviderError
from msa_runtime.pack import load_manifest, sha256_file
from msa_runtime.sessions import CPU, OPENVINO, resolve_providers

HAVE_PLUGIN = importlib.util.find_spec("onnxruntime_ep_openvino") is not None
HAVE_NNCF = importlib.util.find_spec("nncf") is not None
plugin = pytest.mark.skipif(
    not HAVE_PLUGIN, reason="onnxruntime-ep-openvino is not installed (pip install 'msa-edge[openvino]')"
)
nncf = pytest.mark.skipif(
    not (HAVE_PLUGIN and HAVE_NNCF),
    reason="NNCF and the OpenVINO plugin "
    "are needed for ov-int8 files (pip install 'msa-edge[export,openvino]')",
)


def quiet_analyzer(pack: Path, **kwargs: object) -> Analyzer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the untrained-head warning
        return Analyzer(pack, **kwargs)  # type: ignore[arg-type]


def clip_arrays() -> dict[str, object]:
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    return {
        "frames": rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8),
        "audio": (0.1 * np.sin(2 * np.pi * 180 * t)).astype(np.float32),
        "sample_rate": 16000,
        "text": "what a wonderful surprise",
    }


# -- providers ------------------------------------------------------------------------------


def test_missing_plugin_is_a_typed_error_naming_the_extra() -> None:
    with mock.patch("msa_runtime.sessions.openvino_installed", return_value=False):
        assert resolve_providers("auto") == [CPU]
        with pytest.raises(ProviderError, match=r"msa-edge\[openvino\]") as info:
            resolve_providers("openvino")
    assert "\n" not in str(info.value)


@plugin
def test_auto_picks_openvino_and_says_so(tiny_pack: Path) -> None:
    assert resolve_providers("auto") == [OPENVINO, CPU]
    assert resolve_providers("openvino") == [OPENVINO, CPU]
    an = quiet_analyzer(tiny_pack, providers="auto", threads=1)
    assert an.providers[0] == OPENVINO and "auto picked OpenVINO" in an.choice
    assert all(OPENVINO in s.get_providers() for s in an.sessions.values())
    assert an.head.get_providers() == [CPU]  # the tiny fp32 head stays exact
    result = CliRunner().invoke(
        run_main, ["--pack", str(tiny_pack), "--providers", "auto", "--text", "great", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    assert any(line.startswith("note: auto picked OpenVINO") for line in result.stderr.splitlines())


@plugin
def test_openvino_device_that_is_not_there() -> None:
    with pytest.raises(ProviderError, match="OpenVINO device NPU9 is not there; this machine offers"):
        resolve_providers("openvino:NPU9")


@plugin
def test_plugin_that_fails_to_load_is_a_one_line_error(tmp_path: Path) -> None:
    code = (
        "import onnxruntime_ep_openvino as p, sys\n"
        f"p.get_library_path = lambda: {str(tmp_path / 'missing.so')!r}\n"
        "from msa_runtime.sessions import resolve_providers\n"
        "from msa_runtime.errors import ProviderError\n"
        "try:\n    resolve_providers('openvino')\n"
        "except ProviderError as e:\n    print('ERR', e); sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    line = proc.stdout.strip()
    assert line.startswith("ERR the OpenVINO plugin failed to load") and "msa-edge[openvino]" in line


@plugin
def test_pack_without_a_file_for_openvino(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from msa_export.build import build_pack
    from msa_export.presets import get_preset

    pack = build_pack(get_preset("tiny"), tmp_path / "int8only", precisions=["int8"]).out
    with pytest.raises(PackError, match="no text file for OpenVINO .*--precision int8,fp32,ov-int8"):
        quiet_analyzer(pack, providers="openvino")
    result = CliRunner().invoke(run_main, ["--pack", str(pack), "--providers", "openvino", "--text", "hi"])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output


# -- the ov-int8 file -----------------------------------------------------------------------


@nncf
def test_pack_has_ov_int8_files_checked_through_openvino(tiny_pack: Path) -> None:
    manifest = load_manifest(tiny_pack)
    checks = [c for c in manifest.validation if c.get("provider") == "openvino"]
    assert checks, "no parity checks through OpenVINO"
    for mod, entry in manifest.encoders.items():
        ov = entry.provider_precisions("openvino")
        assert ov, mod
        assert entry.provider_precisions("cpu")[0] == "int8"
        assert entry.providers["cuda"][0] == "fp16"
        for precision in ov:  # what OpenVINO may run passed the gate through OpenVINO
            own = [c for c in checks if c["file"] == entry.files[precision]]
            assert own and all(c["cosine"] >= 0.999 for c in own), (mod, precision)
        if "ov-int8" in entry.files:
            assert ov[0] == "ov-int8"
            model = __import__("onnx").load(str(tiny_pack / entry.files["ov-int8"]))
            assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)  # static QDQ
    assert any("ov-int8" in e.files for e in manifest.encoders.values())


@nncf
def test_openvino_scores_follow_the_cpu_pack(tiny_pack: Path) -> None:
    cpu = quiet_analyzer(tiny_pack, providers="cpu", threads=1)
    ov = quiet_analyzer(tiny_pack, providers="openvino", threads=1, tuning=False)
    manifest = load_manifest(tiny_pack)
    for mod, c in ov.plan.items():
        assert (
            c.file == manifest.encoders[mod].files[manifest.encoders[mod].provider_precisions("openvino")[0]]
        )
        assert c.provider == "openvino"
    assert cpu.warm_up() == {}  # the CPU EP has no one-time setup to pay
    warmed = ov.warm_up()
    assert set(warmed) == set(ov.plan) and all(ms > 0 for ms in warmed.values())
    assert ov.warm_up() is warmed  # once per Analyzer
    a = cpu.predict_arrays(**clip_arrays())  # type: ignore[arg-type]
    b = ov.predict_arrays(**clip_arrays())  # type: ignore[arg-type]
    assert b.modalities == a.modalities and abs(a.score - b.score) < 0.05


def test_ov_int8_needs_its_extras(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from msa_export.build import build_pack
    from msa_export.convert import ExportError
    from msa_export.presets import get_preset

    with (
        mock.patch(
            "msa_export.build.openvino_ready",
            return_value="NNCF is not installed: pip install 'msa-edge[export]'",
        ),
        pytest.raises(ExportError, match=r"ov-int8 needs NNCF .*msa-edge\[export\]"),
    ):
        build_pack(get_preset("tiny"), tmp_path / "p", precisions=["int8", "ov-int8"])
    assert not (tmp_path / "p").exists()


# -- calibration ----------------------------------------------------------------------------


def test_calibration_sources(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from msa_export.openvino import CalibrationError, calibration_clips, clip_feeds
    from msa_export.presets import get_preset

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="holds no media files"):
        calibration_clips(empty, None)
    with pytest.raises(CalibrationError, match="no such file or folder"):
        calibration_clips(tmp_path / "nowhere", None)
    clips, where = calibration_clips(None, None)
    assert clips is None and where.startswith("synthetic default")
    folder = tmp_path / "clips"
    folder.mkdir()
    make_clip(folder / "a.mp4", duration=1.5, size=(96, 64), sample_rate=16000, channels=1)
    (folder / "a.txt").write_text("it was a lovely day", encoding="utf-8")
    clips, where = calibration_clips(folder, None)
    assert clips is not None and len(clips) == 1 and clips[0].text == "it was a lovely day"
    preset = get_preset("tiny")
    vision, audio = preset.encoders["vision"], preset.encoders["audio"]
    [v] = clip_feeds(vision, clips, ["pixel_values"], None, None)
    size = vision.prep.image_size
    assert v["pixel_values"].shape[1:] == (3, size, size) and v["pixel_values"].shape[0] >= 1
    [a] = clip_feeds(audio, clips, ["waveform"], None, None)
    assert a["waveform"].shape[0] == 1 and abs(a["waveform"].shape[1] - 24000) < 2000  # 1.5 s


def test_export_cli_rejects_an_empty_calibration_folder(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    if not (HAVE_PLUGIN and HAVE_NNCF):
        pytest.skip("NNCF and the OpenVINO plugin are needed for --calibrate")
    from msa_export.cli import main as export_main

    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "pack"
    result = CliRunner().invoke(
        export_main,
        ["--preset", "tiny", "--out", str(out), "--precision", "int8,ov-int8", "--calibrate", str(empty)],
    )
    assert result.exit_code != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "holds no media files" in errors[0], result.output
    assert not out.exists() and not list(tmp_path.glob(".pack.partial*"))


# -- tuning ---------------------------------------------------------------------------------


def test_tuning_record_beside_the_pack(tiny_pack: Path, tmp_path: Path) -> None:
    pack = tmp_path / "tiny"
    shutil.copytree(tiny_pack, pack)
    hashes = {p.name: sha256_file(p) for p in pack.iterdir()}
    result = CliRunner().invoke(
        run_main, ["--pack", str(pack), "--tune", "--threads", "1", "--providers", "cpu"]
    )
    assert result.exit_code == 0, result.output
    record_path = tmp_path / "tiny.tuning.json"
    assert record_path.is_file() and not (pack / "tiny.tuning.json").exists()
    assert {p.name: sha256_file(p) for p in pack.iterdir()} == hashes  # the pack is untouched
    load_manifest(pack)
    record = json.loads(record_path.read_text())
    for e in record["encoders"].values():
        assert {c["precision"] for c in e["candidates"]} >= {"int8", "fp32"}
        assert e["best"]["median_ms"] == min(c["median_ms"] for c in e["candidates"])
        # make the record's choice visible: fp32 is "fastest" for every encoder
        e["best"] = e["best_per_provider"]["cpu"] = next(
            c for c in e["candidates"] if c["precision"] == "fp32"
        )
    record_path.write_text(json.dumps(record))
    an = quiet_analyzer(pack, providers="cpu")
    assert an.precision == "fp32" and "tuning record tiny.tuning.json" in an.choice
    assert all(c.reason == "tuning" for c in an.plan.values())
    assert quiet_analyzer(pack, providers="cpu", tuning=False).precision == "int8"
    assert quiet_analyzer(pack, providers="cpu", precision="int8").precision == "int8"
    record["manifest_sha256"] = "0" * 64  # a record for another build of the pack
    record_path.write_text(json.dumps(record))
    stale = quiet_analyzer(pack, providers="cpu")
    assert stale.precision == "int8" and "made for another build" in stale.choice


@plugin
def test_tune_times_openvino_candidates(tiny_pack: Path, tmp_path: Path) -> None:
    from msa_runtime.tuning import tune

    pack = tmp_path / "tiny"
    shutil.copytree(tiny_pack, pack)
    path, record = tune(pack, load_manifest(pack), resolve_providers("openvino"), threads=1, repeat=2)
    assert path == tmp_path / "tiny.tuning.json"
    for mod, e in record["encoders"].items():
        providers = {c["provider"] for c in e["candidates"]}
        assert providers == {"openvino", "cpu"}, mod
    an = quiet_analyzer(pack, providers="auto", threads=1)
    for mod, c in an.plan.items():
        best = record["encoders"][mod]["best"]
        assert (c.provider, c.precision, c.reason) == (best["provider"], best["precision"], "tuning")


@plugin
def test_openvino_session_keeps_to_its_threads(tmp_path: Path) -> None:
    """threads=1 on OpenVINO uses one core: the plugin's num_of_threads alone left both busy."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from msa_runtime.sessions import make_session, openvino_options

    assert json.loads(openvino_options("CPU", 1)["load_config"]) == {"CPU": {"INFERENCE_NUM_THREADS": "1"}}
    assert "load_config" not in openvino_options("GPU", 2) and openvino_options("CPU", None) == {}
    rng = np.random.default_rng(0)
    nodes, inits, last = [], [], "x"
    for i in range(6):  # a MatMul chain heavy enough for OpenVINO to spread over threads
        inits.append(numpy_helper.from_array(rng.standard_normal((1024, 1024)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [last, f"w{i}"], [f"h{i}"]))
        last = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 1024])],
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, [256, 1024])],
        inits,
    )
    path = tmp_path / "chain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    session = make_session(path, "openvino", threads=1)
    x = rng.standard_normal((256, 1024)).astype(np.float32)
    session.run(None, {"x": x})
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(200):  # bounded: stops after 0.5 s of work
        session.run(None, {"x": x})
        if time.perf_counter() - wall0 > 0.5:
            break
    ratio = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    assert ratio < 1.3, f"threads=1 kept {ratio:.2f} cores busy"
