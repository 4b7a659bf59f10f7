"""Plots: one description (:class:`Panel` of :class:`Line`), drawn twice.

:func:`write_figure` writes an interactive plotly HTML page and a PNG beside it with the same stem, drawn by matplotlib's object API
(``matplotlib.figure.Figure`` renders with Agg and never touches pyplot or the user's
backend). Plotly's own PNG export needs kaleido and a browser, which are not available
offline. Both libraries are imported only when a plot is written.

Plotly's JavaScript (about 4.7 MB) is shipped once per results folder as ``plotly.min.js``
(:func:`ship_plotly`) and each page loads it from there, so pages open offline from disk
without carrying a copy each. A folder whose parent already holds the bundle (the demo's
step folders) loads the parent's copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sae_lens_match.atomic import atomic_path, write_text
from sae_lens_match.report.pages import write_page

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
"""The series colours, the same in both renderings."""


@dataclass
class Line:
    """One series of a panel, drawn as a line, as points (``connect=False``) or
    (``bars=True``) as bars, which may take one colour per bar. ``legend=False`` keeps it out
    of the legend."""

    name: str
    x: Sequence[Any]
    y: Sequence[Any]
    color: str | Sequence[str] | None = None
    markers: bool = True
    legend: bool = True
    bars: bool = False
    connect: bool = True


@dataclass
class Panel:
    """One subplot: its lines, axis labels and whether the y axis is logarithmic."""

    title: str
    lines: list[Line] = field(default_factory=list)
    xlabel: str = ""
    ylabel: str = ""
    log_y: bool = False


def write_figure(path: str | Path, panels: Sequence[Panel], *, title: str) -> list[Path]:
    """Write ``panels`` side by side as ``path`` (HTML) and its ``.png`` sibling, atomically.

    Returns:
        ``[html_path, png_path]``.
    """
    if not panels:
        raise ValueError(f"No panels to plot for {title!r}.")
    path = Path(path)
    write_page(path, title, [figure_html(panels, title=title, plotly_src=ship_plotly(path.parent))])
    return [path, write_png(path.with_suffix(".png"), panels, title=title)]


def figure_html(panels: Sequence[Panel], *, title: str, plotly_src: str = "plotly.min.js") -> str:
    """The panels as a plotly ``<div>`` (one legend entry per series name) that loads plotly from
    ``plotly_src``, relative to the page (what :func:`ship_plotly` returns)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p.title for p in panels])
    shown: set[str] = set()
    for col, panel in enumerate(panels, start=1):
        for line in panel.lines:
            show = line.legend and line.name not in shown
            shown.add(line.name)
            common = dict(name=line.name, legendgroup=line.name, showlegend=show)
            if line.bars:
                trace = go.Bar(x=[str(v) for v in line.x], y=list(line.y), marker_color=line.color, **common)
            else:
                mode = ("lines+markers" if line.markers else "lines") if line.connect else "markers"
                trace = go.Scatter(x=list(line.x), y=list(line.y), mode=mode, line={"color": line.color}, **common)
            fig.add_trace(trace, row=1, col=col)
        fig.update_xaxes(title_text=panel.xlabel, row=1, col=col)
        fig.update_yaxes(title_text=panel.ylabel, type="log" if panel.log_y else None, row=1, col=col)
    fig.update_layout(title=title, height=450, width=max(500, 450 * len(panels)))
    return fig.to_html(full_html=False, include_plotlyjs=plotly_src)


PLOTLY_JS = "plotly.min.js"


def ship_plotly(folder: str | Path, *, share_parent: bool = True) -> str:
    """Make plotly's JavaScript bundle available to pages in ``folder``; return its path relative
    to them.

    The bundle of the installed version in ``folder``'s parent is used where there is one (the
    demo ships it once at its root) unless ``share_parent`` is false; otherwise
    ``folder/plotly.min.js`` is written (atomically, once: an existing copy of the installed
    version is kept).
    """
    from plotly.offline import get_plotlyjs

    bundle = get_plotlyjs()
    size = len(bundle.encode())
    folder = Path(folder)
    parent = folder.resolve().parent / PLOTLY_JS
    if share_parent and parent.is_file() and parent.stat().st_size == size and not (folder / PLOTLY_JS).is_file():
        return f"../{PLOTLY_JS}"
    path = folder / PLOTLY_JS
    if not (path.is_file() and path.stat().st_size == size):
        write_text(path, bundle)
    return PLOTLY_JS


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
                marker = "o" if line.markers or not line.connect else None
                (artist,) = ax.plot(list(line.x), list(line.y), marker=marker, linestyle="-" if line.connect else "none", markersize=4, color=line.color, label=label)
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


def line_panels(
    rows: Sequence[dict[str, Any]],
    *,
    x: str,
    series: str,
    panels: Sequence[str],
    log_y: Sequence[str] = (),
    facet: str | None = None,
) -> list[Panel]:
    """Panels of a results table: one subplot per column in ``panels`` (or, with ``facet`` and
    one column, per ``facet`` value), ``x`` on the x axis, one line per ``series`` value (in order
    of appearance, which picks the colour)."""
    if facet is not None:
        if len(panels) != 1:
            raise ValueError("With facet, give exactly one panel column.")
        facets = list(dict.fromkeys(r[facet] for r in rows))
        specs = [(f"{panels[0]}: {facet}={f}", panels[0], [r for r in rows if r[facet] == f]) for f in facets]
    else:
        specs = [(p, p, list(rows)) for p in panels]
    names = list(dict.fromkeys(r[series] for r in rows))
    out = []
    for title, value, subset in specs:
        lines = []
        for k, name in enumerate(names):
            points = sorted((r[x], r[value]) for r in subset if r[series] == name and r.get(value) is not None)
            lines.append(Line(str(name), [p[0] for p in points], [p[1] for p in points], color=COLORS[k % len(COLORS)]))
        out.append(Panel(title, lines, xlabel=x, log_y=value in log_y))
    return out


def gradient(n: int, cmap: str = "viridis") -> list[str]:
    """``n`` colours along a matplotlib colour map, as hex strings (for lines in an order, e.g. layer pairs)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    colors = colormaps[cmap]
    return [to_hex(colors(k / max(n - 1, 1))) for k in range(n)]


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0
