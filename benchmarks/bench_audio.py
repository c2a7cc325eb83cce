"""WavLM's convolutional front end: Conv vs the MatMul rewrite (msa_export.models.wavlm_frontend), and what a
stream can share between overlapping windows.

    python benchmarks/bench_audio.py [--preset edge|ando2022-mosi|tiny] [--seconds 6]
        [--repeat 7] [--threads 2] [--openvino-only] [--out benchmarks/results/audio-vm.md]

Part 1, speed: the preset's audio encoder (random weights at the real size, cut at its layer) is
exported with the original Conv front end and with the MatMul rewrite, each as fp32 and dynamic
int8 (the pack's recipe: MatMul/Gemm only, so only the rewrite's front end becomes int8), and
the rewrite SmoothQuant-ed (alpha 0.5, calibrated on two synthetic waveforms) as int8, whole and
with its three smallest layers kept fp32. Median ms per ``--seconds`` window on ONNX Runtime's
CPU EP, contenders alternating in one run, plus the front end alone, and each file's parity
with PyTorch (mean cosine of the feature vectors, the pack's gate: >= 0.999).

Part 1b, OpenVINO (when its plugin is installed): the fp32 file (run in bf16) in three front-end
forms, the Conv stack, the MatMul rewrite with a Conv first layer and the fully time-major one,
whole encoder and front end alone.

Part 2, sharing in streams (window 6 s, hop 2 s): a window's front-end features against the same
frames computed once per hop on the whole stream, for the layer-norm front end (WavLM Large /
``feat_extract_norm = "layer"``) and the group-norm one (base / Base+), with and without the
per-clip waveform normalisation. Reports the largest difference (exact = float rounding only).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msa_export.convert.onnx_file import export_onnx, quantize_int8
from msa_export.gate.checks import cosines
from msa_export.models import encoders as enc
from msa_export.models.wavlm_frontend import MatMulFeatureEncoder, rewrite_frontend, smooth_frontend
from msa_export.presets.registry import get_preset
from msa_runtime.engine.sessions import make_session

ROOT = Path(__file__).resolve().parent


def other_cpu() -> float:
    """Share of the machine's CPU that other processes used over the last second (0-1)."""

    def snap() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        return sum(v), v[3] + v[4]

    def mine() -> float:
        with open(f"/proc/{os.getpid()}/stat", encoding="ascii") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    (t0, i0), m0 = snap(), mine()
    time.sleep(1.0)
    (t1, i1), m1 = snap(), mine()
    ticks = os.sysconf("SC_CLK_TCK")
    busy = (t1 - t0 - (i1 - i0)) / ticks - (m1 - m0)
    return max(0.0, busy / ((t1 - t0) / ticks))


def timed(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def alternate(sessions: dict[str, Any], x: np.ndarray, repeat: int) -> tuple[dict[str, list[float]], float]:
    """Each session's times on ``x`` (ms: one median per round, contenders alternating, a third
    of the repeats each round), and the most CPU other processes took around the run."""
    busy = other_cpu()
    results: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(3):
        for k, s in sessions.items():
            feeds = {s.get_inputs()[0].name: x}
            results[k].append(timed(lambda s=s, f=feeds: s.run(None, f), max(1, repeat // 3)))
    return results, max(busy, other_cpu())


def waveform(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000.0
    x = 0.3 * np.sin(2 * np.pi * 220.0 * t) * (1 + np.sin(2 * np.pi * 0.7 * t))
    x = x + 0.05 * rng.standard_normal(t.size)
    return ((x - x.mean()) / (x.std() + 1e-7)).astype(np.float32)[None]


class _FrontEnd(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.encoder(waveform)


def speed(preset: str, seconds: float, repeat: int, threads: int, tmp: Path) -> list[str]:
    card = get_preset(preset).with_random_weights().encoders["audio"]
    spec = enc.SPECS[card.kind]
    full = spec.build(card)
    x = waveform(seconds)
    reference = enc.reference_output(card, full, (torch.from_numpy(x),))
    cut = enc.cut(full, card.blocks)
    conv = enc.wrap(card, copy.deepcopy(cut))
    matmul = enc.wrap(card, rewrite_frontend(copy.deepcopy(cut)))
    smooth = enc.wrap(card, rewrite_frontend(cut))
    calibration = [torch.from_numpy(waveform(s, 10 + i)) for i, s in enumerate((1.0, 3.0))]
    smooth_frontend(smooth, calibration)
    files: dict[str, Path] = {}
    for name, module in (("conv", conv), ("matmul", matmul), ("smooth", smooth)):
        fp32 = tmp / f"{name}.fp32.onnx"
        export_onnx(
            module,
            (torch.from_numpy(waveform(2.3, 1)),),
            fp32,
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes,
        )
        files[f"{name} fp32"] = fp32
        files[f"{name} int8"] = quantize_int8(fp32, tmp / f"{name}.int8.onnx", card.int8_keep_fp32)
        if name == "smooth":  # the last three (smallest) layers kept fp32
            del files["smooth fp32"]
            files["smooth int8, layers 4-6 fp32"] = quantize_int8(
                fp32, tmp / f"{name}.int8k.onnx", [*card.int8_keep_fp32, r"frontend_conv[4-6]/"]
            )
            continue
        front = module.model.feature_extractor
        path = tmp / f"{name}.front.fp32.onnx"
        export_onnx(
            _FrontEnd(front),
            (torch.from_numpy(waveform(2.3, 1)),),
            path,
            input_names=("waveform",),
            output_names=("features",),
            dynamic_axes={"waveform": {0: "batch", 1: "samples"}},
        )
        files[f"{name} front fp32"] = path
        files[f"{name} front int8"] = quantize_int8(path, tmp / f"{name}.front.int8.onnx")
    sessions = {k: make_session(p, ["CPUExecutionProvider"], threads=threads) for k, p in files.items()}
    results, busy = alternate(sessions, x, repeat)
    lines = [
        f"### {preset}: audio encoder ({card.source}, {card.blocks} blocks, "
        f"feat_extract_norm={full.config.feat_extract_norm}), {seconds:g} s window, "
        f"{threads} threads",
        "",
        "| file | median ms | vs conv int8 | parity (mean cosine to PyTorch) |",
        "|---|---:|---:|---:|",
    ]
    base = statistics.median(results["conv int8"])
    for k, times in results.items():
        ms = statistics.median(times)
        parity = "-"
        if "front" not in k:
            got = sessions[k].run(["hidden"], {"waveform": x})[0]
            parity = f"{cosines(got, reference).mean():.5f}"
        lines.append(f"| {k} | {ms:.1f} | {base / ms:.2f}x | {parity} |")
    lines += ["", f"Other processes' CPU during the run: up to {busy:.0%} of the machine.", ""]
    return lines


def openvino_forms(preset: str, seconds: float, repeat: int, threads: int, tmp: Path) -> list[str]:
    """The fp32 file (bf16 on OpenVINO) of the preset's cut audio encoder in three front-end
    forms: the original Conv stack, the MatMul rewrite with the first layer kept a Conv (the
    form packs shipped until 2026-12-02) and the fully time-major rewrite packs ship now (a
    layer-norm first layer as a MatMul too). Whole encoder and front end alone, alternating."""
    from msa_runtime.engine.openvino import describe_routes, pick_route
    from msa_runtime.engine.sessions import import_ort

    if pick_route(import_ort(), "CPU") is None:
        return [f"### {preset}: OpenVINO forms skipped ({describe_routes(import_ort())})", ""]
    card = get_preset(preset).with_random_weights().encoders["audio"]
    spec = enc.SPECS[card.kind]
    cut = enc.cut(spec.build(card), card.blocks)
    example = (torch.from_numpy(waveform(2.3, 1)),)
    files: dict[str, Path] = {}
    front_axes = {"waveform": {1: "t"}}
    for name, first in (("conv", None), ("matmul, first layer Conv", False), ("matmul", True)):
        model = copy.deepcopy(cut)
        if first is not None:
            model.feature_extractor = MatMulFeatureEncoder(model.feature_extractor, first_as_matmul=first)
        for part, module, names, outs, axes in (
            ("", enc.wrap(card, model), spec.input_names, spec.output_names, spec.dynamic_axes),
            (" front", _FrontEnd(model.feature_extractor), ("waveform",), ("features",), front_axes),
        ):
            path = tmp / f"ov{len(files)}.onnx"
            export_onnx(module, example, path, input_names=names, output_names=outs, dynamic_axes=axes)
            files[f"{name}{part}"] = path
    sessions = {k: make_session(p, "openvino", threads=threads) for k, p in files.items()}
    x = waveform(seconds)
    results, busy = alternate(sessions, x, repeat)
    lines = [
        f"### {preset}: audio encoder fp32 file on OpenVINO (bf16), {card.blocks} blocks, "
        f"{seconds:g} s window, {threads} threads",
        "",
        "| front end form | whole encoder, median ms | front end alone, median ms |",
        "|---|---:|---:|",
    ]
    for name in ("conv", "matmul, first layer Conv", "matmul"):
        whole, front = (statistics.median(results[name + part]) for part in ("", " front"))
        lines.append(f"| {name} | {whole:.1f} | {front:.1f} |")
    lines += ["", f"Other processes' CPU during the run: up to {busy:.0%} of the machine.", ""]
    return lines


def sharing(seconds: float = 6.0, hop: float = 2.0) -> list[str]:
    """Window front-end features vs per-hop features of the stream, both norm kinds."""
    import transformers

    lines = [
        f"### Sharing the front end between overlapping windows (window {seconds:g} s, hop {hop:g} s)",
        "",
        "| front end | waveform normalised per window | max abs diff, window vs per-hop "
        "stream features | exact? |",
        "|---|---|---:|---|",
    ]
    stream = waveform(seconds + 4 * hop, 3)[0] * 0.05 + 0.01  # a raw signal with an offset
    rate, step = 16000, int(hop * 16000)
    for norm in ("layer", "group"):
        torch.manual_seed(0)
        config = transformers.WavLMConfig(
            feat_extract_norm=norm, conv_bias=norm == "layer", num_hidden_layers=1
        )
        model = transformers.WavLMModel(config).eval()
        front = MatMulFeatureEncoder(model.feature_extractor).eval()
        for normalise in (False, True):
            worst = 0.0
            with torch.no_grad():
                whole = front(torch.from_numpy(stream[None]))[0]  # the stream, once
                for w in range(3):
                    a = w * step
                    clip = stream[a : a + int(seconds * rate)]
                    if normalise:
                        clip = (clip - clip.mean()) / np.sqrt(clip.var() + 1e-7)
                    own = front(torch.from_numpy(clip[None].astype(np.float32)))[0]
                    first = a // 320  # 20 ms frames: hop is a whole number of frames
                    shared = whole[:, first : first + own.shape[1]]
                    worst = max(worst, float((own - shared).abs().max()))
            exact = "yes" if worst < 1e-4 else "no"
            lines.append(f"| {norm} norm | {'yes' if normalise else 'no'} | {worst:.2e} | {exact} |")
    lines += [
        "",
        "Exact (float rounding only) means a stream can compute each hop's front-end "
        "frames once and reuse them in every window that holds them.",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", help="edge, ando2022-mosi, tiny (repeatable)")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the tables to this markdown file")
    parser.add_argument(
        "--openvino-only", action="store_true", help="only the front-end forms on OpenVINO (no CPU EP part)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"# WavLM front end: Conv vs MatMul, sharing in streams ({when})",
        "",
        f"Command: `python benchmarks/bench_audio.py {' '.join(sys.argv[1:])}`",
        "",
    ]
    for preset in args.preset or ["edge"]:
        with tempfile.TemporaryDirectory() as tmp:
            if not args.openvino_only:
                lines += speed(preset, args.seconds, args.repeat, args.threads, Path(tmp))
            lines += openvino_forms(preset, args.seconds, args.repeat, args.threads, Path(tmp))
        print("\n".join(lines), flush=True)
    lines += sharing()
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        tmp_out = args.out.with_suffix(".tmp")
        tmp_out.write_text(text, encoding="utf-8")
        tmp_out.replace(args.out)


if __name__ == "__main__":
    main()
