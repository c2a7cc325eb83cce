"""Parts of the results file: install sizes, the streams, the OpenVINO contenders per encoder,
sizes on disk, the distance to the machine's peak, the int8 pack's profile."""

from __future__ import annotations

from typing import Any

from e2e.common import LABELS, STREAMS
from e2e.render_util import fmt_mb, fmt_ms, peak_cell, sustained_int8


def render_install(inst: dict[str, Any]) -> list[str]:
    L = ["## Install size (this venv's site-packages, from each distribution's RECORD)", ""]
    L.append("| stack | roots | roots alone | with all their dependencies |")
    L.append("|---|---|---|---|")
    for label, s in inst.items():
        L.append(
            f"| {label.replace('_', ' ')} | {', '.join(s['roots'])} | {fmt_mb(s['direct_bytes'])} | "
            f"{fmt_mb(s['with_dependencies_bytes'])} ({len(s['dependencies'])} distributions) |"
        )
    rt, ts = inst["runtime"], inst["torch_stack"]
    L.append("")
    L.append(
        f"The runtime is "
        f"{ts['with_dependencies_bytes'] / max(rt['with_dependencies_bytes'], 1):.1f}x smaller "
        "than the torch stack with dependencies. Largest: "
        + "; ".join(
            f"{k} {fmt_mb(v)}" for k, v in sorted(ts["dependencies"].items(), key=lambda kv: -kv[1])[:5]
        )
        + "."
    )
    L.append("")
    return L


def render_streams(r: dict[str, Any]) -> list[str]:
    """One paragraph per stream of the run (:data:`e2e.common.STREAMS`; OpenVINO ones when it
    was installed)."""
    L: list[str] = []
    for key, *_, title in STREAMS:
        stream: dict[str, Any] | None = r.get(key)
        if not stream:
            continue
        files = stream.get("files")
        L.append(f"### Streaming (`Analyzer.stream`, {title})")
        L.append("")
        L.append(
            f"A generated {stream['duration_s']:.0f} s clip "
            f"({stream.get('media_desc', 'H.264 640x480 at 25 fps')}, AAC 48 kHz mono, "
            f".srt transcript with a cue every 2.5 s), windows of {stream['window']:g} s "
            f"every {stream['hop']:g} s: {stream['windows']} windows in {stream['wall_s']:.1f} s, "
            f"**real-time factor {stream['rtf']:.3f}** "
            f"(processing time / media time, decoding included; the Analyzer's {stream['load_s']:.1f} s "
            f"load excluded). Per-window latency (scoring after the window's media is decoded) "
            f"median {fmt_ms(stream['window_latency_ms']['median'])} ms, "
            f"p90 {fmt_ms(stream['window_latency_ms']['p90'])} ms"
            + (
                f", first window {fmt_ms(stream['first_window_latency_ms'])} ms (its frames since the "
                "start, and each provider's one-time setup on first use). "
                if stream.get("first_window_latency_ms") is not None
                else ". "
            )
            + "Per window, median ms: "
            + ", ".join(f"{k} {fmt_ms(v['median'])}" for k, v in stream["stage_ms"].items())
            + (f". Files: {', '.join(files.values())}" if files else "")
            + f". Peak RSS {stream['peak_rss_mb']:,.0f} MB; torch imported: "
            f"{'yes' if stream['torch_imported'] else 'no'}; others' CPU "
            f"{stream['interference']['others_cpu_share']:.0%}, "
            f"steal {stream['interference']['steal_share']:.0%}."
        )
        L.append("")
    return L


def render_openvino(r: dict[str, Any]) -> list[str]:
    """Per encoder, the CPU EP int8 file against the OpenVINO contenders (ms, cosine, GOP/s)."""
    c = r["contenders"]
    names = [n for n in ("ort_int8_cut", "ov_bf16_cut", "ov_int8_cut") if n in c]
    if len(names) < 2:
        return []
    L = [
        "### Per encoder: CPU EP int8 against OpenVINO (median ms, min cosine to the reference, G(FL)OP/s)",
        "",
    ]
    L.append("| encoder | " + " | ".join(LABELS[n] for n in names) + " | fastest |")
    L.append("|---|" + "---|" * (len(names) + 1))
    lim = r["limit"]["encoders"]
    for m in r["encoders"]:
        cells = []
        for n in names:
            ms = c[n]["stages"][m]["median"]
            cos = c[n]["fidelity"]["cosine_min"][m]
            rate = lim[m].get(f"{n}_gflops")
            file = (c[n].get("files") or {}).get(m)
            cells.append(
                f"{fmt_ms(ms)} (cos {cos:.4f}"
                + (f", {rate:,.0f}" if rate else "")
                + ")"
                + (f" `{file}`" if file else "")
            )
        fastest = min(names, key=lambda n: c[n]["stages"][m]["median"])
        L.append(f"| {m} | " + " | ".join(cells) + f" | {LABELS[fastest]} |")
    L.append("")
    return L


def render_sizes(r: dict[str, Any]) -> list[str]:
    """The packs' files per precision, and the full-depth files, on disk."""
    L: list[str] = []
    sizes = r["sizes"]
    L.append("### Size on disk")
    L.append("")
    L.append("| what | files | total |")
    L.append("|---|---|---|")
    for prec, s in sizes["per_precision"].items():
        L.append(
            f"| pack, {prec} (+ head and tokenizer) | "
            + ", ".join(f"{n} {fmt_mb(b)}" for n, b in s["encoders"].items())
            + f" | {fmt_mb(s['total_with_head_and_tokenizer'])} |"
        )
    L.append(
        "| full-depth fp32 ONNX (contender 3) | "
        + ", ".join(f"{n} {fmt_mb(b)}" for n, b in sizes["full_depth_fp32"].items())
        + f" | {fmt_mb(sizes['full_depth_fp32_total'])} |"
    )
    L.append("")
    return L


def render_limit(r: dict[str, Any]) -> list[str]:
    """The machine's measured peak, and how close each cut encoder gets to it."""
    L: list[str] = []
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
        L.append(f"| {lab} {shape} | " + " | ".join(peak_cell(x) for x in row) + " |")
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
    return L


def render_profiles(r: dict[str, Any]) -> list[str]:
    """Where the int8 pack's time goes (top ops and matmul shapes), and the fp32 pack's top ops."""
    L: list[str] = []
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
    return L
