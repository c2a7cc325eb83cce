"""The results' comparison with the best PyTorch (the ``torch_best`` contender, e2e.torch_best)."""

from __future__ import annotations

from typing import Any

from e2e.common import ANALYZER_CONTENDERS, LABELS, PACK_CONTENDERS, best_pack
from e2e.render_util import fmt_ms


def vs_best_torch(r: dict[str, Any]) -> float | None:
    """The best PyTorch's end-to-end time over the best pack's (None when it did not run)."""
    tb = r["contenders"].get("torch_best")
    if tb is None:
        return None
    best = r["contenders"][best_pack(r)]["stages"]["total"]["median"]
    return float(tb["stages"]["total"]["median"] / best)


def render_torch_best(r: dict[str, Any]) -> list[str]:
    """Per encoder: every PyTorch setting tried and the one kept, against the pack's files;
    end to end: each pack contender's speed-up over the best PyTorch."""
    tb = r["contenders"].get("torch_best")
    if tb is None or "torch_settings" not in tb:
        return []
    L = ["### Against the best PyTorch", ""]
    native = "yes" if tb.get("bf16_native") else "no (bf16 emulated)"
    L.append(
        "`torch_best` runs the same cut encoders in PyTorch, each at the setting that ran it "
        "fastest on this clip here, among those whose output keeps a mean cosine >= 0.999 to fp32 "
        f"eager (the pack gate's bar). Native bf16 matmuls on this CPU (oneDNN): {native}. "
        "Per setting: median ms of the encoder alone (cosine to fp32 eager; first call in s, "
        "which includes compiling); **bold** = kept."
    )
    L.append("")
    settings = list(next(iter(tb["torch_settings"].values())))
    L.append("| encoder | " + " | ".join(settings) + " | kept | best pack file, ms | pack vs kept |")
    L.append("|---|" + "---|" * (len(settings) + 3))
    packs = [c for c in PACK_CONTENDERS if c in r["contenders"] and c not in ANALYZER_CONTENDERS]
    for mod, rows in tb["torch_settings"].items():
        cells = [_setting_cell(rows.get(s), s == tb["torch_chosen"][mod]) for s in settings]
        kept = rows[tb["torch_chosen"][mod]]["median_ms"]
        best = min(packs, key=lambda c: r["contenders"][c]["stages"][mod]["median"])
        ms = r["contenders"][best]["stages"][mod]["median"]
        L.append(
            f"| {mod} | " + " | ".join(cells) + f" | {tb['torch_chosen'][mod]} | "
            f"{fmt_ms(ms)} ({LABELS[best]}) | {kept / ms:.2f}x |"
        )
    L.append("")
    total = tb["stages"]["total"]["median"]
    L.append(
        f"End to end (same clip, same preprocessing, timed in the pipeline): best PyTorch "
        f"{fmt_ms(total)} ms; speed-up of each pack contender over it:"
    )
    L.append("")
    L.append("| contender | end to end ms | vs best PyTorch | vs PyTorch eager cut | vs reference |")
    L.append("|---|---|---|---|---|")
    eager = r["contenders"]["torch_cut"]["stages"]["total"]["median"]
    for c in [c for c in PACK_CONTENDERS if c in r["contenders"]]:
        t = r["contenders"][c]["stages"]["total"]["median"]
        L.append(
            f"| {LABELS[c]} | {fmt_ms(t)} | {total / t:.2f}x | {eager / t:.2f}x | "
            f"{r['contenders'][c]['ratio_to_reference']['total']:.2f}x |"
        )
    L.append("")
    return L


def _setting_cell(row: dict[str, Any] | None, kept: bool) -> str:
    if row is None:
        return "not tried"
    if "error" in row:
        return f"failed: {row['error'][:80]}"
    text = f"{fmt_ms(row['median_ms'])} ({row['mean_cosine_to_fp32']:.5f}; {row['first_call_s']:.1f} s)"
    if not row["passes"]:
        text += " below the bar"
    return f"**{text}**" if kept else text
