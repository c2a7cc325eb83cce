"""The PNG form of a plot, drawn with matplotlib (extra ``msa-edge[plot]``).

:func:`figure` builds a :class:`matplotlib.figure.Figure` without pyplot, so it changes no global
backend and leaves nothing open: per timeline, the score over time on the polarity band (the
area between the score and 0 green where positive, red where negative), the words of the
transcript in a band below it, and the per-modality gates; then one bar per input scored whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msa_runtime.errors import MissingExtraError
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
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

EXTRA = "pip install 'msa-edge[plot]'"
WORD_ROWS = 3
WORD_CHARS = 48


def require_matplotlib() -> None:
    """A :class:`~msa_runtime.errors.MissingExtraError` naming the extra when matplotlib is not
    installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(
            f"a PNG plot needs matplotlib ({exc.name} is missing): {EXTRA}; an .html plot needs nothing"
        ) from exc


def _score_axes(ax: Axes, t: Timeline) -> None:
    times = [w.middle for w in t.windows]
    scores = [w.score for w in t.windows]
    ax.axhspan(0, SCALE, color=POSITIVE, alpha=0.07, lw=0)
    ax.axhspan(-SCALE, 0, color=NEGATIVE, alpha=0.07, lw=0)
    ax.fill_between(
        times, scores, 0, where=[s >= 0 for s in scores], interpolate=True, color=POSITIVE, alpha=0.35, lw=0
    )
    ax.fill_between(
        times, scores, 0, where=[s <= 0 for s in scores], interpolate=True, color=NEGATIVE, alpha=0.35, lw=0
    )
    ax.plot(times, scores, "o-", color=SCORE, lw=1.2, ms=2.5, label="score")
    ax.axhline(0, color="#555555", lw=0.6)
    ax.set_ylim(-SCALE - 0.2, SCALE + 0.2)
    ax.set_ylabel("score")
    ax.text(0.005, 0.97, "positive", transform=ax.transAxes, va="top", fontsize=7, color=POSITIVE)
    ax.text(0.005, 0.03, "negative", transform=ax.transAxes, va="bottom", fontsize=7, color=NEGATIVE)
    ax.set_title(describe(t), fontsize=9, loc="left")
    ax.grid(axis="x", lw=0.3, alpha=0.5)


def _words_axes(ax: Axes, t: Timeline) -> None:
    ax.set_ylim(0, WORD_ROWS)
    ax.set_yticks([])
    ax.set_ylabel("words", fontsize=8)
    for i, words in enumerate(t.words):
        text = words.text if len(words.text) <= WORD_CHARS else words.text[: WORD_CHARS - 1] + "…"
        row = WORD_ROWS - 0.5 - i % WORD_ROWS
        ax.axvspan(
            words.start,
            words.end,
            ymin=(row - 0.45) / WORD_ROWS,
            ymax=(row + 0.45) / WORD_ROWS,
            color="#dddddd",
            lw=0,
        )
        ax.text(words.start, row, " " + text, fontsize=6.5, va="center", ha="left", clip_on=True)


def _gates_axes(ax: Axes, t: Timeline) -> None:
    for name in t.gate_names:
        pts = [(w.middle, w.gates[name]) for w in t.windows if name in w.gates]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=gate_colour(name), lw=1.2, label=name)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("gate", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def _bars_axes(ax: Axes, bars: tuple[Bar, ...]) -> None:
    xs = range(len(bars))
    colours = [POSITIVE if b.score > 0 else NEGATIVE if b.score < 0 else "#999999" for b in bars]
    ax.bar(xs, [b.score for b in bars], color=colours, label="score")
    ax.axhline(0, color="#555555", lw=0.6)
    ax.set_ylim(-SCALE - 0.2, SCALE + 0.2)
    ax.set_ylabel("score")
    labels = [b.input if b.span is None else f"{b.input} [{b.span[0]:g}-{b.span[1]:g} s]" for b in bars]
    ax.set_xticks(
        list(xs),
        [label[-40:] for label in labels],
        rotation=60 if len(bars) > 4 else 0,
        ha="right" if len(bars) > 4 else "center",
        fontsize=7,
    )
    ax.set_title(f"{len(bars)} input(s) scored whole", fontsize=9, loc="left")


def _rows(data: PlotData) -> list[tuple[str, Any, float]]:
    rows: list[tuple[str, Any, float]] = []
    for t in data.timelines:
        rows.append(("score", t, 3.0))
        if t.words:
            rows.append(("words", t, 0.9))
        if t.gate_names:
            rows.append(("gates", t, 1.3))
    if data.bars:
        rows.append(("bars", data.bars, 3.0))
    return rows


def figure(data: PlotData, title: str | None = None) -> Figure:
    """The plot of ``data`` as a matplotlib figure (not attached to pyplot), with ``title`` and
    the number of failed records above it."""
    require_matplotlib()
    from matplotlib.figure import Figure

    rows = _rows(data)
    heights = [h for _, _, h in rows]
    fig = Figure(figsize=(11, 0.9 + 0.75 * sum(heights)), layout="constrained")
    axes = fig.subplots(len(rows), 1, squeeze=False, height_ratios=heights)[:, 0]
    draw = {"score": _score_axes, "words": _words_axes, "gates": _gates_axes}
    for i, (ax, (kind, item, _)) in enumerate(zip(axes, rows)):
        if kind == "bars":
            _bars_axes(ax, item)
            continue
        draw[kind](ax, item)
        if kind != "score":
            ax.sharex(axes[i - 1])
        ax.set_xlim(item.windows[0].start, max(w.end for w in item.windows))
        last = i + 1 == len(rows) or rows[i + 1][0] in ("score", "bars")
        ax.tick_params(labelbottom=last)
        ax.set_xlabel("seconds (each window drawn at its middle)" if last else "", fontsize=8)
    failed = f" ({data.failed} failed record(s) not drawn)" if data.failed else ""
    if title or failed:
        fig.suptitle(f"{title or ''}{failed}".strip(), fontsize=10, x=0.01, ha="left")
    return fig
