"""The levers section of the results (written by ``bench_levers.py``): baselines, verdicts, table."""

from __future__ import annotations

from typing import Any

from e2e.render_util import busy_text, fmt_ms


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


def lever_baseline(rows: list[dict[str, Any]]) -> tuple[float | None, float]:
    """The pack's int8 time (the faster of its first and last timing) and the run-to-run
    spread between those two timings (at least 5 %)."""
    base = [
        r["median"] for r in rows if r["lever"] == "baseline" and "int8" in r["variant"] and r.get("median")
    ]
    if not base:
        return None, 0.05
    return min(base), max(0.05, max(base) / min(base) - 1)


def lever_summary(rows: list[dict[str, Any]]) -> list[str]:
    """One line per lever: its best variant against the pack's int8 file, with a verdict."""
    base, spread = lever_baseline(rows)
    if base is None:
        return []
    out = []
    firsts = [
        r["median"] for r in rows if r["lever"] == "baseline" and "int8" in r["variant"] and r.get("median")
    ]
    if len(firsts) > 1:
        out.append(
            f"run-to-run spread: the pack's int8 file took {firsts[0]:,.0f} ms first and "
            f"{firsts[-1]:,.0f} ms last ({spread:.0%}); ratios below use the faster, "
            "and changes within the spread are noise"
        )
    by_lever: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("median") and r["lever"] != "baseline":
            by_lever.setdefault(r["lever"], []).append(r)
    for lever, rs in by_lever.items():
        best = min(rs, key=lambda r: r["median"])
        change = base / best["median"]
        verdict = "within noise" if abs(change - 1) <= spread else "faster" if change > 1 else "slower"
        out.append(
            f"{lever}: best is '{best['variant']}' at {best['median']:,.0f} ms "
            f"({change:.2f}x the pack's int8 {base:,.0f} ms, {verdict}; "
            f"cosine {best['cosine']:.5f})"
        )
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
            med = fmt_ms(row["median"]) if row.get("median") else "-"
            p90 = fmt_ms(row["p90"]) if row.get("p90") else "-"
            L.append(
                f"| {row['lever']} | {row['variant']} | {med} | {p90} | {ratio} | {cos} | "
                f"{busy_text(row.get('interference'))} | {row.get('notes', '')} |"
            )
        L.append("")
        for line in lever_summary(data["rows"]):
            L.append(f"- {line}")
        L.append("")
    return L
