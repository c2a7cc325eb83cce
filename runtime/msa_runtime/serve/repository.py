"""Triton model repositories for a pack, in two forms.

**Form b** (:func:`write_python_repository`, what ``msa-serve`` runs on the PyPI Triton): one
python-backend model ``msa`` that wraps :class:`msa_runtime.Analyzer`; self-contained (the pack
referenced by absolute path or copied in).

**Form a** (:func:`write_onnx_repository`, for the official ``tritonserver`` image with its ONNX
Runtime backend): one ``onnxruntime_onnx`` model per encoder (``msa_text``, ``msa_audio``,
``msa_vision``) and the head (``msa_head``), each with an instance group of the device's kind and
the pack's file for that device (CPU: the int8 file, GPU: fp16; the encoders with Triton's
dynamic batcher on GPU, see :func:`write_onnx_repository` for CPU), and the
python-backend model ``msa`` (same inputs and outputs as form b) that decodes and preprocesses
the clip and calls those models through BLS.

Both are written into a temporary folder beside ``out`` and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from msa_runtime.errors import InputError, MissingExtraError
from msa_runtime.limits import cpu_count
from msa_runtime.pack import Manifest, load_manifest
from msa_runtime.serve.scorer import DEFAULT_MAX_UPLOAD_MB

MODEL = "msa"
STREAM_MODEL = "msa_stream"
ENCODER_MODELS = {"text": "msa_text", "audio": "msa_audio", "vision": "msa_vision"}
HEAD_MODEL = "msa_head"
MODEL_PY = Path(__file__).with_name("triton_model.py")
DEVICES = {"cpu": ("KIND_CPU", "cpu"), "gpu": ("KIND_GPU", "cuda")}
# per modality: max_batch_size, inputs (name, type, dims without the batch axis), the output dims
# come from the pack (hidden size); text and audio batch only requests of equal length (Triton
# does not pad), vision batches frames across requests.
_ENCODER_IO: dict[str, tuple[int, list[tuple[str, str, list[int]]]]] = {
    "text": (8, [("input_ids", "TYPE_INT64", [-1]), ("attention_mask", "TYPE_INT64", [-1])]),
    "audio": (4, [("waveform", "TYPE_FP32", [-1])]),
    "vision": (64, [("pixel_values", "TYPE_FP32", [3, 0, 0])]),
}


def _dims(dims: list[int]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def _tensor(name: str, dtype: str, dims: list[int], optional: bool = False) -> str:
    extra = " optional: true" if optional else ""
    return f'  {{ name: "{name}" data_type: {dtype} dims: {_dims(dims)}{extra} }}'


def _params(values: dict[str, str]) -> str:
    def quote(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    return "".join(
        f"parameters: {{ key: {quote(k)} value: {{ string_value: {quote(v)} }} }}\n"
        for k, v in values.items()
    )


def python_config(instances: int, params: dict[str, str], stream: bool = False) -> str:
    """The ``config.pbtxt`` of the python-backend model ``msa`` (forms a and b), or with
    ``stream`` of ``msa_stream`` (decoupled: one response per window)."""
    inputs = [_tensor(n, "TYPE_STRING", [1], optional=True) for n in ("PATH", "CLIP", "TEXT")]
    if stream:
        inputs += [_tensor(n, "TYPE_FP32", [1], optional=True) for n in ("WINDOW", "HOP")]
    return (
        f'name: "{STREAM_MODEL if stream else MODEL}"\nbackend: "python"\nmax_batch_size: 0\n'
        + ("model_transaction_policy { decoupled: true }\n" if stream else "")
        + "input [\n"
        + ",\n".join(inputs)
        + "\n]\noutput [\n"
        + ",\n".join([_tensor("SCORE", "TYPE_FP32", [1]), _tensor("RESULT", "TYPE_STRING", [1])])
        + f"\n]\ninstance_group [ {{ count: {instances} kind: KIND_CPU }} ]\n"
        + _params(params)
    )


def encoder_config(
    manifest: Manifest, modality: str, kind: str, instances: int, threads: int | None, batching: bool = True
) -> str:
    """The ``config.pbtxt`` of one encoder's ``onnxruntime_onnx`` model (``batching``: Triton's
    dynamic batcher joins requests of equal shape; frames across requests for vision)."""
    entry = manifest.encoders[modality]
    max_batch, inputs = _ENCODER_IO[modality]
    if modality == "vision":
        size = manifest.vision_prep().image_size
        inputs = [("pixel_values", "TYPE_FP32", [3, size, size])]
    out_dims = [entry.hidden_size] if modality == "vision" else [-1, entry.hidden_size]
    params = {"intra_op_thread_count": str(threads)} if threads else {}
    return (
        f'name: "{ENCODER_MODELS[modality]}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch}\n'
        "input [\n"
        + ",\n".join(_tensor(*i) for i in inputs)
        + "\n]\noutput [\n"
        + _tensor("hidden", "TYPE_FP32", out_dims)
        + "\n]\n"
        + ("dynamic_batching { max_queue_delay_microseconds: 2000 }\n" if batching else "")
        + f"instance_group [ {{ count: {instances} kind: {kind} }} ]\n"
        + _params(params)
    )


def head_inputs(manifest: Manifest) -> list[str]:
    """The head's input names in the order :func:`msa_runtime.scoring.core.head_feeds` builds them."""
    names = [n for m in manifest.head.modalities for n in (m, f"{m}_mask")]
    return names + ["present"]


def head_config(manifest: Manifest, kind: str, instances: int) -> str:
    """The head's ``onnxruntime_onnx`` model: one clip per request (its own sequence lengths)."""
    tensors = []
    for mod in manifest.head.modalities:
        tensors.append(_tensor(mod, "TYPE_FP32", [1, -1, manifest.encoders[mod].hidden_size]))
        tensors.append(_tensor(f"{mod}_mask", "TYPE_FP32", [1, -1]))
    tensors.append(_tensor("present", "TYPE_FP32", [1, len(manifest.head.modalities)]))
    outputs = [_tensor("score", "TYPE_FP32", [1]), _tensor("gates", "TYPE_FP32", [1, -1])]
    return (
        f'name: "{HEAD_MODEL}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
        "input [\n" + ",\n".join(tensors) + "\n]\noutput [\n" + ",\n".join(outputs) + "\n]\n"
        f"instance_group [ {{ count: {instances} kind: {kind} }} ]\n"
    )


def _link_or_copy(src: str, dst: str) -> str:
    """Hard-link (same file system: no extra space) or copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


@contextmanager
def _staged(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary folder beside ``out``, renamed to ``out`` when the block succeeds."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} exists and is not empty: choose another folder or pass --overwrite")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise InputError(
            f"cannot write the model repository {out} ({exc.strerror or exc}): choose a writable folder"
        ) from None
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def max_instances() -> int:
    """Python model instances a machine gets: each is a process holding its own Analyzer (the
    edge pack: 0.9 GB) and 2 per CPU already oversubscribe the cores; 1000 took over a minute to
    start and 767 MB of shared memory before the first request."""
    return 2 * cpu_count()


def check_instances(instances: int) -> None:
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
        raise InputError(f"instances must be a whole number >= 1, got {instances!r}")
    if instances > max_instances():
        raise InputError(
            f"instances must be at most {max_instances()} (2 per CPU; each holds its own Analyzer), "
            f"got {instances}"
        )


def _write_python_model(root: Path, instances: int, params: dict[str, str], stream: bool = False) -> Path:
    name = STREAM_MODEL if stream else MODEL
    version = root / name / "1"
    version.mkdir(parents=True)
    shutil.copyfile(MODEL_PY, version / "model.py")
    (root / name / "config.pbtxt").write_text(python_config(instances, params, stream), encoding="utf-8")
    return version


def _common_params(
    input_root: str | os.PathLike[str] | None, max_upload_mb: float, threads: int | None
) -> dict[str, str]:
    params = {"max_upload_mb": str(max_upload_mb)}
    if input_root is not None:
        params["input_root"] = str(Path(input_root).resolve())
    if threads:
        params["threads"] = str(threads)
    return params


def write_python_repository(
    pack: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    instances: int = 1,
    copy_pack: bool = False,
    input_root: str | os.PathLike[str] | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    threads: int | None = None,
    stream: bool = False,
    overwrite: bool = False,
) -> Path:
    """Form b: the python-backend model ``msa`` wrapping the Analyzer (CPU EP). ``copy_pack``
    puts the pack inside the model (hard links where possible) instead of its absolute path.
    ``stream`` adds ``msa_stream`` (decoupled: window scores of a clip) with as many instances:
    a stream holds its instance until its last window. ``instances`` is at most
    :func:`max_instances`."""
    check_instances(instances)
    load_manifest(pack, verify=False)
    params = {"mode": "local", "providers": "cpu", **_common_params(input_root, max_upload_mb, threads)}
    params["pack"] = "pack" if copy_pack else str(Path(pack).resolve())
    with _staged(Path(out), overwrite) as root:
        version = _write_python_model(root, instances, params)
        if copy_pack:
            shutil.copytree(pack, version / "pack", copy_function=_link_or_copy)
        if stream:
            stream_params = {**params, "pack": "../../msa/1/pack"} if copy_pack else params
            _write_python_model(root, instances, stream_params, stream=True)
    return Path(out)


def write_onnx_repository(
    pack: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    device: str = "cpu",
    instances: int = 1,
    pack_path: str | None = "/pack",
    input_root: str | os.PathLike[str] | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    threads: int | None = None,
    batching: bool | None = None,
    overwrite: bool = False,
) -> Path:
    """Form a: ``onnxruntime_onnx`` models per encoder and head + the BLS python step.

    ``device`` (cpu, gpu) sets the instance kind and the file (the pack's first precision for
    the CPU EP or CUDA). ``pack_path`` is where the python step finds the pack inside the server
    (``/pack`` in the documented ``docker run``; None: its absolute path here). ``batching``
    (default: on for gpu, off for cpu) turns on Triton's dynamic batcher for the encoders: the
    CPU form's int8 files quantize activations over the whole batch, so batching other requests'
    inputs with a clip's would move its features (by about 1e-2 on the tiny pack's vision); fp16
    and fp32 rows do not depend on the batch."""
    if device not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if instances < 1:
        raise InputError(f"instances must be at least 1, got {instances}")
    folder = Path(pack)
    manifest = load_manifest(folder, verify=False)
    kind, provider = DEVICES[device]
    models: dict[str, tuple[str, list[str], int]] = {}
    with _staged(Path(out), overwrite) as root:
        for mod, entry in manifest.encoders.items():
            precisions = entry.provider_precisions(provider)
            if not precisions:
                raise InputError(f"the pack's {mod} encoder has no file for {device}; re-export it")
            name = ENCODER_MODELS[mod]
            (root / name / "1").mkdir(parents=True)
            _link_or_copy(str(folder / entry.files[precisions[0]]), str(root / name / "1" / "model.onnx"))
            batch = (device == "gpu") if batching is None else batching
            config = encoder_config(
                manifest, mod, kind, instances, threads if device == "cpu" else None, batch
            )
            (root / name / "config.pbtxt").write_text(config, encoding="utf-8")
            max_batch, inputs = _ENCODER_IO[mod]
            for file in entry.files.values():
                models[file] = (name, [i[0] for i in inputs], max_batch)
        (root / HEAD_MODEL / "1").mkdir(parents=True)
        _link_or_copy(str(folder / manifest.head.file), str(root / HEAD_MODEL / "1" / "model.onnx"))
        (root / HEAD_MODEL / "config.pbtxt").write_text(
            head_config(manifest, kind, instances), encoding="utf-8"
        )
        models[manifest.head.file] = (HEAD_MODEL, head_inputs(manifest), 0)
        params = {
            "mode": "bls",
            "providers": "cpu",
            "pack": pack_path or str(folder.resolve()),
            "models": json.dumps(models),
            **_common_params(input_root, max_upload_mb, threads),
        }
        _write_python_model(root, instances, params)
    return Path(out)


def parse_config(path: str | os.PathLike[str]) -> Any:
    """Parse a ``config.pbtxt`` with Triton's own schema (``ModelConfig`` from tritonclient)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise MissingExtraError(
            "reading Triton configs needs tritonclient: pip install 'msa-edge[serve]'"
        ) from None
    config = model_config_pb2.ModelConfig()
    text_format.Parse(Path(path).read_text(encoding="utf-8"), config)
    return config
