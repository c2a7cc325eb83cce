"""A pack that cannot lie: the manifest's schema, its digest, the files the runtime loads, and the
ONNX sessions' inputs and outputs, checked at load. Property-based tests (hypothesis) run the
manifest parser on arbitrary JSON and on mutations of a valid manifest."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msa_runtime import Analyzer, PackError
from msa_runtime.face.cascade import FACE_FILES
from msa_runtime.pack import (
    MANIFEST,
    MANIFEST_DIGEST,
    PREP_LIMITS,
    AudioPrep,
    EncoderEntry,
    FaceDetectorEntry,
    HeadEntry,
    Manifest,
    TextPrep,
    VisionPrep,
    load_manifest,
    manifest_to_dict,
    pack_digest,
    parse_manifest,
    write_manifest,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def base_manifest() -> dict[str, Any]:
    """A valid manifest of a three-encoder pack (files need not exist: parsing only)."""
    preps = {"text": TextPrep(max_tokens=64), "audio": AudioPrep(), "vision": VisionPrep(image_size=32)}
    encoders = {
        m: EncoderEntry(m, "k", "random", 1, 3, 32, p, {"int8": f"{m}.int8.onnx", "fp32": f"{m}.fp32.onnx"})
        for m, p in preps.items()
    }
    face = FaceDetectorEntry(stages={s: {"file": f} for s, f in FACE_FILES.items()})
    names = [f for e in encoders.values() for f in e.files.values()] + ["head.onnx", "tokenizer.json"]
    names += list(FACE_FILES.values())
    m = Manifest(
        name="t",
        encoders=encoders,
        head=HeadEntry("gated", "head.onnx", ("text", "audio", "vision"), False, True),
        files={n: {"sha256": _sha(n), "bytes": 1} for n in names},
        face_detector=face,
    )
    return manifest_to_dict(m)


def _refused(data: Any, match: str) -> str:
    with pytest.raises(PackError, match=match) as info:
        parse_manifest(data)
    assert "\n" not in str(info.value)
    return str(info.value)


def _set(path: str, value: Any) -> dict[str, Any]:
    data = base_manifest()
    keys = path.split("/")
    node = data
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return data


def test_the_base_manifest_parses() -> None:
    m = parse_manifest(base_manifest())
    assert m.modalities == ("text", "audio", "vision") and m.text_prep().tokenizer == "tokenizer.json"


@pytest.mark.parametrize("version", ["1", 0, -5, True, 1.0, None])
def test_format_version_must_be_an_integer_from_1(version: Any) -> None:
    msg = _refused(_set("format_version", version), "format_version must be an integer >= 1")
    assert "upgrade" not in msg


def test_a_newer_format_version_says_upgrade() -> None:
    _refused(_set("format_version", 2), "format version 2.*upgrade msa-edge")


@pytest.mark.parametrize(
    "path,value,match",
    [
        ("encoders", None, "encoders must be an object"),
        ("encoders", {}, "encoders must not be empty"),
        ("encoders", [], "encoders must be an object"),
        ("files/head.onnx", "abc", r"files.head.onnx must be an object"),
        ("files/head.onnx", {"sha256": "xyz"}, "must be a sha256"),
        ("files", {}, "files must not be empty"),
        ("head/modalities", ["smell"], "head.modalities.*got 'smell'"),
        ("head/modalities", [], "head.modalities must not be empty"),
        ("head/modalities", ["text", "text"], "repeats"),
        ("head/trained", "yes", "head.trained must be true or false"),
        ("head", None, "head must be an object"),
        ("name", 5, "name must be a string"),
        ("encoders/smell", {}, "encoders key.*smell"),
        ("encoders/text/files", {"int4": "x.onnx"}, "files key must be one of"),
        ("encoders/text/files", {}, "files must not be empty"),
        ("encoders/text/files/int8", ["x"], "must be a string"),
        ("encoders/text/layer", 7, r"layer must be an integer in \[0, 2\]"),
        ("encoders/text/layer", "1", "layer must be an integer"),
        ("encoders/text/hidden_size", 0, "hidden_size must be an integer"),
        ("encoders/text/providers", {"cpu": ["fp16"]}, "precision fp16 without a file"),
        ("encoders/text/providers", {"tpu": ["int8"]}, "providers key"),
        ("encoders/text/surprise", 1, r"unknown encoders.text keys \['surprise'\]"),
        ("encoders/vision/preprocess/fps", 1e9, r"vision.fps must be a number in \(0, 60\]"),
        ("encoders/vision/preprocess/fps", float("nan"), "vision.fps"),
        ("encoders/vision/preprocess/fps", "3", "vision.fps"),
        ("encoders/vision/preprocess/image_size", 100000, "vision.image_size"),
        ("encoders/vision/preprocess/std", [1, 1, 0], r"vision.std\[2\]"),
        ("encoders/vision/preprocess/crop", "mouth", "vision.crop"),
        ("encoders/audio/preprocess/min_seconds", 1e9, "audio.min_seconds"),
        ("encoders/audio/preprocess/sample_rate", 1, "audio.sample_rate"),
        ("encoders/audio/preprocess/sample_rate", 16000.5, "audio.sample_rate"),
        ("encoders/audio/preprocess/normalize", 1, "audio.normalize must be true or false"),
        ("encoders/text/preprocess/max_tokens", 10**9, "text.max_tokens"),
        ("encoders/text/preprocess", None, "preprocessing must be an object"),
        ("encoders/text/preprocess/tokenizer", "../tok.json", "points outside the pack"),
        ("encoders/text/preprocess/tokenizer", "/etc/passwd", "points outside the pack"),
        ("encoders/text/preprocess/tokenizer", "other.json", "tokenizer other.json is not listed"),
        ("head/file", "nothead.onnx", "head file nothead.onnx is not listed"),
        ("face_detector", "yes", "face_detector must be an object"),
        ("face_detector/factor", 1.0, r"face_detector.factor must be a number in \[0.1, 0.95\]"),
        ("face_detector/min_face_size", 0, "face_detector.min_face_size"),
        ("face_detector/thresholds", [0.6, 0.7, 2], r"face_detector.thresholds\[2\]"),
        ("face_detector/stages/pnet/file", "../p.onnx", "points outside the pack"),
        ("face_detector/stages/pnet/file", "p.onnx", "face detector file p.onnx is not listed"),
        ("face_detector/nms/rnet", -1, "face_detector.nms.rnet"),
    ],
)
def test_malformed_manifests_are_pack_errors(path: str, value: Any, match: str) -> None:
    _refused(_set(path, value), match)


def test_the_manifest_itself_must_be_an_object() -> None:
    for data in (None, [], "manifest", 3):
        _refused(data, "must be an object")
    _refused({"format": "other"}, "not an msa-edge pack manifest")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(base_manifest())


def _check_invariants(m: Manifest) -> None:
    """What a parsed manifest promises the runtime."""
    for e in m.encoders.values():
        assert 0 <= e.layer < e.num_layers and e.hidden_size >= 1
        for f in e.files.values():
            assert f in m.files and ".." not in f.split("/")
        prep = e.prep
        if isinstance(prep, VisionPrep):
            assert 0 < prep.fps <= PREP_LIMITS["vision.fps"][1]
            assert prep.image_size <= PREP_LIMITS["vision.image_size"][1]
        elif isinstance(prep, AudioPrep):
            assert prep.min_seconds <= PREP_LIMITS["audio.min_seconds"][1]
            assert prep.sample_rate >= PREP_LIMITS["audio.sample_rate"][0]
        elif isinstance(prep, TextPrep):
            assert prep.tokenizer in m.files and prep.max_tokens <= PREP_LIMITS["text.max_tokens"][1]
    assert m.head.file in m.files and set(m.head.modalities) <= {"text", "audio", "vision"}


@FUZZ
@given(JSON)
def test_fuzz_arbitrary_json_is_a_manifest_or_a_pack_error(data: Any) -> None:
    try:
        m = parse_manifest(data)
    except PackError as exc:
        assert "\n" not in str(exc)
        return
    _check_invariants(m)


@FUZZ
@given(st.sampled_from(PATHS), JSON, st.booleans())
def test_fuzz_one_changed_value_is_a_manifest_or_a_pack_error(
    path: tuple[Any, ...], value: Any, drop: bool
) -> None:
    data = copy.deepcopy(base_manifest())
    node = data
    for k in path[:-1]:
        node = node[k]
    if drop and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    try:
        m = parse_manifest(data)
    except PackError as exc:
        assert "\n" not in str(exc)
        return
    _check_invariants(m)


# -- on disk: the digest, the files, the sessions ---------------------------------------------


def _copy(tiny_pack: Path, dst: Path) -> Path:
    shutil.copytree(tiny_pack, dst)
    return dst


def test_manifest_is_covered_by_its_digest(tiny_pack: Path, tmp_path: Path) -> None:
    pack = _copy(tiny_pack, tmp_path / "pk")
    digest = pack_digest(pack)
    line = (pack / MANIFEST_DIGEST).read_text()
    assert line == f"{digest}  {MANIFEST}\n"  # sha256sum -c manifest.sha256 works in the folder
    assert hashlib.sha256((pack / MANIFEST).read_bytes()).hexdigest() == digest
    load_manifest(pack, digest=digest)
    data = json.loads((pack / MANIFEST).read_text())
    data["encoders"]["text"]["preprocess"]["max_tokens"] = 8  # a plausible, silent edit
    (pack / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(PackError, match="does not match manifest.sha256"):
        load_manifest(pack, verify=False)
    write_manifest(pack, data)
    with pytest.raises(PackError, match="not the expected"):
        load_manifest(pack, digest=digest)
    (pack / MANIFEST_DIGEST).unlink()
    with pytest.raises(PackError, match="has no manifest.sha256"):
        load_manifest(pack)


def test_pinned_digest_from_the_environment(
    tiny_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSA_EDGE_PACK_DIGEST", "0" * 64)
    with pytest.raises(PackError, match="not the expected"):
        load_manifest(tiny_pack, verify=False)
    monkeypatch.setenv("MSA_EDGE_PACK_DIGEST", pack_digest(tiny_pack).upper())
    load_manifest(tiny_pack, verify=False)


def test_the_tokenizer_is_hashed_and_inside(tiny_pack: Path, tmp_path: Path) -> None:
    pack = _copy(tiny_pack, tmp_path / "pk")
    tok = pack / "tokenizer.json"
    tok.write_text(tok.read_text().replace('"[CLS]"', '"[CLX]"', 1))
    with pytest.raises(PackError, match="tokenizer.json does not match its sha256"):
        load_manifest(pack)
    outside = _copy(tiny_pack, tmp_path / "pk2")
    shutil.copy(outside / "tokenizer.json", tmp_path / "tok.json")
    data = json.loads((outside / MANIFEST).read_text())
    data["encoders"]["text"]["preprocess"]["tokenizer"] = "../tok.json"
    write_manifest(outside, data)
    with pytest.raises(PackError, match="points outside the pack"):
        load_manifest(outside)


def _swap(pack: Path, a: str, b: str) -> None:
    """Swap two files and re-hash them: a pack whose hashes are right but whose files are not
    where the manifest says."""
    ba, bb = (pack / a).read_bytes(), (pack / b).read_bytes()
    (pack / a).write_bytes(bb)
    (pack / b).write_bytes(ba)
    data = json.loads((pack / MANIFEST).read_text())
    for name in (a, b):
        data["files"][name] = {"sha256": hashlib.sha256((pack / name).read_bytes()).hexdigest()}
    write_manifest(pack, data)


@pytest.mark.parametrize(
    "a,b,named",
    [
        ("text.int8.onnx", "audio.int8.onnx", "text.int8.onnx is not the pack's text encoder"),
        ("vision.int8.onnx", "audio.int8.onnx", "is not the pack's (audio|vision) encoder"),
        ("head.onnx", "text.int8.onnx", "is not the pack's (fusion head|text encoder)"),
    ],
)
def test_files_swapped_between_modalities_fail_at_load(
    tiny_pack: Path, tmp_path: Path, a: str, b: str, named: str
) -> None:
    pack = _copy(tiny_pack, tmp_path / "pk")
    _swap(pack, a, b)
    load_manifest(pack)  # the hashes are right: only the sessions can tell
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(PackError, match=named) as info:
            Analyzer(pack, providers="cpu", precision="int8")
    assert "\n" not in str(info.value) and str(pack) in str(info.value)


@pytest.mark.parametrize(
    "path,value,words",
    [
        ("format_version", "1", "format_version must be an integer >= 1"),
        ("encoders", None, "encoders must be an object"),
        ("encoders/vision/preprocess/fps", 1e9, "vision.fps must be a number"),
    ],
)
def test_msa_run_on_a_malformed_manifest_is_one_line(
    tiny_pack: Path, tmp_path: Path, path: str, value: Any, words: str
) -> None:
    from click.testing import CliRunner

    from msa_runtime.cli.run import main

    pack = _copy(tiny_pack, tmp_path / "pk")
    data = json.loads((pack / MANIFEST).read_text())
    node = data
    keys = path.split("/")
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    write_manifest(pack, data)
    result = CliRunner().invoke(main, ["--pack", str(pack), "--text", "hello"])
    assert result.exit_code == 2 and words in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
