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
import collections
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e.clips import clip_inputs
from e2e.common import HERE, THREADS, log
from e2e.flops import model_config
from e2e.levers import lever_summary
from e2e.measure import Interference, noisy, stats, wait_for_quiet
from e2e.pipelines import get_preset_random, prepare
from e2e.render import write_results


def session(
    model: str | bytes | Path, threads: int = THREADS, spinning: bool = False, level: str = "all"
) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    opts.log_severity_level = 3
    return ort.InferenceSession(
        str(model) if isinstance(model, Path) else model, opts, providers=["CPUExecutionProvider"]
    )


def timed(
    sess: Any, chunks: list[dict[str, np.ndarray]], repeat: int, warmup: int = 1
) -> tuple[dict[str, float], np.ndarray]:
    """Run all ``chunks`` (one clip) ``warmup`` + ``repeat`` times; time per clip."""
    out = None
    for _ in range(warmup):
        out = [sess.run(["hidden"], f)[0] for f in chunks]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = [sess.run(["hidden"], f)[0] for f in chunks]
        times.append((time.perf_counter() - t0) * 1e3)
    assert out is not None
    return stats(times), np.concatenate(out, 0)


def op_counts(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(collections.Counter(n.op_type for n in model.graph.node))


def quantize(src: Path, dst: Path, op_types: list[str], per_channel: bool = True) -> Path:
    """The pack's quantization (msa_export.convert.onnx_file.quantize_int8) with other op types or scales."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from msa_export.convert.onnx_file import NEVER_QUANTIZE, quiet

    model = onnx.load(str(src), load_external_data=False)
    excluded = []
    for node in model.graph.node:
        scope = " ".join([node.name, *(p.value for p in node.metadata_props if p.key == "namespace")])
        if any(tag in scope for tag in NEVER_QUANTIZE):
            excluded.append(node.name)
    with quiet():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            op_types_to_quantize=op_types,
            nodes_to_exclude=excluded,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return dst


def quantize_static_qdq(
    src: Path, dst: Path, calibration: list[dict[str, np.ndarray]], op_types: list[str]
) -> Path:
    """Static int8 in QDQ form: activation scales calibrated (MinMax) on ``calibration`` feeds,
    uint8 activations, int8 per-channel weights; the same nodes excluded as the pack's."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from msa_export.convert.onnx_file import NEVER_QUANTIZE, quiet

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    model = onnx.load(str(src), load_external_data=False)
    excluded = [
        n.name
        for n in model.graph.node
        if any(t in " ".join([n.name, *(p.value for p in n.metadata_props)]) for t in NEVER_QUANTIZE)
    ]
    with quiet():
        quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return dst


def _count_text(path: Path, op: str) -> str:
    return f"{op} {op_counts(path).get(op, 0)}"


def fuse(src: Path, dst: Path, model_type: str, heads: int, hidden: int) -> tuple[Path, dict[str, int]]:
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model = optimize_model(str(src), model_type=model_type, num_heads=heads, hidden_size=hidden, opt_level=0)
    model.save_model_to_file(str(dst))
    return dst, op_counts(dst)


FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "LayerNormalization",
    "QuickGelu",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "Softmax",
    "MatMul",
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
    from msa_export.gate.checks import cosine
    from msa_runtime.pack import load_manifest
    from msa_runtime.preprocess import TextEncoder, audio_batch, vision_batch

    manifest = load_manifest(pack, verify=False)
    entry = manifest.encoders[modality]
    preset = get_preset_random(preset_name)
    card = preset.encoders[modality]
    cfg = model_config(card.kind, card.config)
    clip = clip_inputs()
    if modality == "vision":
        x: tuple[np.ndarray, ...] = (vision_batch(list(clip["frames"]), entry.prep),)
    elif modality == "audio":
        x = (audio_batch(clip["audio"], entry.prep),)
    else:
        x = TextEncoder(pack / entry.prep.tokenizer, entry.prep)(clip["text"])
    fp32, int8 = pack / entry.files["fp32"], pack / entry.files["int8"]
    names = [i.name for i in session(fp32).get_inputs()]
    whole = [dict(zip(names, x))]
    reference = session(fp32).run(["hidden"], whole[0])[0]
    rows: list[dict[str, Any]] = []
    interference = Interference()

    def add(
        lever: str,
        variant: str,
        model: Path | bytes | Callable[[], Path],
        chunks: list[dict[str, np.ndarray]] | None = None,
        notes: str | Callable[[], str] = "",
        expect: np.ndarray | None = None,
        **kw: Any,
    ) -> dict[str, Any] | None:
        if only and lever not in only:
            return None
        try:
            if callable(model):
                model = model()
            if callable(notes):
                notes = notes()
            sess = session(model, **kw)
            for attempt in range(retries + 1):
                watch = Interference()
                st, out = timed(sess, chunks or whole, repeat)
                busy = watch.result()
                if not noisy(busy) or attempt == retries:
                    break
                log(
                    f"  ({variant}: others took {busy['others_cpu_share']:.0%} of the CPU; "
                    "waiting for quiet to time it again)"
                )
                wait_for_quiet(quiet_minutes)
            del sess
        except Exception as exc:  # an ORT kernel missing for a variant is a result, not a crash
            row: dict[str, Any] = {
                "lever": lever,
                "variant": variant,
                "median": None,
                "p90": None,
                "cosine": None,
                "notes": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}",
            }
            rows.append(row)
            log(f"  {lever:18s} {variant:44s} FAILED {row['notes']}")
            return row
        row = {
            "lever": lever,
            "variant": variant,
            "median": st["median"],
            "p90": st["p90"],
            "cosine": cosine(out, reference if expect is None else expect),
            "notes": notes,
            "interference": busy,
        }
        rows.append(row)
        log(f"  {lever:18s} {variant:44s} {st['median']:9.1f} ms  cos {row['cosine']:.5f}  {notes}")
        return row

    log(
        f"{preset_name} {modality}: {card.kind}, {card.blocks} blocks, input "
        + ", ".join(f"{n} {a.shape}" for n, a in zip(names, x))
    )
    # prime the process (weights into the page cache, allocator, clocks): untimed
    timed(session(int8), whole, repeat=1, warmup=2)
    base = add(
        "baseline",
        "pack int8 (MatMul/Gemm, per channel)",
        int8,
        notes=f"{int8.stat().st_size / 1e6:,.0f} MB",
    )
    add("baseline", "pack fp32", fp32, notes=f"{fp32.stat().st_size / 1e6:,.0f} MB")
    heads, hidden = cfg.num_attention_heads, cfg.hidden_size
    fusion_types = {"vision": ("clip", "vit", "bert"), "text": ("bert",), "audio": ("bert",)}[modality]
    for mt in fusion_types:
        if only and "attention fusion" not in only:
            break
        try:
            fused, counts = fuse(fp32, work / f"{modality}.{mt}.fused.fp32.onnx", mt, heads, hidden)
        except Exception as exc:
            rows.append(
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
        add("attention fusion", f"optimize_model('{mt}') fp32", fused, notes=found)
        add(
            "attention fusion",
            f"optimize_model('{mt}') + int8 MatMul/Gemm",
            partial(quantize, fused, work / f"{modality}.{mt}.fused.int8.onnx", ["MatMul", "Gemm"]),
            notes=found,
        )
        if counts.get("Attention"):
            qa = work / f"{modality}.{mt}.fused.qattn.onnx"
            add(
                "attention fusion",
                f"optimize_model('{mt}') + int8 MatMul/Gemm/Attention",
                partial(quantize, fused, qa, ["MatMul", "Gemm", "Attention"]),
                notes=partial(_count_text, qa, "QAttention"),
            )
    qconv = work / f"{modality}.conv.int8.onnx"
    add(
        "quantized conv",
        "int8 MatMul/Gemm + Conv (ConvInteger)",
        lambda: quantize(fp32, qconv, ["MatMul", "Gemm", "Conv"]),
        notes=lambda: f"ConvInteger {op_counts(qconv).get('ConvInteger', 0)}",
    )
    add(
        "per-tensor",
        "int8 MatMul/Gemm, per-tensor scales",
        lambda: quantize(
            fp32, work / f"{modality}.pertensor.int8.onnx", ["MatMul", "Gemm"], per_channel=False
        ),
    )
    # calibration inputs for static quantization: a few frames (or the clip itself for audio
    # and text: random weights, so in-sample calibration is only a speed measurement)
    calib = [{names[0]: x[0][i : i + 3]} for i in (0, 6, 12)] if modality == "vision" else whole
    add(
        "static int8 (QDQ)",
        "MatMul/Gemm, calibrated activation scales",
        partial(quantize_static_qdq, fp32, work / f"{modality}.static.onnx", calib, ["MatMul", "Gemm"]),
    )
    add(
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
        add(
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
    if modality == "vision":
        frames = x[0]
        for size in (1, 3, 5, 15):
            chunks = [{names[0]: frames[i : i + size]} for i in range(0, len(frames), size)]
            add("batch size", f"int8, {size} frame(s) per run x {len(chunks)}", int8, chunks)
    for threads, spinning in ((1, False), (2, True), (2, False)):
        add(
            "threads",
            f"int8, {threads} thread(s), spinning {'on' if spinning else 'off'}",
            int8,
            threads=threads,
            spinning=spinning,
        )
    for level in ("basic", "extended", "all"):
        add("graph optimization", f"int8, ORT_ENABLE_{level.upper()}", int8, level=level)
    if modality == "vision":
        dup = [{names[0]: np.concatenate([x[0][:8], x[0][:7]])}]
        add(
            "duplicate frames",
            "int8, 15 frames of which 7 repeat earlier ones (no dedup)",
            int8,
            dup,
            notes="what a frame cache saves: see the 8-frame row",
            expect=np.concatenate([reference[:8], reference[:7]]),
        )
        add(
            "duplicate frames",
            "int8, the 8 distinct frames only (dedup)",
            int8,
            [{names[0]: x[0][:8]}],
            expect=reference[:8],
        )
    # the same session settings as the first row, last: the spread between the two is the
    # run-to-run noise every other row has to beat
    add("baseline", "pack int8 again, at the end (run-to-run spread)", int8)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "modality": modality,
        "repeat": repeat,
        "frames": int(x[0].shape[0]) if modality == "vision" else None,
        "baseline_ms": base["median"] if base else None,
        "rows": rows,
        "interference": interference.result(),
        "summary": lever_summary(rows),
    }


def main(argv: list[str] | None = None) -> int:
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
    args = ap.parse_args(argv)
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
