"""Summaries of layer-to-layer matchings: a JSON/CSV table, an HTML page and a PNG of its plots."""

from __future__ import annotations

import csv
import io as _io
from pathlib import Path
from typing import Any, Sequence

import torch

from sae_lens_match.io import write_json, write_text
from sae_lens_match.matching import Matching
from sae_lens_match.plots import COLORS, Line, Panel, gradient, write_png

DEFAULT_RANDOM_RATIO = 0.5
"""Default "unmatched" rule: a pair whose cost is above half the median cost of random
pairs is not a match (the paper leaves the threshold to the user; Appendix B uses quantiles)."""


def unmatched_threshold(m: Matching, *, max_cost: float | None = None, quantile: float | None = None) -> tuple[float, str]:
    """The cost above which a pair counts as unmatched, and the rule that gave it."""
    if max_cost is not None and quantile is not None:
        raise ValueError("Give at most one of max_cost and quantile.")
    if max_cost is not None:
        return max_cost, f"cost > {max_cost}"
    if quantile is not None:
        return float(torch.quantile(m.cost[m.matched], quantile)), f"above the {quantile} quantile of costs"
    return DEFAULT_RANDOM_RATIO * m.info["random_pair_median_cost"], f"cost > {DEFAULT_RANDOM_RATIO} x median cost of random pairs"


def summarize(matchings: Sequence[Matching], **threshold: float | None) -> list[dict[str, Any]]:
    """One row per matching: cost statistics and the fraction of pairs below the unmatched threshold."""
    rows = []
    for i, m in enumerate(matchings):
        cost = m.cost[m.matched]
        limit, rule = unmatched_threshold(m, **threshold)
        rows.append(
            {
                "pair": i,
                "source": m.source.get("spec") or m.source.get("hook_name"),
                "target": m.target.get("spec") or m.target.get("hook_name"),
                "n_matched": int(m.matched.sum()),
                "mean_cost": float(cost.mean()),
                "median_cost": float(cost.median()),
                "total_cost": m.total_cost,
                "random_pair_median_cost": m.info.get("random_pair_median_cost"),
                "unmatched_threshold": limit,
                "unmatched_rule": rule,
                "fraction_below_threshold": float((cost <= limit).double().mean()),
                "seconds": m.info.get("seconds"),
            }
        )
    return rows


def write_summary(out_dir: str | Path, rows: list[dict[str, Any]], matchings: Sequence[Matching]) -> None:
    """Write ``summary.json``, ``summary.csv``, ``report.html`` and ``report.png`` (its plots) into ``out_dir``."""
    out_dir = Path(out_dir)
    write_json(out_dir / "summary.json", rows)
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / "summary.csv", buffer.getvalue())
    write_text(out_dir / "report.html", _html(rows, matchings))
    _png(out_dir / "report.png", rows, matchings)


def _png(path: Path, rows: list[dict[str, Any]], matchings: Sequence[Matching]) -> Path:
    """The two plots of ``report.html`` as a PNG (matplotlib)."""
    pairs = [r["pair"] for r in rows]
    per_pair = Panel(
        "Cost per layer pair",
        [Line(key, pairs, [r[key] for r in rows], color=COLORS[k]) for k, key in enumerate(("mean_cost", "median_cost", "random_pair_median_cost"))],
        xlabel="layer pair",
        ylabel="MSE of folded parameters",
        log_y=True,
    )
    n = len(matchings)
    sorted_costs = Panel(
        "Sorted per-pair cost (paper Fig. 5)",
        [
            # many pairs: the legend names the first and the last; the colours run in order
            Line(f"pair {i}", range(int(m.matched.sum())), m.cost[m.matched].sort().values.tolist(), color=color, markers=False, legend=n <= 10 or i in (0, n - 1))
            for i, (m, color) in enumerate(zip(matchings, gradient(n)))
        ],
        xlabel="feature (sorted by cost)",
        log_y=True,
    )
    return write_png(path, [per_pair, sorted_costs], title="SAE Match report")


def _html(rows: list[dict[str, Any]], matchings: Sequence[Matching]) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Cost per layer pair", "Sorted per-pair cost (paper Fig. 5)"))
    pairs = [r["pair"] for r in rows]
    for key in ("mean_cost", "median_cost", "random_pair_median_cost"):
        fig.add_trace(go.Scatter(x=pairs, y=[r[key] for r in rows], mode="lines+markers", name=key), row=1, col=1)
    for i, m in enumerate(matchings):
        cost = m.cost[m.matched].sort().values
        fig.add_trace(go.Scatter(y=cost.tolist(), mode="lines", name=f"pair {i}", showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="layer pair", row=1, col=1)
    fig.update_xaxes(title_text="feature (sorted by cost)", row=1, col=2)
    fig.update_yaxes(title_text="MSE of folded parameters", type="log", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    table = "".join(
        f"<tr><td>{r['pair']}</td><td>{r['source']}</td><td>{r['target']}</td><td>{r['mean_cost']:.4g}</td>"
        f"<td>{r['median_cost']:.4g}</td><td>{r['fraction_below_threshold']:.3f}</td></tr>"
        for r in rows
    )
    # Plotly's JS is inlined so the page works offline.
    plot = fig.to_html(full_html=False, include_plotlyjs=True)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>SAE Match report</title></head><body>"
        "<h1>SAE Match report</h1><table border='1' cellpadding='4'><tr><th>pair</th><th>source</th>"
        "<th>target</th><th>mean cost</th><th>median cost</th><th>fraction matched</th></tr>"
        f"{table}</table><p>A pair counts as unmatched when its {rows[0]['unmatched_rule']}.</p>{plot}</body></html>"
    )
