"""Plots of scored records: a stream's or a long file's windows over time, or a batch of clips.

    from msa_runtime.plot import plot_records
    plot_records(records, "talk.html")       # or "talk.png" (needs msa-edge[plot])

``records`` are what ``msa-run`` writes (dicts; :func:`read_records` loads its json/jsonl
output) or :class:`~msa_runtime.scoring.core.Prediction` objects (``Analyzer.stream``'s windows).
``msa-run ... --plot FILE.png|FILE.html`` draws its own records. :func:`figure` gives the PNG
form as a matplotlib figure, to show or change before saving.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from msa_runtime.plot.data import PlotData, plot_data
from msa_runtime.plot.output import SUFFIXES, check_target, plot_records, read_records
from msa_runtime.scoring.core import Prediction

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SUFFIXES", "PlotData", "check_target", "figure", "plot_data", "plot_records", "read_records"]


def figure(records: Iterable[Mapping[str, Any] | Prediction], title: str | None = None) -> Figure:
    """The PNG form of the plot of ``records`` as a :class:`matplotlib.figure.Figure` (extra
    ``msa-edge[plot]``), not attached to pyplot: ``fig.savefig("out.svg")`` or show it."""
    from msa_runtime.plot.png import figure as draw

    return draw(plot_data(records), title)
