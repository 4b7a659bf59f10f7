"""The one writer of results: tables (JSON, CSV, text), plots (HTML and PNG) and pages.

- ``tables.py``: :func:`write_table`, :func:`write_result` (an evaluation's self-describing
  JSON and CSV), :func:`format_table`, :func:`markdown_table`;
- ``plots.py``: a plot described once (:class:`Panel`, :class:`Line`), written as HTML and PNG
  by :func:`write_figure`; :func:`line_panels` turns a results table into panels;
- ``pages.py``: :func:`write_page`, :func:`html_table`;
- ``matching_report.py``: the report of a matching run.
"""

from sae_lens_match.report.matching_report import write_matching_report
from sae_lens_match.report.pages import html_table, write_page
from sae_lens_match.report.plots import COLORS, Line, Panel, figure_html, gradient, line_panels, ship_plotly, write_figure, write_png
from sae_lens_match.report.site import Section, flow_view, write_site
from sae_lens_match.report.tables import format_table, markdown_table, write_result, write_table

__all__ = [
    "COLORS",
    "Line",
    "Panel",
    "Section",
    "figure_html",
    "flow_view",
    "format_table",
    "gradient",
    "html_table",
    "line_panels",
    "markdown_table",
    "ship_plotly",
    "write_figure",
    "write_matching_report",
    "write_page",
    "write_png",
    "write_result",
    "write_site",
    "write_table",
]
