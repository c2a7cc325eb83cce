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
from msa_runtime.cli.run import main as run_main
from msa_runtime.engine.openvino import (
    NATIVE,
    PLUGIN,
    describe_routes,
    native_installed,
    pick_route,
    plugin_installed,
    route_status,
)
from msa_runtime.engine.sessions import CPU, OPENVINO_ROUTES, import_ort, make_session, resolve_providers
from msa_runtime.errors import PackError, ProviderError
from msa_runtime.pack import load_manifest, sha256_file

ORT = import_ort()
ROUTE = pick_route(ORT, "CPU")  # None where no OpenVINO route offers this CPU (AMD with the plugin only)
USABLE = [r for r, st in zip(OPENVINO_ROUTES, route_status(ORT)) if st.usable]
HAVE_NNCF = importlib.util.find_spec("nncf") is not None
openvino = pytest.mark.skipif(
    ROUTE is None, reason=f"no OpenVINO route offers this machine's CPU ({describe_routes(ORT)})"
)
nncf = pytest.mark.skipif(
    ROUTE is None or not HAVE_NNCF,
    reason="ov-int8 files need NNCF and an OpenVINO route that offers this CPU "
    f"(pip install 'msa-edge[export,openvino]'; here: {describe_routes(ORT)})",
)
needs_plugin = pytest.mark.skipif(not plugin_installed(), reason="onnxruntime-ep-openvino is not installed")


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


# -- engines: present, absent, installed but offering no device -------------------------------


def test_missing_openvino_is_a_typed_error_naming_the_extra() -> None:
    with (
        mock.patch("msa_runtime.engine.openvino.native_installed", return_value=False),
        mock.patch("msa_runtime.engine.openvino.plugin_installed", return_value=False),
    ):
        assert resolve_providers("auto") == [CPU]
        with pytest.raises(ProviderError, match=r"msa-edge\[openvino\]") as info:
            resolve_providers("openvino")
    assert "\n" not in str(info.value)


def test_plugin_installed_without_a_device_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ONNX Runtime's plugin does on an AMD CPU: it registers and offers nothing."""
    monkeypatch.delenv("MSA_EDGE_HIDE_DEVICES", raising=False)
    with (
        mock.patch("msa_runtime.engine.openvino.plugin_installed", return_value=True),
        mock.patch("msa_runtime.engine.openvino.plugin_devices", return_value={}),
        mock.patch("msa_runtime.engine.openvino.native_installed", return_value=False),
    ):
        assert resolve_providers("auto") == [CPU]
        assert "openvino-ep installed but offers no device on this machine" in describe_routes(ORT)
        with pytest.raises(ProviderError, match="offers no device") as info:
            resolve_providers("openvino-ep")
    assert "\n" not in str(info.value) and "--providers cpu" in str(info.value)


@pytest.mark.parametrize("hide", ["openvino-ep", "openvino", "openvino-ep,openvino-native"])
def test_hidden_devices_are_not_offered(monkeypatch: pytest.MonkeyPatch, hide: str) -> None:
    monkeypatch.setenv("MSA_EDGE_HIDE_DEVICES", hide)
    status = {s.route: s for s in route_status(ORT)}
    assert status["openvino-ep"].devices == ()
    if plugin_installed():  # absent, the route says so instead
        assert "MSA_EDGE_HIDE_DEVICES" in status["openvino-ep"].why
    both = hide != "openvino-ep"
    assert resolve_providers("auto")[0] != PLUGIN
    if both:
        assert resolve_providers("auto") == [CPU]
        why = (
            "hidden by MSA_EDGE_HIDE_DEVICES"
            if native_installed()
            else r"openvino not installed.*msa-edge\[openvino\]"
        )
        with pytest.raises(ProviderError, match=why):
            resolve_providers("openvino")


def test_hide_devices_names_its_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    from msa_runtime.errors import InputError

    monkeypatch.setenv("MSA_EDGE_HIDE_DEVICES", "openvino,gpu")
    with pytest.raises(InputError, match="names gpu; valid: openvino-ep, openvino-native, openvino"):
        resolve_providers("auto")


def test_broken_native_runtime_falls_back_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSA_EDGE_HIDE_DEVICES", raising=False)

    def broken() -> object:
        raise RuntimeError("libopenvino_intel_cpu_plugin.so: cannot open shared object file")

    with (
        mock.patch("msa_runtime.engine.openvino.native_installed", return_value=True),
        mock.patch("msa_runtime.engine.openvino._core", side_effect=broken),
    ):
        assert resolve_providers("auto")[0] != NATIVE
        assert "openvino-native is broken: OpenVINO's runtime is installed but fails to start" in (
            describe_routes(ORT)
        )
        with pytest.raises(ProviderError, match="cannot open shared object file") as info:
            resolve_providers("openvino-native")
    assert "\n" not in str(info.value)


@openvino
def test_auto_picks_openvino_and_says_so(tiny_pack: Path) -> None:
    assert resolve_providers("auto") == [ROUTE, CPU]
    assert resolve_providers("openvino") == [ROUTE, CPU]
    an = quiet_analyzer(tiny_pack, providers="auto", threads=1)
    assert an.providers[0] == ROUTE and "auto picked OpenVINO" in an.choice
    assert all(ROUTE in s.get_providers() for s in an.sessions.values())
    assert an.head.get_providers() == [CPU]  # the tiny fp32 head stays exact
    result = CliRunner().invoke(
        run_main, ["--pack", str(tiny_pack), "--providers", "auto", "--text", "great", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    assert any(line.startswith("note: auto picked OpenVINO") for line in result.stderr.splitlines())


@openvino
def test_openvino_device_that_is_not_there() -> None:
    with pytest.raises(ProviderError, match="OpenVINO device NPU9 is not there; openvino-.* offers CPU"):
        resolve_providers("openvino:NPU9")


@needs_plugin
def test_plugin_that_fails_to_load_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSA_EDGE_HIDE_DEVICES", raising=False)
    code = (
        "import onnxruntime_ep_openvino as p, sys\n"
        f"p.get_library_path = lambda: {str(tmp_path / 'missing.so')!r}\n"
        "from msa_runtime.engine.sessions import resolve_providers\n"
        "from msa_runtime.errors import ProviderError\n"
        "print('AUTO', resolve_providers('auto')[0])\n"
        "try:\n    resolve_providers('openvino-ep')\n"
        "except ProviderError as e:\n    print('ERR', e); sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    auto, line = proc.stdout.strip().splitlines()
    assert auto != f"AUTO {PLUGIN}"  # auto never picks a route that is broken
    assert line.startswith(
        "ERR OpenVINO (openvino-ep) is not usable here: is broken: the OpenVINO plugin failed"
    )
    assert "msa-edge[openvino]" in line


# -- OpenVINO's own runtime ------------------------------------------------------------------

native = pytest.mark.skipif(
    NATIVE not in USABLE, reason=f"OpenVINO's runtime offers no CPU here ({describe_routes(ORT)})"
)


@native
def test_native_session_has_the_session_interface(tiny_pack: Path, tmp_path: Path) -> None:
    from msa_runtime.engine.interface import Session

    manifest = load_manifest(tiny_pack)
    path = tiny_pack / manifest.encoders["text"].files["fp32"]
    ov = make_session(path, "openvino-native", threads=1, cache=tmp_path / "cache")
    cpu = make_session(path, "cpu", threads=1)
    assert isinstance(ov, Session) and ov.get_providers() == [NATIVE]
    assert [(i.name, i.type, len(i.shape)) for i in ov.get_inputs()] == [
        (i.name, i.type, len(i.shape)) for i in cpu.get_inputs()
    ]
    assert [o.name for o in ov.get_outputs()] == [o.name for o in cpu.get_outputs()]
    ids = np.array([[101, 2023, 3185, 2001, 2307, 102]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    [a] = cpu.run(["hidden"], feeds)
    [b] = ov.run(["hidden"], feeds)
    cos = float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert b.shape == a.shape and b.dtype == np.float32 and cos > 0.999
    assert list((tmp_path / "cache").iterdir()), "no compiled model in the cache folder"
    with pytest.raises(ProviderError, match=r"outputs \['score'\] asked of a model that gives \['hidden'"):
        ov.run(["score"], feeds)
    with pytest.raises(ProviderError, match=r"inputs \['input_ids'\] given to a model that takes"):
        ov.run(None, {"input_ids": ids})  # OpenVINO alone would reuse the last attention_mask
    from msa_runtime.engine.openvino import _reason

    raw = "Exception from src/a.cpp:224:\nException from src/b.cpp:794:\nFailed to broadcast shapes\n\n"
    assert _reason(RuntimeError(raw)) == "Failed to broadcast shapes"  # OpenVINO's messages, one line


@native
def test_compile_cache_that_is_corrupt_or_unwritable(tiny_pack: Path, tmp_path: Path) -> None:
    path = tiny_pack / load_manifest(tiny_pack).encoders["audio"].files["fp32"]
    wave = {"waveform": clip_arrays()["audio"][None, :16000]}  # type: ignore[index]
    cache = tmp_path / "cache"
    [first] = make_session(path, "openvino-native", threads=1, cache=cache).run(["hidden"], wave)
    for blob in cache.iterdir():  # a blob another version or a crash left: OpenVINO compiles again
        blob.write_bytes(b"not a compiled model")
    [again] = make_session(path, "openvino-native", threads=1, cache=cache).run(["hidden"], wave)
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-5)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.warns(RuntimeWarning, match="cannot be written.*MSA_EDGE_OPENVINO_CACHE"):
        s = make_session(path, "openvino-native", threads=1, cache=blocked / "cache")
    np.testing.assert_allclose(s.run(["hidden"], wave)[0], first, rtol=1e-5, atol=1e-5)
    assert make_session(path, "openvino-native", threads=1, cache="off").cache is None  # type: ignore[attr-defined]


@openvino
def test_pack_without_a_file_for_openvino(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from msa_export.pack.build import build_pack
    from msa_export.presets.registry import get_preset

    pack = build_pack(get_preset("tiny"), tmp_path / "int8only", precisions=["int8"]).out
    with pytest.raises(PackError, match="no text file for OpenVINO .*--precision int8,fp32,ov-int8"):
        quiet_analyzer(pack, providers="openvino")
    result = CliRunner().invoke(run_main, ["--pack", str(pack), "--providers", "openvino", "--text", "hi"])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    # auto asks for the fastest engine that can run the pack: here the CPU EP, and it says why
    an = quiet_analyzer(pack, providers="auto", threads=1)
    assert all(s.get_providers() == [CPU] for s in an.sessions.values())
    assert "the pack has no file for OpenVINO" in an.choice
    assert np.isfinite(an.predict(text="hi").score)
    result = CliRunner().invoke(run_main, ["--pack", str(pack), "--providers", "auto", "--text", "hi"])
    assert result.exit_code == 0, result.output


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
    from msa_export.errors import ExportError
    from msa_export.pack.build import build_pack
    from msa_export.presets.registry import get_preset

    with (
        mock.patch(
            "msa_export.pack.build.openvino_ready",
            return_value="NNCF is not installed: pip install 'msa-edge[export]'",
        ),
        pytest.raises(ExportError, match=r"ov-int8 cannot be made here: NNCF .*msa-edge\[export\]"),
    ):
        build_pack(get_preset("tiny"), tmp_path / "p", precisions=["int8", "ov-int8"])
    assert not (tmp_path / "p").exists()


# -- calibration ----------------------------------------------------------------------------


def test_calibration_sources(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from msa_export.convert.openvino import CalibrationError, calibration_clips, clip_feeds
    from msa_export.presets.registry import get_preset

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
    if ROUTE is None or not HAVE_NNCF:
        pytest.skip("NNCF and an OpenVINO route that offers this CPU are needed for --calibrate")
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
    record["manifest_sha256"] = sha256_file(pack / "manifest.json")
    for e in record["encoders"].values():
        e["best"] = "fp32"  # a hand-edited record: the plan must not crash on it
    record_path.write_text(json.dumps(record))
    malformed = quiet_analyzer(pack, providers="cpu")
    assert malformed.precision == "int8" and "is malformed: ignored" in malformed.choice


@openvino
def test_tune_times_openvino_candidates(tiny_pack: Path, tmp_path: Path) -> None:
    from msa_runtime.loading.tuning import tune

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


@pytest.mark.parametrize("route", USABLE or ["none"])
def test_openvino_session_keeps_to_its_threads(tmp_path: Path, route: str) -> None:
    """threads=1 on OpenVINO uses one core (by either route): the plugin's num_of_threads alone
    left both busy."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from msa_runtime.engine.openvino import plugin_options

    if route == "none":
        pytest.skip(f"no OpenVINO route offers a device here ({describe_routes(ORT)})")
    assert json.loads(plugin_options("CPU", 1)["load_config"]) == {"CPU": {"INFERENCE_NUM_THREADS": "1"}}
    assert "load_config" not in plugin_options("GPU", 2) and plugin_options("CPU", None) == {}
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
    session = make_session(path, [route], threads=1)
    x = rng.standard_normal((256, 1024)).astype(np.float32)
    session.run(None, {"x": x})
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(200):  # bounded: stops after 0.5 s of work
        session.run(None, {"x": x})
        if time.perf_counter() - wall0 > 0.5:
            break
    ratio = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    assert ratio < 1.3, f"threads=1 kept {ratio:.2f} cores busy"


def test_export_without_an_openvino_device_leaves_ov_int8_out_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """msa-export with its defaults where OpenVINO is installed but offers no device (as on an AMD
    CPU with the plugin alone): the pack is written, without ov-int8 files, and says why."""
    pytest.importorskip("torch")
    from msa_export.cli import main as export_main

    monkeypatch.setenv("MSA_EDGE_HIDE_DEVICES", "openvino")
    out = tmp_path / "pack"
    result = CliRunner().invoke(export_main, ["--preset", "tiny", "--out", str(out)])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: no ov-int8 file")]
    assert len(notes) == 1 and "--precision int8,fp16,fp32,ov-int8" in notes[0], result.stderr
    files = {f for e in load_manifest(out).encoders.values() for f in e.files}
    assert files == {"int8", "fp16", "fp32"}
    an = quiet_analyzer(out, providers="auto", threads=1)
    assert an.providers == [CPU] and an.choice.startswith("auto picked the CPU execution provider")
    if plugin_installed():
        assert "openvino-ep offers no device (hidden by MSA_EDGE_HIDE_DEVICES)" in an.choice
    asked = CliRunner().invoke(
        export_main, ["--preset", "tiny", "--out", str(tmp_path / "p2"), "--precision", "ov-int8"]
    )
    errors = [line for line in asked.stderr.splitlines() if line.startswith("error:")]
    assert asked.exit_code != 0 and len(errors) == 1 and "ov-int8 cannot be made here" in errors[0], (
        asked.output
    )
