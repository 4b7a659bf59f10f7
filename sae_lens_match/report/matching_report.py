"""The report of a layer-by-layer matching run: its summary table, and its cost plots as a page and a PNG."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

from sae_lens_match.evaluation.cost_summary import CostSummaryRow
from sae_lens_match.evaluation.results import EvalResult
from sae_lens_match.matching.matching import Matching
from sae_lens_match.report.pages import html_table, write_page
from sae_lens_match.report.site import Section, flow_view, write_site
from sae_lens_match.report.plots import COLORS, Line, Panel, figure_html, gradient, ship_plotly, write_png
from sae_lens_match.report.tables import write_result

TITLE = "SAE Match report"


def write_matching_report(out_dir: str | Path, summary: EvalResult[CostSummaryRow], matchings: Sequence[Matching]) -> list[Path]:
    """Write ``summary.json``, ``summary.csv``, ``report.html`` (cost plots, with
    ``plotly.min.js``), ``report.png`` and ``index.html`` (the match links in the flow view,
    the table and the plots) into ``out_dir``."""
    out_dir = Path(out_dir)
    rows = summary.rows()
    panels = _panels(rows, matchings)
    table = html_table(rows, ["pair", "source", "target", "mean_cost", "median_cost", "random_pair_cost", "fraction_matched"])
    rule = f"<p>A pair counts as unmatched when its {html.escape(rows[0]['unmatched_rule'])}.</p>"
    page = write_page(out_dir / "report.html", TITLE, [table, rule, figure_html(panels, title=TITLE, plotly_src=ship_plotly(out_dir))])
    written = [*write_result(out_dir, "summary", summary), page, write_png(out_dir / "report.png", panels, title=TITLE)]
    # the view shows the pairs the rule keeps: those at or below each pair's threshold
    view = flow_view(None, [m.with_unmatched(max_cost=r["unmatched_threshold"]) for r, m in zip(rows, matchings)])
    body = table + rule + "<img src='report.png' alt='cost per layer pair'><p><a href='report.html'>interactive plots</a> · <a href='summary.json'>summary.json</a> · <a href='summary.csv'>summary.csv</a></p>"
    return [*written, write_site(out_dir, title=TITLE, view=view, sections=[Section("Cost per layer pair", body, "costs")])]


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
