"""The report of a layer-by-layer matching run: its summary table, and its cost plots as a page and a PNG."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

from sae_lens_match.evaluation.cost_summary import CostSummaryRow
from sae_lens_match.evaluation.results import EvalResult
from sae_lens_match.matching.matching import Matching
from sae_lens_match.report.pages import html_table, write_page
from sae_lens_match.report.plots import COLORS, Line, Panel, figure_html, gradient, ship_plotly, write_png
from sae_lens_match.report.tables import write_result

TITLE = "SAE Match report"


def write_matching_report(out_dir: str | Path, summary: EvalResult[CostSummaryRow], matchings: Sequence[Matching]) -> list[Path]:
    """Write ``summary.json``, ``summary.csv``, ``report.html`` (with ``plotly.min.js``) and ``report.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    rows = summary.rows()
    panels = _panels(rows, matchings)
    table = html_table(rows, ["pair", "source", "target", "mean_cost", "median_cost", "random_pair_cost", "fraction_matched"])
    rule = f"<p>A pair counts as unmatched when its {html.escape(rows[0]['unmatched_rule'])}.</p>"
    ship_plotly(out_dir)
    page = write_page(out_dir / "report.html", TITLE, [table, rule, figure_html(panels, title=TITLE)])
    return [*write_result(out_dir, "summary", summary), page, write_png(out_dir / "report.png", panels, title=TITLE)]


def _panels(rows: list[dict], matchings: Sequence[Matching]) -> list[Panel]:
    pairs = [r["pair"] for r in rows]
    per_pair = Panel(
        "Cost per layer pair",
        [Line(key, pairs, [r[key] for r in rows], color=COLORS[k]) for k, key in enumerate(("mean_cost", "median_cost", "random_pair_cost"))],
        xlabel="layer pair",
        ylabel="MSE of folded parameters",
        log_y=True,
    )
    n = len(matchings)
    sorted_costs = Panel(
        "Sorted per-pair cost (paper Fig. 5)",
        [
            # many pairs: the legend names the first and the last; the colours run in order
            Line(f"pair {i}", list(range(int(m.matched.sum()))), m.cost[m.matched].sort().values.tolist(), color=color, markers=False, legend=n <= 10 or i in (0, n - 1))
            for i, (m, color) in enumerate(zip(matchings, gradient(n)))
        ],
        xlabel="feature (sorted by cost)",
        log_y=True,
    )
    return [per_pair, sorted_costs]
