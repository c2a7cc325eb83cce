"""Triton model repositories (msa_runtime.serve.repository): both forms' configs parse with Triton's
own protobuf schema, the ONNX files they name exist and match them, and the BLS python step of
form a scores like a direct Analyzer call when its requests go to the repository's ONNX models.

Form a cannot be served here (the official image with its ONNX Runtime backend cannot be
pulled): the step's requests are answered by an emulator that loads each model's ``model.onnx``
with ONNX Runtime and refuses feeds that its ``config.pbtxt`` would refuse (names, types, dims,
max_batch_size)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from media_factory import make_clip, make_corrupt

from msa_runtime.errors import InputError, MediaError
from msa_runtime.serve import ClipScorer, TritonSession, write_onnx_repository, write_python_repository
from msa_runtime.serve.repository import head_inputs
from msa_runtime.serve.scorer import triton_factory

pytest.importorskip(
    "tritonclient.grpc", reason="the serve extra is not installed: pip install 'msa-edge[serve]'"
)
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

ORT_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(int64)": "TYPE_INT64"}
NP_TYPES = {"TYPE_FP32": np.float32, "TYPE_INT64": np.int64}


def parse(path: Path) -> Any:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(encoding="utf-8"), config)
    return config


def dtype_name(config_value: int) -> str:
    return str(model_config_pb2.DataType.Name(config_value))


def configs(repo: Path) -> dict[str, Any]:
    return {p.parent.name: parse(p) for p in sorted(repo.glob("*/config.pbtxt"))}


def test_python_repository_parses(tiny_pack: Path, tmp_path: Path) -> None:
    repo = write_python_repository(tiny_pack, tmp_path / "repo", instances=2, input_root=tmp_path)
    (config,) = configs(repo).values()
    assert config.name == "msa" and config.backend == "python" and config.max_batch_size == 0
    assert [(i.name, dtype_name(i.data_type), i.optional) for i in config.input] == [
        ("PATH", "TYPE_STRING", True), ("CLIP", "TYPE_STRING", True), ("TEXT", "TYPE_STRING", True)
    ]  # fmt: skip
    assert [o.name for o in config.output] == ["SCORE", "RESULT"]
    assert config.instance_group[0].count == 2
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["pack"] == str(tiny_pack.resolve()) and params["input_root"] == str(tmp_path.resolve())
    assert (repo / "msa" / "1" / "model.py").is_file()


def test_stream_model_is_decoupled(tiny_pack: Path, tmp_path: Path) -> None:
    repo = write_python_repository(tiny_pack, tmp_path / "repo", copy_pack=True, stream=True)
    found = configs(repo)
    assert set(found) == {"msa", "msa_stream"}
    stream = found["msa_stream"]
    assert stream.model_transaction_policy.decoupled and not found["msa"].model_transaction_policy.decoupled
    assert [i.name for i in stream.input] == ["PATH", "CLIP", "TEXT", "WINDOW", "HOP"]
    params = {k: v.string_value for k, v in stream.parameters.items()}
    assert (repo / "msa_stream" / "1" / params["pack"] / "manifest.json").is_file()


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_onnx_repository_matches_files(tiny_pack: Path, tmp_path: Path, device: str) -> None:
    import onnxruntime as ort

    from msa_runtime.pack import load_manifest

    manifest = load_manifest(tiny_pack)
    repo = write_onnx_repository(tiny_pack, tmp_path / "repo", device=device, instances=2, threads=1)
    found = configs(repo)
    assert set(found) == {"msa", "msa_head", "msa_text", "msa_audio", "msa_vision"}
    kind = "KIND_CPU" if device == "cpu" else "KIND_GPU"
    wanted = "int8" if device == "cpu" else "fp16"
    for name, config in found.items():
        if name == "msa":
            assert config.backend == "python"
            params = {k: v.string_value for k, v in config.parameters.items()}
            assert params["mode"] == "bls" and params["pack"] == "/pack"
            continue
        assert config.platform == "onnxruntime_onnx"
        group = config.instance_group[0]
        assert group.count == 2 and model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == kind
        file = repo / name / "1" / "model.onnx"
        assert file.is_file()
        if name != "msa_head":
            mod = name.removeprefix("msa_")
            source = tiny_pack / manifest.encoders[mod].files[wanted]
            assert file.read_bytes() == source.read_bytes(), f"{name}: not the pack's {wanted} file"
            # int8 files quantize activations per batch: batching across requests would change
            # each request's features (~1e-2), so the CPU form batches only when asked
            assert config.HasField("dynamic_batching") == (device == "gpu") and config.max_batch_size > 0
        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        graph = {t.name: t for t in [*session.get_inputs(), *session.get_outputs()]}
        for tensor in [*config.input, *config.output]:
            assert tensor.name in graph, f"{name}: {tensor.name} is not in the ONNX file"
            onnx_t = graph[tensor.name]
            assert ORT_TYPES[onnx_t.type] == dtype_name(tensor.data_type), (name, tensor.name)
            dims = ([-1] if config.max_batch_size else []) + list(tensor.dims)
            assert len(dims) == len(onnx_t.shape), (name, tensor.name, dims, onnx_t.shape)
            for want, have in zip(dims, onnx_t.shape):
                assert want == -1 or not isinstance(have, int) or want == have, (name, tensor.name)
    assert [i.name for i in found["msa_head"].input] == head_inputs(manifest)


class Emulator:
    """Answers the BLS step's requests with the repository's ONNX models, checking each feed
    against the model's config the way Triton would."""

    def __init__(self, repo: Path) -> None:
        import onnxruntime as ort

        self.configs = configs(repo)
        self.sessions = {
            n: ort.InferenceSession(str(repo / n / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
            for n in self.configs
            if n != "msa"
        }
        self.calls: dict[str, list[int]] = {}

    def __call__(self, model: str, feeds: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
        config = self.configs[model]
        declared = {t.name: t for t in config.input}
        assert set(feeds) == set(declared), f"{model}: feeds {sorted(feeds)} vs config {sorted(declared)}"
        for key, value in feeds.items():
            t = declared[key]
            assert value.dtype == NP_TYPES[dtype_name(t.data_type)], (model, key, value.dtype)
            dims = list(value.shape)
            if config.max_batch_size:
                assert 1 <= dims[0] <= config.max_batch_size, (model, key, dims)
                dims = dims[1:]
            assert len(dims) == len(t.dims) and all(w in (-1, h) for w, h in zip(t.dims, dims)), (model, key)
        assert set(names) <= {t.name for t in config.output}, (model, names)
        self.calls.setdefault(model, []).append(len(next(iter(feeds.values()))))
        return list(self.sessions[model].run(list(names), dict(feeds)))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("serve-media") / "clip.mp4", duration=2.0)


def test_bls_step_scores_like_analyzer(tiny_pack: Path, tmp_path: Path, clip: Path, an: Any) -> None:
    repo = write_onnx_repository(tiny_pack, tmp_path / "repo", pack_path=None, input_root=clip.parent)
    params = {k: v.string_value for k, v in configs(repo)["msa"].parameters.items()}
    emulator = Emulator(repo)
    models = {f: (m, i, int(b)) for f, (m, i, b) in json.loads(params["models"]).items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = ClipScorer.from_params(params, repo / "msa" / "1", triton_factory(emulator, models))
    direct = an.predict(clip, text="i loved it")
    by_path = scorer.score(path=np.array([clip.name.encode()], dtype=object), text="i loved it")
    by_bytes = scorer.score(clip=np.array([clip.read_bytes()], dtype=object), text=b"i loved it")
    assert set(emulator.calls) == {"msa_text", "msa_audio", "msa_vision", "msa_head"}
    for record in (by_path, by_bytes):
        assert record["modalities"] == list(direct.modalities)
        assert record["score"] == pytest.approx(direct.score, abs=2e-4)
        assert record["gates"] == pytest.approx(direct.gates, abs=2e-4)


def test_triton_session_chunks_to_max_batch(tiny_pack: Path) -> None:
    # fp32: dynamic int8 files quantize activations per batch, so their rows depend on the batch
    import onnxruntime as ort

    vision = ort.InferenceSession(str(tiny_pack / "vision.fp32.onnx"), providers=["CPUExecutionProvider"])
    frames = np.random.default_rng(0).random((5, 3, 32, 32), dtype=np.float32)
    whole = vision.run(["hidden"], {"pixel_values": frames})[0]
    sizes: list[int] = []

    def infer(model: str, feeds: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
        sizes.append(len(feeds["pixel_values"]))
        return list(vision.run(list(names), dict(feeds)))

    out = TritonSession(infer, "msa_vision", ["pixel_values"], max_batch=2).run(
        ["hidden"], {"pixel_values": frames}
    )
    assert sizes == [2, 2, 1]
    np.testing.assert_allclose(out[0], whole, atol=1e-5)


def test_scorer_bad_requests(an: Any, tmp_path: Path, clip: Path) -> None:
    scorer = ClipScorer(an, input_root=clip.parent, max_upload_mb=0.01)
    with pytest.raises(InputError, match="upload limit"):
        scorer.score(clip=clip.read_bytes() + b"x" * 20_000)
    with pytest.raises(InputError, match="outside"):
        scorer.score(path="../../etc/passwd")
    with pytest.raises(InputError, match="empty request"):
        scorer.score(text=np.array([b"  "], dtype=object))
    bad = make_corrupt(clip, tmp_path / "bad.mp4", at=0.0, length=100_000)
    big = ClipScorer(an, input_root=None)
    with pytest.raises(MediaError, match="uploaded CLIP"):
        big.score(clip=bad.read_bytes())
    with pytest.raises(InputError, match="no paths"):
        big.score(path=clip.name)


def test_unwritable_repository_is_one_line(tiny_pack: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="cannot write the model repository"):
        write_python_repository(tiny_pack, blocker / "repo")
    cli = Path(sys.executable).with_name("msa-triton")
    done = subprocess.run(
        [str(cli), str(tiny_pack), "--out", str(blocker / "repo"), "--form", "onnx"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        done.stderr.startswith("error: cannot write the model repository") and "Traceback" not in done.stderr
    )


def test_serve_package_imports_no_triton() -> None:
    code = (
        "import sys, msa_runtime.serve; "
        "print(sorted(m for m in ('tritonclient', 'pytriton', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
