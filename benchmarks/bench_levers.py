"""Levers for an encoder of a pack (the vision encoder by default), each measured on the same clip.

    python benchmarks/bench_levers.py --preset ando2022-mosi [--modality vision] [--repeat 5]

Starts from the cached pack of ``bench_e2e.py`` (``benchmarks/.cache/<preset>/pack``; built
if missing) and times variants of one encoder on the 15 frames (or 5 s of audio, or the
sentence) of the benchmark clip, 2 threads, one session at a time:

- baseline: the pack's int8 file (dynamic int8, per channel, MatMul/Gemm) and its fp32 file;
- attention fusion: ``onnxruntime.transformers.optimizer.optimize_model`` on the pack's
  TorchScript-exported fp32 graph (model types ``clip``, ``vit``, ``bert``), then the same int8
  quantization; and with the fused ``Attention`` quantized too (``QAttention``);
- quantized convolution (the patch embedding / conv front end as ``ConvInteger``);
- per-tensor instead of per-channel weight scales;
- batch size: the frames in chunks of 1, 3, 5 and 15 (vision only);
- threads: 1 and 2, thread spinning on and off;
- ORT graph optimization level: basic, extended, all.

Every variant's output is compared with the pack's fp32 output (min cosine over feature
vectors). Results merge into ``OUT/<hostname>.json`` under ``levers`` and the markdown report is
rewritten (``e2e.render``). Nothing in the export code is changed: the results say what
should change.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e.clips import clip_inputs
from e2e.common import HERE, log
from e2e.flops import model_config
from e2e.levers import lever_summary
from e2e.measure import Interference, wait_for_quiet
from e2e.pipelines import get_preset_random, prepare
from e2e.render import write_results
from e2e.variants import (
    FUSED_OPS,
    LeverBench,
    fuse,
    op_count_text,
    op_counts,
    quantize,
    quantize_static_qdq,
    session,
    timed,
)


def encoder_inputs(pack: Path, modality: str, entry: Any) -> tuple[np.ndarray, ...]:
    """The encoder's inputs on the benchmark clip: its 15 frames, 5 s of audio or the sentence."""
    from msa_runtime.preprocess import TextEncoder, audio_batch, vision_batch

    clip = clip_inputs()
    if modality == "vision":
        return (vision_batch(list(clip["frames"]), entry.prep),)
    if modality == "audio":
        return (audio_batch(clip["audio"], entry.prep),)
    return TextEncoder(pack / entry.prep.tokenizer, entry.prep)(clip["text"])


def fusion_levers(bench: LeverBench, modality: str, fp32: Path, work: Path, heads: int, hidden: int) -> None:
    """ORT's transformer optimizer per model type, in fp32, int8, and with QAttention."""
    fusion_types = {"vision": ("clip", "vit", "bert"), "text": ("bert",), "audio": ("bert",)}[modality]
    for mt in fusion_types:
        if not bench.wanted("attention fusion"):
            break
        try:
            fused, counts = fuse(fp32, work / f"{modality}.{mt}.fused.fp32.onnx", mt, heads, hidden)
        except Exception as exc:
            bench.rows.append(
                {
                    "lever": "attention fusion",
                    "variant": f"optimize_model({mt})",
                    "median": None,
                    "p90": None,
                    "cosine": None,
                    "notes": f"failed: {type(exc).__name__}: {exc}"[:200],
                }
            )
            continue
        found = ", ".join(f"{op} {counts[op]}" for op in FUSED_OPS if counts.get(op))
        bench.add("attention fusion", f"optimize_model('{mt}') fp32", fused, notes=found)
        bench.add(
            "attention fusion",
            f"optimize_model('{mt}') + int8 MatMul/Gemm",
            partial(quantize, fused, work / f"{modality}.{mt}.fused.int8.onnx", ["MatMul", "Gemm"]),
            notes=found,
        )
        if counts.get("Attention"):
            qa = work / f"{modality}.{mt}.fused.qattn.onnx"
            bench.add(
                "attention fusion",
                f"optimize_model('{mt}') + int8 MatMul/Gemm/Attention",
                partial(quantize, fused, qa, ["MatMul", "Gemm", "Attention"]),
                notes=partial(op_count_text, qa, "QAttention"),
            )


def quantization_levers(
    bench: LeverBench, modality: str, fp32: Path, work: Path, calib: list[dict[str, np.ndarray]]
) -> None:
    """Other quantizations of the fp32 file: ConvInteger, per-tensor scales, static QDQ."""
    qconv = work / f"{modality}.conv.int8.onnx"
    bench.add(
        "quantized conv",
        "int8 MatMul/Gemm + Conv (ConvInteger)",
        lambda: quantize(fp32, qconv, ["MatMul", "Gemm", "Conv"]),
        notes=lambda: f"ConvInteger {op_counts(qconv).get('ConvInteger', 0)}",
    )
    bench.add(
        "per-tensor",
        "int8 MatMul/Gemm, per-tensor scales",
        lambda: quantize(
            fp32, work / f"{modality}.pertensor.int8.onnx", ["MatMul", "Gemm"], per_channel=False
        ),
    )
    bench.add(
        "static int8 (QDQ)",
        "MatMul/Gemm, calibrated activation scales",
        partial(quantize_static_qdq, fp32, work / f"{modality}.static.onnx", calib, ["MatMul", "Gemm"]),
    )
    bench.add(
        "static int8 (QDQ)",
        "MatMul/Gemm/Conv, calibrated activation scales",
        partial(
            quantize_static_qdq,
            fp32,
            work / f"{modality}.static_conv.onnx",
            calib,
            ["MatMul", "Gemm", "Conv"],
        ),
    )
    if modality == "vision" and (work / f"{modality}.clip.fused.fp32.onnx").is_file():
        bench.add(
            "static int8 (QDQ)",
            "optimize_model('clip') + MatMul/Gemm, calibrated",
            partial(
                quantize_static_qdq,
                work / f"{modality}.clip.fused.fp32.onnx",
                work / f"{modality}.clip.static.onnx",
                calib,
                ["MatMul", "Gemm"],
            ),
        )


def session_levers(
    bench: LeverBench, modality: str, int8: Path, name: str, x: np.ndarray, reference: np.ndarray
) -> None:
    """The pack's int8 file run otherwise: batch sizes, threads, graph optimization, duplicate
    frames (``name``, ``x``: the encoder's first input)."""
    if modality == "vision":
        for size in (1, 3, 5, 15):
            chunks = [{name: x[i : i + size]} for i in range(0, len(x), size)]
            bench.add("batch size", f"int8, {size} frame(s) per run x {len(chunks)}", int8, chunks)
    for threads, spinning in ((1, False), (2, True), (2, False)):
        bench.add(
            "threads",
            f"int8, {threads} thread(s), spinning {'on' if spinning else 'off'}",
            int8,
            threads=threads,
            spinning=spinning,
        )
    for level in ("basic", "extended", "all"):
        bench.add("graph optimization", f"int8, ORT_ENABLE_{level.upper()}", int8, level=level)
    if modality == "vision":
        dup = [{name: np.concatenate([x[:8], x[:7]])}]
        bench.add(
            "duplicate frames",
            "int8, 15 frames of which 7 repeat earlier ones (no dedup)",
            int8,
            dup,
            notes="what a frame cache saves: see the 8-frame row",
            expect=np.concatenate([reference[:8], reference[:7]]),
        )
        bench.add(
            "duplicate frames",
            "int8, the 8 distinct frames only (dedup)",
            int8,
            [{name: x[:8]}],
            expect=reference[:8],
        )


def levers(
    preset_name: str,
    modality: str,
    pack: Path,
    work: Path,
    repeat: int,
    only: set[str] | None,
    retries: int = 2,
    quiet_minutes: float = 10.0,
) -> dict[str, Any]:
    """Time every variant; a variant timed while other processes took the CPU is timed again
    after waiting for quiet (up to ``retries`` times); each row keeps its interference."""
    from msa_runtime.pack import load_manifest

    manifest = load_manifest(pack, verify=False)
    entry = manifest.encoders[modality]
    card = get_preset_random(preset_name).encoders[modality]
    cfg = model_config(card.kind, card.config)
    x = encoder_inputs(pack, modality, entry)
    fp32, int8 = pack / entry.files["fp32"], pack / entry.files["int8"]
    names = [i.name for i in session(fp32).get_inputs()]
    whole = [dict(zip(names, x))]
    reference = session(fp32).run(["hidden"], whole[0])[0]
    interference = Interference()
    bench = LeverBench(whole, reference, repeat, only, retries, quiet_minutes)
    log(
        f"{preset_name} {modality}: {card.kind}, {card.blocks} blocks, input "
        + ", ".join(f"{n} {a.shape}" for n, a in zip(names, x))
    )
    # prime the process (weights into the page cache, allocator, clocks): untimed
    timed(session(int8), whole, repeat=1, warmup=2)
    base = bench.add(
        "baseline",
        "pack int8 (MatMul/Gemm, per channel)",
        int8,
        notes=f"{int8.stat().st_size / 1e6:,.0f} MB",
    )
    bench.add("baseline", "pack fp32", fp32, notes=f"{fp32.stat().st_size / 1e6:,.0f} MB")
    fusion_levers(bench, modality, fp32, work, cfg.num_attention_heads, cfg.hidden_size)
    # calibration inputs for static quantization: a few frames (or the clip itself for audio
    # and text: random weights, so in-sample calibration is only a speed measurement)
    calib = [{names[0]: x[0][i : i + 3]} for i in (0, 6, 12)] if modality == "vision" else whole
    quantization_levers(bench, modality, fp32, work, calib)
    session_levers(bench, modality, int8, names[0], x[0], reference)
    # the same session settings as the first row, last: the spread between the two is the
    # run-to-run noise every other row has to beat
    bench.add("baseline", "pack int8 again, at the end (run-to-run spread)", int8)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "modality": modality,
        "repeat": repeat,
        "frames": int(x[0].shape[0]) if modality == "vision" else None,
        "baseline_ms": base["median"] if base else None,
        "rows": bench.rows,
        "interference": interference.result(),
        "summary": lever_summary(bench.rows),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="ando2022-mosi")
    ap.add_argument("--modality", default="vision", choices=("vision", "text", "audio"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", help="comma-separated levers (e.g. 'attention fusion,batch size')")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--work", type=Path, default=HERE / ".cache")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument(
        "--retry-noisy",
        type=int,
        default=2,
        metavar="N",
        help="time a variant again (after waiting for quiet) when other processes "
        "took the CPU meanwhile, up to N times",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="MINUTES",
        help="before measuring, wait up to MINUTES for the other processes to go quiet",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preset = get_preset_random(args.preset)
    info = prepare(preset, args.work / args.preset, None, False, log)
    only = set(args.only.split(",")) if args.only else None
    quiet = wait_for_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        result = levers(
            args.preset,
            args.modality,
            Path(info["pack"]),
            Path(tmp),
            args.repeat,
            only,
            retries=args.retry_noisy,
            quiet_minutes=max(args.wait_quiet, 5.0),
        )
    result["quiet_wait"] = quiet
    for line in result["summary"]:
        log(line)
    if not args.no_write:
        key = args.preset if args.modality == "vision" else f"{args.preset} ({args.modality})"

        def update(doc: dict[str, Any]) -> None:
            doc.setdefault("levers", {})[key] = result

        path = write_results(args.out, update)
        log(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
