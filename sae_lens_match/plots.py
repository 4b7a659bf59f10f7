"""Static PNG plots with matplotlib, next to the interactive plotly HTML pages.

Plotly's own PNG export needs kaleido and a browser, which are not available offline, so the
PNGs are drawn with matplotlib's object API (``matplotlib.figure.Figure``). That renders with
Agg and never touches pyplot or the user's global backend. matplotlib is imported only when
a plot is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sae_lens_match.io import atomic_path

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
"""The line colours, shared with the HTML plots so that both show a series in the same colour."""


@dataclass
class Line:
    """One series of a panel, drawn as a line or (``bars=True``) as bars, which may take
    one colour per bar. ``legend=False`` keeps it out of the legend."""

    name: str
    x: Sequence[Any]
    y: Sequence[Any]
    color: str | Sequence[str] | None = None
    markers: bool = True
    legend: bool = True
    bars: bool = False


@dataclass
class Panel:
    """One subplot: its lines, axis labels and whether the y axis is logarithmic."""

    title: str
    lines: list[Line] = field(default_factory=list)
    xlabel: str = ""
    ylabel: str = ""
    log_y: bool = False


def write_png(path: str | Path, panels: Sequence[Panel], *, title: str, dpi: int = 100) -> Path:
    """Draw ``panels`` side by side (one legend for the figure) and write the PNG atomically.

    Each panel is 4.5 x 4.5 inches (450 pixels at the default ``dpi``), as in the HTML plots.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not panels:
        raise ValueError(f"No panels to plot for {title!r}.")
    fig = Figure(figsize=(max(5.0, 4.5 * len(panels)), 4.5), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    handles: dict[str, Any] = {}
    for ax, panel in zip(axes, panels):
        for line in panel.lines:
            label = line.name if line.legend else "_nolegend_"
            if line.bars:
                artist = ax.bar([str(v) for v in line.x], list(line.y), color=line.color, label=label)
            else:
                (artist,) = ax.plot(list(line.x), list(line.y), marker="o" if line.markers else None, markersize=4, color=line.color, label=label)
            if line.legend:
                handles.setdefault(line.name, artist)
        ax.set_title(panel.title, fontsize="medium")
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        xs = [v for line in panel.lines for v in line.x]
        if xs and all(isinstance(v, int) for v in xs):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel.log_y and any(_positive(v) for line in panel.lines for v in line.y):
            ax.set_yscale("log", nonpositive="mask")  # like plotly: values <= 0 are left out
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize="small")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def gradient(n: int, cmap: str = "viridis") -> list[str]:
    """``n`` colours along a matplotlib colour map, as hex strings (for lines in an order, e.g. layer pairs)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    colors = colormaps[cmap]
    return [to_hex(colors(k / max(n - 1, 1))) for k in range(n)]


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0
