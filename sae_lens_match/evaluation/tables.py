"""Result tables (JSON, CSV, aligned text) and per-layer-pair plots (offline HTML and PNG).

Each plot is a self-contained plotly HTML page (plotly's JavaScript inlined) and a PNG with
the same name, drawn by matplotlib (:mod:`sae_lens_match.plots`): plotly's own PNG export
needs kaleido and a browser, which are not available offline.
"""

from __future__ import annotations

import csv
import io as _io
import math
from pathlib import Path
from typing import Any, Sequence

from sae_lens_match.io import write_json, write_text
from sae_lens_match.plots import COLORS, Line, Panel, write_png


def write_rows(out_dir: str | Path, name: str, rows: Sequence[dict[str, Any]]) -> list[Path]:
    """Write ``rows`` to ``out_dir/name.json`` and ``out_dir/name.csv`` atomically; return the paths."""
    if not rows:
        raise ValueError(f"No rows to write for {name!r}.")
    out_dir = Path(out_dir)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.csv"]
    write_json(paths[0], [_jsonable(r) for r in rows])
    write_text(paths[1], buffer.getvalue())
    return paths


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN: write null
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, digits: int = 4) -> str:
    """An aligned plain-text table of ``columns`` (floats to ``digits`` significant digits)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.{digits}g}"
        return "" if v is None else str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[k]) for b in body)) if body else len(c) for k, c in enumerate(columns)]
    line = lambda cells: "  ".join(x.rjust(w) for x, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(list(columns)), line(["-" * w for w in widths]), *(line(b) for b in body)])


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, digits: int = 4) -> str:
    """The same as :func:`format_table`, as a Markdown table (for READMEs)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.{digits}g}"
        return "" if v is None else str(v)

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(out)


def _line_specs(
    rows: Sequence[dict[str, Any]], *, x: str, series: str, panels: Sequence[str], facet: str | None
) -> list[tuple[str, str, list[tuple[Any, list[Any], list[Any]]]]]:
    """The subplots of a line plot: ``(title, value column, [(series value, xs, ys)])`` each.
    Every subplot has one line per series value, in order of appearance (the order picks the colour)."""
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
        for name in names:
            points = sorted((r[x], r[value]) for r in subset if r[series] == name and r.get(value) is not None)
            lines.append((name, [p[0] for p in points], [p[1] for p in points]))
        out.append((title, value, lines))
    return out


def line_plots_html(
    rows: Sequence[dict[str, Any]],
    *,
    x: str,
    series: str,
    panels: Sequence[str],
    title: str,
    log_y: Sequence[str] = (),
    facet: str | None = None,
) -> str:
    """A self-contained HTML page: one subplot per value in ``panels`` (or per ``facet`` value
    when ``facet`` is given and ``panels`` has one entry), ``x`` on the x axis, one line per
    ``series`` value."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    specs = _line_specs(rows, x=x, series=series, panels=panels, facet=facet)
    fig = make_subplots(rows=1, cols=len(specs), subplot_titles=[s[0] for s in specs])
    for col, (_, value, lines) in enumerate(specs, start=1):
        for k, (name, xs, ys) in enumerate(lines):
            fig.add_trace(
                go.Scatter(
                    x=xs, y=ys, mode="lines+markers", name=str(name),
                    legendgroup=str(name), showlegend=col == 1, line={"color": COLORS[k % len(COLORS)]},
                ),
                row=1, col=col,
            )
        fig.update_xaxes(title_text=x, row=1, col=col)
        if value in log_y:
            fig.update_yaxes(type="log", row=1, col=col)
    fig.update_layout(title=title, height=450, width=max(500, 450 * len(specs)))
    return fig.to_html(full_html=True, include_plotlyjs=True)


def line_plots_png(
    path: str | Path,
    rows: Sequence[dict[str, Any]],
    *,
    x: str,
    series: str,
    panels: Sequence[str],
    title: str,
    log_y: Sequence[str] = (),
    facet: str | None = None,
) -> Path:
    """The plot of :func:`line_plots_html` (same arguments) as a PNG (matplotlib), written atomically."""
    specs = _line_specs(rows, x=x, series=series, panels=panels, facet=facet)
    drawn = [
        Panel(
            title=panel_title,
            lines=[Line(str(name), xs, ys, color=COLORS[k % len(COLORS)]) for k, (name, xs, ys) in enumerate(lines)],
            xlabel=x,
            log_y=value in log_y,
        )
        for panel_title, value, lines in specs
    ]
    return write_png(path, drawn, title=title)


def write_plot(path: str | Path, html: str) -> Path:
    """Write a plot page atomically."""
    write_text(path, html)
    return Path(path)


def write_line_plots(path: str | Path, rows: Sequence[dict[str, Any]], **plot: Any) -> list[Path]:
    """Write the line plot of ``rows`` as ``path`` (HTML, :func:`line_plots_html`) and beside it
    as a PNG with the same stem (:func:`line_plots_png`); ``plot`` are their keyword arguments.
    Returns ``[html_path, png_path]``."""
    path = Path(path)
    html = write_plot(path, line_plots_html(rows, **plot))
    return [html, line_plots_png(path.with_suffix(".png"), rows, **plot)]
