"""Result tables (JSON, CSV, aligned text) and per-layer-pair plots (offline plotly HTML).

PNG export would need kaleido, which is not a dependency; the plots are self-contained
HTML (plotly's JavaScript inlined) next to the JSON/CSV tables.
"""

from __future__ import annotations

import csv
import io as _io
import math
from pathlib import Path
from typing import Any, Sequence

from sae_lens_match.io import write_json, write_text


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

    if facet is not None:
        if len(panels) != 1:
            raise ValueError("With facet, give exactly one panel column.")
        facets = list(dict.fromkeys(r[facet] for r in rows))
        specs = [(f, panels[0], [r for r in rows if r[facet] == f]) for f in facets]
        titles = [f"{panels[0]}: {facet}={f}" for f in facets]
    else:
        specs = [(None, p, list(rows)) for p in panels]
        titles = list(panels)
    fig = make_subplots(rows=1, cols=len(specs), subplot_titles=titles)
    names = list(dict.fromkeys(r[series] for r in rows))
    for col, (_, value, subset) in enumerate(specs, start=1):
        for k, name in enumerate(names):
            points = sorted((r[x], r[value]) for r in subset if r[series] == name and r.get(value) is not None)
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=str(name),
                    legendgroup=str(name), showlegend=col == 1, line={"color": _COLORS[k % len(_COLORS)]},
                ),
                row=1, col=col,
            )
        fig.update_xaxes(title_text=x, row=1, col=col)
        if value in log_y:
            fig.update_yaxes(type="log", row=1, col=col)
    fig.update_layout(title=title, height=450, width=max(500, 450 * len(specs)))
    return fig.to_html(full_html=True, include_plotlyjs=True)


_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def write_plot(path: str | Path, html: str) -> Path:
    """Write a plot page atomically."""
    write_text(path, html)
    return Path(path)
