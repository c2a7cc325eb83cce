"""Analysis of a run: ratios, fidelity, distance to the machine's peak, targets and why they are missed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from e2e.common import LABELS, STAGES, STREAMS, TARGETS, best_pack
from e2e.flops import encoder_flops, model_config
from e2e.levers import best_lever
from e2e.measure import noisy
from e2e.pipelines import Preprocessor, head_feeds
from e2e.profile import classes_text
from e2e.render_util import fmt_ms, sustained_int8


def analyse(
    preset: Any, run: dict[str, Any], feats: dict[str, dict[str, np.ndarray]], clip: dict[str, Any]
) -> None:
    """Ratios, fidelity (cosine, score via the pack's head), FLOPs and fractions of the peak."""
    pack = Path(run["pack"])
    prep = Preprocessor(pack)
    inputs = prep(clip)[0]
    fidelity(run, feats, pack / prep.manifest.head.file, inputs)
    run["limit"] = limit(preset, run, inputs)


def fidelity(
    run: dict[str, Any], feats: dict[str, dict[str, np.ndarray]], head_file: Path, inputs: Any
) -> None:
    """Each contender's ratios to the reference per stage, and its features and scores against
    the reference's (its own head's score, and the pack's head fed its features)."""
    import onnxruntime as ort

    from msa_export.gate.checks import cosine

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    head = ort.InferenceSession(str(head_file), opts, providers=["CPUExecutionProvider"])
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


def limit(preset: Any, run: dict[str, Any], inputs: Any) -> dict[str, Any]:
    """FLOPs of the cut encoders on this clip, and the fraction of the peak they reach."""
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
            card.kind, card.config, int(model_config(card.kind, card.config).num_hidden_layers), lengths[m]
        )["total"]
        for m, card in preset.encoders.items()
    }
    peaks = run["peak"]["peaks"]
    big = max((k for k in peaks if k.endswith("/int8") and k.startswith("square")), default=None)
    int8_peak = peaks[big]["best_gflops"] if big else float("nan")
    fp32_peak = peaks[big.replace("/int8", "/fp32")]["best_gflops"] if big else float("nan")
    out: dict[str, Any] = {
        "int8_peak_gops": int8_peak,
        "fp32_peak_gflops": fp32_peak,
        "inputs": lengths,
        "encoders": {},
    }
    for m in preset.encoders:
        row: dict[str, Any] = {
            "flops": flops[m]["total"],
            "parts": flops[m],
            "full_depth_flops": full_flops[m],
        }
        for name in ("ort_int8_cut", "ort_fp32_cut", "torch_cut", "ov_bf16_cut", "ov_int8_cut"):
            if name not in run["contenders"]:
                continue
            ms = run["contenders"][name]["stages"][m]["median"]
            row[f"{name}_gflops"] = flops[m]["total"] / (ms * 1e-3) / 1e9
        row["int8_fraction_of_int8_peak"] = row["ort_int8_cut_gflops"] / int8_peak
        row["fp32_fraction_of_fp32_peak"] = row["ort_fp32_cut_gflops"] / fp32_peak
        out["encoders"][m] = row
    out["all_encoders"] = all_encoders(preset, run, sum(flops[m]["total"] for m in preset.encoders))
    out["all_encoders"]["int8_fraction_of_int8_peak"] = out["all_encoders"]["int8_gops"] / int8_peak
    out["all_encoders"]["fp32_fraction_of_fp32_peak"] = out["all_encoders"]["fp32_gflops"] / fp32_peak
    return out


def all_encoders(preset: Any, run: dict[str, Any], total_flops: float) -> dict[str, Any]:
    """The encoders together: time and throughput of each pack contender."""
    int8_ms = sum(run["contenders"]["ort_int8_cut"]["stages"][m]["median"] for m in preset.encoders)
    fp32_ms = sum(run["contenders"]["ort_fp32_cut"]["stages"][m]["median"] for m in preset.encoders)
    out = {
        "flops": total_flops,
        "int8_ms": int8_ms,
        "fp32_ms": fp32_ms,
        "int8_gops": total_flops / (int8_ms * 1e-3) / 1e9,
        "fp32_gflops": total_flops / (fp32_ms * 1e-3) / 1e9,
    }
    for name in ("ov_bf16_cut", "ov_int8_cut"):
        if name in run["contenders"]:
            ms = sum(run["contenders"][name]["stages"][m]["median"] for m in preset.encoders)
            out[f"{name}_ms"] = ms
            out[f"{name}_gops"] = total_flops / (ms * 1e-3) / 1e9
    return out


def noise_text(q: dict[str, Any]) -> str:
    if noisy(q):
        return (
            f" (while it was timed, other processes took {q['others_cpu_share']:.0%} of the "
            f"CPU and the hypervisor {q['steal_share']:.0%}: the machine was not quiet)"
        )
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
        r = runs[t["preset"]]
        c = r["contenders"]
        i8 = c[best_pack(r)] if t["key"] in ("speedup", "score_diff") else c["ort_int8_cut"]
        noise = noise_text(i8["interference"])
        if t["key"] == "speedup":
            lines.append(why_speedup(doc, t, i8, noise))
        elif t["key"] == "peak":
            lines.append(why_peak(t, r, i8, noise))
        elif t["key"] == "rtf":
            lines.append(why_rtf(t, r))
        elif t["key"] == "score_diff":
            f = i8["fidelity"]
            lines.append(
                f"- **{t['target']}: {t['measured']}.** Feature cosines of {LABELS[best_pack(r)]}: "
                + ", ".join(f"{m} {v:.5f}" for m, v in f["cosine_min"].items())
                + "."
            )
    return lines


def why_speedup(doc: dict[str, Any], t: dict[str, Any], i8: dict[str, Any], noise: str) -> str:
    """The best pack's time against the target's, by stage and by step from the reference, the
    bound at the int8 peak, and the best measured vision lever."""
    p = t["preset"]
    r = doc["runs"][p]
    c = r["contenders"]
    want = TARGETS["speedup"][p]
    ref = c["reference"]["stages"]["total"]["median"]
    best_tot = i8["stages"]["total"]["median"]
    overlap = ""
    if i8.get("overlapping_stages") and "ov_int8_cut" in c:  # break down the sequential run
        i8 = c["ov_int8_cut"]
        overlap = (
            f" It overlaps its stages: the breakdown is of the same files run one after "
            f"another ({fmt_ms(i8['stages']['total']['median'])} ms)."
        )
    tot = i8["stages"]["total"]["median"]
    need = ref / want
    stages = ", ".join(
        f"{s} {fmt_ms(i8['stages'][s]['median'])} ms ({i8['stages'][s]['median'] / tot:.0%})"
        for s in STAGES
        if s in i8["stages"]
    )
    steps = [
        c["reference"]["stages"]["total"]["median"] / c["torch_cut"]["stages"]["total"]["median"],
        c["torch_cut"]["stages"]["total"]["median"] / c["ort_fp32_cut"]["stages"]["total"]["median"],
        c["ort_fp32_cut"]["stages"]["total"]["median"] / tot,
    ]
    text = (
        f"- **{t['target']}: {t['measured']}.** The pack takes {fmt_ms(best_tot)} ms a clip{noise}; "
        f"the target needs <= {fmt_ms(need)} ms ({fmt_ms(best_tot - need)} ms less).{overlap} "
        f"Its time: {stages}. "
        f"From the reference, cutting the encoders gives {steps[0]:.2f}x, ONNX Runtime fp32 "
        f"{steps[1]:.2f}x more, int8 {steps[2]:.2f}x more."
    )
    enc_ms = {m: i8["stages"][m]["median"] for m in r["encoders"]}
    lim = r["limit"]
    ideal = lim["all_encoders"]["flops"] / (lim["int8_peak_gops"] * 1e9) * 1e3
    rest = tot - sum(enc_ms.values())
    text += (
        f" Bound: with every encoder FLOP at the measured int8 peak "
        f"({lim['int8_peak_gops']:,.0f} GOP/s) the encoders would take {fmt_ms(ideal)} ms; "
        f"with the rest as measured ({fmt_ms(rest)} ms: preprocessing, face crop, head) "
        f"end to end would be {fmt_ms(ideal + rest)} ms = {ref / (ideal + rest):.1f}x."
    )
    worst = max(enc_ms, key=lambda m: enc_ms[m])
    prof = i8.get("profile", {}).get(worst)
    if prof:
        text += f" The {worst} encoder dominates; its profile: {classes_text(prof)}."
    return text + lever_text(doc, p, enc_ms, tot, ref)


def lever_text(doc: dict[str, Any], preset: str, enc_ms: dict[str, float], tot: float, ref: float) -> str:
    """What the best measured vision lever (``bench_levers.py``) would make of the end to end."""
    lev = best_lever(doc, preset)
    if not lev or "vision" not in enc_ms:
        return ""
    scaled = enc_ms["vision"] * lev["median"] / lev["baseline_ms"]
    proj = tot - enc_ms["vision"] + scaled
    gain = lev["baseline_ms"] / lev["median"]
    return (
        f" Best measured vision lever (`bench_levers.py`): {lev['lever']}, "
        f"'{lev['variant']}' ({gain:.2f}x on the vision encoder, cosine "
        f"{lev['cosine']:.5f}"
        + (f"; within the run-to-run spread of {lev['spread']:.0%}" if abs(gain - 1) <= lev["spread"] else "")
        + f"): end to end would be about {fmt_ms(proj)} ms = {ref / proj:.2f}x."
    )


def why_peak(t: dict[str, Any], r: dict[str, Any], i8: dict[str, Any], noise: str) -> str:
    """The cut encoders' throughput against the MatMulInteger peak, sustained and DQ peaks."""
    lim = r["limit"]
    text = (
        f"- **{t['target']}: {t['measured']}.** The cut encoders do "
        f"{lim['all_encoders']['flops'] / 1e9:,.0f} GFLOP in "
        f"{fmt_ms(lim['all_encoders']['int8_ms'])} ms "
        f"= {lim['all_encoders']['int8_gops']:,.0f} GOP/s against a MatMulInteger peak of "
        f"{lim['int8_peak_gops']:,.0f}{noise}."
    )
    sus = sustained_int8(r)
    text += (
        f" The peak is the best single run; the same matmul's median over its 4 s "
        f"is {sus:,.0f} GOP/s, and against that the encoders reach "
        f"{lim['all_encoders']['int8_gops'] / sus:.0%}."
    )
    dq = r["peak"]["peaks"].get("square/dq_int8")
    if dq:
        text += (
            f" The pack's GEMMs are DynamicQuantizeMatMul (fp32 activations quantized on "
            f"the fly), whose own peak here is {dq['best_gflops']:,.0f} GOP/s."
        )
    for m, prof in i8.get("profile", {}).items():
        text += f" {m}: {classes_text(prof)}."
    return text


def why_rtf(t: dict[str, Any], r: dict[str, Any]) -> str:
    """The fastest stream's time per hop against the budget, and where a window's time goes."""
    st = best_stream(r) or r["stream"]
    # a concurrent stream's stage times overlap: the parts come from the same provider's
    # sequential stream
    seq = r.get("stream_openvino") if st.get("concurrent") else None
    parts = seq or st
    hop, window = st["hop"], st["window"]
    per_window = st["wall_s"] / max(st["windows"], 1) * 1e3
    seq_window = parts["wall_s"] / max(parts["windows"], 1) * 1e3
    enc = sum(v["median"] for v in parts["stage_ms"].values())
    return (
        f"- **{t['target']}: {t['measured']}.** {st['windows']} windows in "
        f"{st['wall_s']:.1f} s{noise_text(st['interference'])}: "
        f"{fmt_ms(per_window)} ms per {hop:g} s hop, where the target allows "
        f"{fmt_ms(TARGETS['rtf'][t['preset']] * hop * 1e3)} ms. Per window (median ms"
        + (
            f", of the same files one after another: {fmt_ms(seq_window)} ms per hop"
            f"{noise_text(parts['interference'])}"
            if seq
            else ""
        )
        + "): "
        + ", ".join(f"{k} {fmt_ms(v['median'])}" for k, v in parts["stage_ms"].items())
        + f"; the remaining ~{fmt_ms(max(0.0, seq_window - enc))} ms is decoding "
        f"({st.get('media_desc', 'H.264')}), cropping and bookkeeping. Each window "
        f"re-encodes all {window:g} s of its audio ({window / hop:.0f}x the audio that is "
        "new per hop): WavLM's attention spans the window and neither preset's front end "
        "can be shared exactly (`bench_audio.py`), while frames are encoded once (cached "
        "across windows). Audio alone per window against the hop's budget: "
        f"{fmt_ms(parts['stage_ms'].get('audio', {}).get('median', 0.0))} of "
        f"{fmt_ms(TARGETS['rtf'][t['preset']] * hop * 1e3)} ms; the vision encoder alone on "
        f"the hop's new frames {fmt_ms(parts['stage_ms'].get('vision', {}).get('median', 0.0))} ms. "
        "What would close it: "
        "audio encoded once per hop (non-overlapping windows, or chunked audio features "
        "pooled per window: a change to what the head sees), fewer frames per second "
        "for the vision encoder, or more cores."
    )


def best_stream(run: dict[str, Any]) -> dict[str, Any] | None:
    """The fastest of the run's streams (:data:`e2e.common.STREAMS`)."""
    streams = [run[key] for key, *_ in STREAMS if run.get(key)]
    return min(streams, key=lambda s: s["rtf"]) if streams else None


def targets(runs: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, measured on the best pack contender of each run (the fastest of the
    CPU EP int8 pack and the OpenVINO ones)."""
    rows = []
    for preset, want in TARGETS["speedup"].items():
        r = runs.get(preset)
        best = best_pack(r) if r else None
        got = r["contenders"][best]["ratio_to_reference"]["total"] if r and best else None
        rows.append(
            {
                "target": f"{preset}: best pack end to end >= {want:g}x faster than the reference",
                "measured": None if got is None else f"{got:.2f}x ({LABELS[best or '']})",
                "met": None if got is None else got >= want,
                "preset": preset,
                "key": "speedup",
            }
        )
    for preset in TARGETS["speedup"]:
        r = runs.get(preset)
        best = best_pack(r) if r else None
        got = r["contenders"][best]["fidelity"]["score_diff_own_pipeline"] if r and best else None
        rows.append(
            {
                "target": f"{preset}: best pack's score difference to the reference "
                f"<= {TARGETS['score_diff']}",
                "measured": None if got is None else f"{got:.4f}",
                "met": None if got is None else got <= TARGETS["score_diff"],
                "preset": preset,
                "key": "score_diff",
            }
        )
    for preset, want in TARGETS["rtf"].items():
        s = best_stream(runs.get(preset, {}))
        rows.append(
            {
                "target": f"{preset}: streaming real-time factor <= {want}",
                "measured": None
                if s is None
                else f"{s['rtf']:.3f} ({s.get('providers', 'cpu')}; "
                f"{(s['wall_s'] + s['load_s']) / s['duration_s']:.3f} with the Analyzer's load)",
                "met": None if s is None else s["rtf"] <= want,
                "preset": preset,
                "key": "rtf",
            }
        )
    for preset in TARGETS["speedup"]:
        r = runs.get(preset)
        a = r["limit"]["all_encoders"] if r else {}
        got = a.get("int8_fraction_of_int8_peak")
        ov = a.get("ov_int8_cut_gops")
        if got is not None and ov is not None:
            got = max(got, ov / r["limit"]["int8_peak_gops"])
        rows.append(
            {
                "target": f"{preset}: int8 cut encoders >= {TARGETS['peak_fraction']:.0%} of the "
                "measured int8 MatMul peak",
                "measured": None
                if got is None
                else f"{got:.0%}"
                + (
                    ""
                    if ov is None
                    else f" (CPU EP {a['int8_fraction_of_int8_peak']:.0%}, OpenVINO "
                    f"{ov / r['limit']['int8_peak_gops']:.0%})"
                ),
                "met": None if got is None else got >= TARGETS["peak_fraction"],
                "preset": preset,
                "key": "peak",
            }
        )
    return rows
