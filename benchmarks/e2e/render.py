"""The results files: ``<hostname>.md`` rendered from ``<hostname>.json``, and writing both."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e.analysis import explain, targets
from e2e.common import CONTENDERS, LABELS, STAGES, THREADS, best_pack, present
from e2e.flops import FLOPS_DOC
from e2e.levers import render_levers
from e2e.machine import machine
from e2e.render_parts import (
    render_install,
    render_limit,
    render_openvino,
    render_profiles,
    render_sizes,
    render_streams,
)
from e2e.render_torch import render_torch_best, vs_best_torch
from e2e.render_util import fmt_ms


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
        L += render_summary(doc)
    for p, r in runs.items():
        L += render_run(p, r)
    if doc.get("install"):
        L += render_install(doc["install"])
    if doc.get("levers"):
        L += render_levers(doc["levers"])
    L += render_method()
    return "\n".join(L) + "\n"


def render_summary(doc: dict[str, Any]) -> list[str]:
    """The headline table of every run, the targets, and why the missed ones are missed."""
    runs = doc["runs"]
    L: list[str] = []
    L.append("## Headline: end to end, speed-up over the reference (median of the repeats)")
    L.append("")
    cols = [c for c in CONTENDERS if any(c in r["contenders"] for r in runs.values())]
    L.append(
        "| preset | "
        + " | ".join(LABELS[c] for c in cols)
        + " | best pack | its encoders + head only | its score diff | best pack vs best PyTorch |"
    )
    L.append("|---|" + "---|" * (len(cols) + 4))
    for p, r in runs.items():
        cells = []
        for c in cols:
            cc = r["contenders"].get(c)
            cells.append(
                "not run"
                if cc is None
                else f"{fmt_ms(cc['stages']['total']['median'])} ms"
                + ("" if c == "reference" else f" ({cc['ratio_to_reference']['total']:.2f}x)")
            )
        best = best_pack(r)
        diff = r["contenders"][best]["fidelity"]["score_diff_own_pipeline"]
        models = r["contenders"][best]["ratio_to_reference"].get("models")
        mtext = "-" if models is None else f"{models:.2f}x"
        vs = vs_best_torch(r)
        vtext = "not run" if vs is None else f"{vs:.2f}x"
        L.append(f"| {p} | " + " | ".join(cells) + f" | {LABELS[best]} | {mtext} | {diff:.4f} | {vtext} |")
    L.append("")
    L.append("## Targets (issue 9; the int8-peak rows are issue 5's)")
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
    return L


def render_method() -> list[str]:
    """How the numbers are taken."""
    L: list[str] = []
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
        "- Fidelity: min cosine over feature vectors (msa_export.gate.checks.cosine) and max |diff| of each "
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
        "- PyTorch cut, fastest CPU settings (`torch_best`, e2e/torch_best.py): per encoder, eager "
        "fp32, bf16 autocast, torch.ao dynamic int8 Linear, torch.compile (inductor, freezing on) "
        "alone and with bf16 or int8, each timed on the clip after one warm-up call; the fastest "
        "whose mean cosine to fp32 stays >= 0.999 is kept (the search counts as load time)."
    )
    L.append(
        "- ORT fp32 full depth: the uncut encoder exported with output_hidden_states and outputs "
        "(hidden state after the layer, last hidden state), so no block can be pruned."
    )
    L.append(
        "- Interference: share of all CPU time (both cores) taken by other processes and by the "
        "hypervisor (steal) while a contender was timing, from /proc/stat."
    )
    L.append(
        "- OpenVINO contenders: ONNX Runtime with the OpenVINO execution provider plugin "
        "(onnxruntime-ep-openvino), sessions built by the runtime's make_session with the same "
        "threads; the fp32 files run in bf16 when the CPU has AMX or AVX512-BF16 (see ISA above), "
        "the ov-int8 files are the pack's NNCF static int8 files. Not measured here: a CPU without "
        "AMX/AVX512-BF16 (where OpenVINO's fp32 runs in fp32 and its int8 without AMX), any GPU "
        "(no CUDA or OpenVINO GPU device on this VM)."
    )
    L.append("- " + FLOPS_DOC.replace("\n", " "))
    L.append("")
    return L


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
        L.append(
            f"The pack crops faces: its detector (MTCNN stages in ONNX Runtime, numpy cascade) "
            f"found a face in {found} of {r['limit']['inputs']['vision']} frames of the clip "
            "(frames without one get the centre crop); the same preprocessing feeds every "
            "contender and is timed as 'face detect + crop'."
        )
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
    cols = present(r)
    L += render_latency(r, cols)
    L += render_torch_best(r)
    L += render_fidelity(r, cols)
    L += render_memory(r, cols)
    L += render_sizes(r)
    L += render_limit(r)
    L += render_openvino(r)
    L += render_profiles(r)
    L += render_streams(r)
    return L


def render_latency(r: dict[str, Any], cols: list[str]) -> list[str]:
    """Median / p90 per stage of every contender, with its speed-up over the reference."""
    L: list[str] = []
    L.append("")
    L.append("### Latency (ms, median / p90) and speed-up over the reference (median)")
    L.append("")
    L.append("| stage | " + " | ".join(LABELS[c] for c in cols) + " |")
    L.append("|---|" + "---|" * len(cols))
    names = {"total": "**end to end**", "models": "encoders + head", "face": "face detect + crop"}
    for s in (*STAGES, "models", "total"):
        if s not in r["contenders"]["reference"]["stages"]:
            continue
        cells = []
        for c in cols:
            st = r["contenders"][c]["stages"][s]
            ratio = r["contenders"][c]["ratio_to_reference"].get(s)
            cells.append(
                f"{fmt_ms(st['median'])} / {fmt_ms(st['p90'])}"
                + ("" if c == "reference" or ratio is None else f" ({ratio:.2f}x)")
            )
        L.append(f"| {names.get(s, s)} | " + " | ".join(cells) + " |")
    L.append("")
    overlapping = [LABELS[c] for c in cols if r["contenders"][c].get("overlapping_stages")]
    if overlapping:
        L.append(
            f"{', '.join(overlapping)}: timed through `Analyzer.predict_arrays`; text, audio and vision "
            "(with its face crop and preprocessing) run on three threads at once, so its stage times "
            "overlap and only the end-to-end time adds up (preprocessing shows as 0, encoders + head "
            "as the end-to-end time)."
        )
        L.append("")
    return L


def render_fidelity(r: dict[str, Any], cols: list[str]) -> list[str]:
    """Feature cosines and scores of every contender against the reference."""
    L: list[str] = []
    L.append("### Fidelity against the reference")
    L.append("")
    mods = list(r["encoders"])
    L.append(
        "| contender | "
        + " | ".join(f"{m} cos (max abs)" for m in mods)
        + " | score (own head) | diff | score (pack head) | diff |"
    )
    L.append("|---|" + "---|" * (len(mods) + 4))
    for c in cols:
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
    return L


def render_memory(r: dict[str, Any], cols: list[str]) -> list[str]:
    """Peak RSS, load time and interference of every contender's process."""
    L: list[str] = []
    L.append("### Memory (peak RSS of each contender's process, MB) and load time")
    L.append("")
    L.append(
        "| contender | after load | peak inference | peak incl. load | load s | torch imported "
        "| others' CPU | steal |"
    )
    L.append("|---|---|---|---|---|---|---|---|")
    for c in cols:
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
    from charts import chart_for  # <host>.png beside the table (benchmarks/charts.py)

    chart_for(out / f"{host}.md")
    return jpath
