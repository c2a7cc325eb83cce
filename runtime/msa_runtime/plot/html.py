"""The HTML form of a plot: one self-contained file, no extra needed.

Inline SVG drawn here (the same panels as the PNG: score on the polarity band, words, gates; bars
for inputs scored whole), each window's point with a tooltip (SVG ``<title>``: span, score,
gates, text), the window data as a table, and the records as JSON in a
``<script type="application/json" id="msa-plot-data">`` block for anything that reads the file.
Nothing is fetched: no external URL, no script that runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from typing import Any

from msa_runtime.plot.data import (
    NEGATIVE,
    POSITIVE,
    SCALE,
    SCORE,
    Bar,
    PlotData,
    Timeline,
    describe,
    gate_colour,
    zero_crossings,
)

WIDTH = 960
LEFT, RIGHT = 56, 60
CHAR_PX = 5.6
"""About the width of one character of the words band (10 px sans-serif)."""
SCORE_H, WORDS_H, GATES_H, GAP = 200, 66, 96, 26
STYLE = """body{font:13px system-ui,sans-serif;margin:18px;color:#222}
svg text{font:11px system-ui,sans-serif}svg .w{font-size:10px}
table{border-collapse:collapse;font-size:12px}
td,th{border-bottom:1px solid #ddd;padding:2px 8px;text-align:right}
td.t{text-align:left}h2{font-size:15px;margin:18px 0 4px}"""


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


class _Panel:
    """x: seconds -> px; y: value in [lo, hi] -> px inside a panel at ``top`` of height ``h``."""

    def __init__(self, t0: float, t1: float, top: float, h: float, lo: float, hi: float) -> None:
        self.t0, self.span, self.top, self.h, self.lo, self.hi = t0, max(t1 - t0, 1e-9), top, h, lo, hi

    def x(self, t: float) -> float:
        return LEFT + (t - self.t0) / self.span * (WIDTH - LEFT - RIGHT)

    def y(self, v: float) -> float:
        return self.top + (self.hi - v) / (self.hi - self.lo) * self.h

    def frame(self, label: str) -> str:
        return (
            f'<rect x="{LEFT}" y="{self.top}" width="{WIDTH - LEFT - RIGHT}" height="{self.h}" '
            f'fill="none" stroke="#bbb"/><text x="8" y="{self.top + self.h / 2}">{escape(label)}</text>'
        )


def _path(points: list[tuple[float, float]], p: _Panel) -> str:
    return " ".join(f"{p.x(t):.1f},{p.y(v):.1f}" for t, v in points)


def _area(points: list[tuple[float, float]], p: _Panel, keep: Callable[[float], float], colour: str) -> str:
    pts = [(t, keep(v)) for t, v in points]
    ring = [(pts[0][0], 0.0), *pts, (pts[-1][0], 0.0)]
    return f'<polygon points="{_path(ring, p)}" fill="{colour}" fill-opacity="0.35"/>'


def _tip(t: Timeline, i: int) -> str:
    w = t.windows[i]
    gates = ", ".join(f"{k} {_fmt(v)}" for k, v in w.gates.items())
    parts = [f"{_fmt(w.start)}-{_fmt(w.end)} s: score {w.score:.3f} ({w.polarity})"]
    parts += [f"gates: {gates}"] if gates else []
    parts += [f"text: {w.text}"] if w.text else []
    return escape("\n".join(parts))


def _score_panel(t: Timeline, p: _Panel) -> list[str]:
    pts = zero_crossings([(w.middle, w.score) for w in t.windows])
    mid = p.y(0)
    inner = WIDTH - LEFT - RIGHT
    line = _path([(w.middle, w.score) for w in t.windows], p)
    out = [
        f'<rect x="{LEFT}" y="{p.top}" width="{inner}" height="{mid - p.top}" '
        f'fill="{POSITIVE}" fill-opacity="0.07"/>',
        f'<rect x="{LEFT}" y="{mid}" width="{inner}" height="{p.top + p.h - mid}" '
        f'fill="{NEGATIVE}" fill-opacity="0.07"/>',
        _area(pts, p, lambda v: max(v, 0.0), POSITIVE),
        _area(pts, p, lambda v: min(v, 0.0), NEGATIVE),
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{mid}" y2="{mid}" stroke="#555"/>',
        f'<polyline class="score" points="{line}" fill="none" stroke="{SCORE}" stroke-width="1.5"/>',
    ]
    for v in (-SCALE, 0.0, SCALE):
        out.append(f'<text x="{LEFT - 6}" y="{p.y(v) + 4}" text-anchor="end">{_fmt(v)}</text>')
    for i, w in enumerate(t.windows):
        out.append(
            f'<circle cx="{p.x(w.middle):.1f}" cy="{p.y(w.score):.1f}" r="3" fill="{SCORE}" '
            f'data-start="{w.start}" data-end="{w.end}" data-score="{w.score}">'
            f"<title>{_tip(t, i)}</title></circle>"
        )
    out.append(p.frame("score"))
    return out


def _words_panel(t: Timeline, p: _Panel) -> list[str]:
    out = [p.frame("words")]
    for i, words in enumerate(t.words):
        y = p.top + 14 + (i % 3) * 20
        x0, x1 = p.x(words.start), p.x(words.end)
        after = t.words[i + 3].start if i + 3 < len(t.words) else None  # next group on this row
        room = int(((WIDTH - RIGHT if after is None else p.x(after)) - x0 - 6) / CHAR_PX)
        shown = words.text if len(words.text) <= room else words.text[: max(room - 1, 0)] + "…"
        out.append(
            f'<g class="words"><rect x="{x0:.1f}" y="{y - 11}" width="{max(x1 - x0, 2):.1f}" '
            'height="15" fill="#e4e4e4"/>'
            f'<text class="w" x="{x0 + 2:.1f}" y="{y}">{escape(shown)}</text>'
            f"<title>{_fmt(words.start)}-{_fmt(words.end)} s: {escape(words.text)}</title></g>"
        )
    return out


def _gates_panel(t: Timeline, p: _Panel) -> list[str]:
    out = [p.frame("gates")]
    label_y: list[float] = []
    for name in t.gate_names:
        pts = [(w.middle, w.gates[name]) for w in t.windows if name in w.gates]
        colour = gate_colour(name)
        out.append(f'<polyline points="{_path(pts, p)}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        y = p.y(pts[-1][1]) + 4  # the name at the end of its line, 11 px clear of the others
        while any(abs(y - other) < 11 for other in label_y):
            y += 11
        label_y.append(y)
        out.append(f'<text x="{WIDTH - RIGHT + 4}" y="{y:.1f}" fill="{colour}">{escape(name)}</text>')
    out += [f'<text x="{LEFT - 6}" y="{p.y(v) + 4}" text-anchor="end">{_fmt(v)}</text>' for v in (0.0, 1.0)]
    return out


def _timeline_svg(t: Timeline) -> str:
    t0, t1 = min(w.start for w in t.windows), max(w.end for w in t.windows)
    top, body = 8.0, []
    panels: list[tuple[Callable[[Timeline, _Panel], list[str]], _Panel]] = [
        (_score_panel, _Panel(t0, t1, top, SCORE_H, -SCALE, SCALE))
    ]
    top += SCORE_H + 8
    if t.words:
        panels.append((_words_panel, _Panel(t0, t1, top, WORDS_H, 0, 1)))
        top += WORDS_H + 8
    if t.gate_names:
        panels.append((_gates_panel, _Panel(t0, t1, top, GATES_H, 0, 1)))
        top += GATES_H + 8
    for draw, panel in panels:
        body += draw(t, panel)
    axis = panels[-1][1]
    for k in range(11):
        s = t0 + (t1 - t0) * k / 10
        body.append(f'<text x="{axis.x(s):.1f}" y="{top + 6}" text-anchor="middle">{_fmt(s)}</text>')
    body.append(
        f'<text x="{WIDTH / 2}" y="{top + GAP - 2}" text-anchor="middle">'
        "seconds (each window at its middle)</text>"
    )
    return f'<svg width="{WIDTH}" height="{top + GAP + 4}" role="img">{"".join(body)}</svg>'


def _bars_svg(bars: tuple[Bar, ...]) -> str:
    p = _Panel(-0.5, len(bars) - 0.5, 8, SCORE_H, -SCALE, SCALE)
    step = (WIDTH - LEFT - RIGHT) / len(bars)
    body = [
        p.frame("score"),
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{p.y(0)}" y2="{p.y(0)}" stroke="#555"/>',
    ]
    for i, b in enumerate(bars):
        colour = POSITIVE if b.score > 0 else NEGATIVE if b.score < 0 else "#999"
        y0, y1 = sorted((p.y(0), p.y(b.score)))
        span = "" if b.span is None else f" [{_fmt(b.span[0])}-{_fmt(b.span[1])} s]"
        gates = ", ".join(f"{k} {_fmt(v)}" for k, v in b.gates.items())
        tip = escape(
            f"{b.input}{span}: score {b.score:.3f} ({b.polarity})" + (f"\ngates: {gates}" if gates else "")
        )
        body.append(
            f'<rect class="bar" x="{p.x(i) - step * 0.4:.1f}" y="{y0:.1f}" width="{step * 0.8:.1f}" '
            f'height="{max(y1 - y0, 1):.1f}" '
            f'fill="{colour}" data-score="{b.score}"><title>{tip}</title></rect>'
        )
    return f'<svg width="{WIDTH}" height="{SCORE_H + 24}" role="img">{"".join(body)}</svg>'


def _table(t: Timeline) -> str:
    head = (
        "<tr><th>start</th><th>end</th><th>score</th><th>polarity</th>"
        + "".join(f"<th>{escape(g)}</th>" for g in t.gate_names)
        + "<th>text</th></tr>"
    )
    rows = [
        f"<tr><td>{_fmt(w.start)}</td><td>{_fmt(w.end)}</td><td>{w.score:.4f}</td><td>{escape(w.polarity)}</td>"
        + "".join(f"<td>{w.gates[g]:.3f}</td>" if g in w.gates else "<td></td>" for g in t.gate_names)
        + f'<td class="t">{escape(w.text or "")}</td></tr>'
        for w in t.windows
    ]
    summary = f"<summary>windows ({len(t.windows)})</summary>"
    return f"<details>{summary}<table>{head}{''.join(rows)}</table></details>"


def render(data: PlotData, records: list[dict[str, Any]], title: str) -> str:
    """The whole HTML document."""
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
    ]
    parts.append(f'<h1 style="font-size:17px">{escape(title)}</h1>')
    if data.failed:
        parts.append(f"<p>{data.failed} failed record(s) not drawn.</p>")
    for t in data.timelines:
        parts += [f"<h2>{escape(describe(t))}</h2>", _timeline_svg(t), _table(t)]
    if data.bars:
        parts += [f"<h2>{len(data.bars)} input(s) scored whole</h2>", _bars_svg(data.bars)]
    blob = json.dumps(records, ensure_ascii=True).replace("<", "\\u003c")
    parts.append(f'<script type="application/json" id="msa-plot-data">{blob}</script></body></html>\n')
    return "".join(parts)
