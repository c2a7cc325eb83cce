"""Parts of the results file: install sizes, the streams, the OpenVINO contenders per encoder."""

from __future__ import annotations

from typing import Any

from e2e.common import LABELS, STREAMS
from e2e.render_util import fmt_mb, fmt_ms


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
