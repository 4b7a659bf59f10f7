"""The one writer: tables (JSON, CSV, text, Markdown) and plots described once, drawn as HTML and PNG."""

import json

import pytest

from sae_lens_match.report import format_table, line_panels, markdown_table, ship_plotly, write_figure, write_table
from tests.helpers import assert_png


def test_tables_and_plots_are_written(tmp_path):
    rows = [
        {"pair": 0, "method": "a", "delta_loss": 0.5, "explained_variance": float("nan")},
        {"pair": 1, "method": "a", "delta_loss": 0.25, "explained_variance": 0.75},
        {"pair": 0, "method": "b", "delta_loss": 1.0, "explained_variance": 0.5, "extra": "x"},
    ]
    json_path, csv_path = write_table(tmp_path / "out", "table", rows)
    loaded = json.loads(json_path.read_text())
    assert loaded[0]["explained_variance"] is None and loaded[2]["extra"] == "x"  # JSON has no NaN
    assert csv_path.read_text().splitlines()[0] == "pair,method,delta_loss,explained_variance,extra"
    text = format_table(rows, ["pair", "method", "delta_loss"])
    assert text.splitlines()[2].split() == ["0", "a", "0.5"]
    assert markdown_table(rows, ["method", "delta_loss"]).splitlines()[:2] == ["| method | delta_loss |", "|---|---|"]
    page, png = write_figure(tmp_path / "out" / "plot.html", line_panels(rows, x="pair", series="method", panels=["delta_loss", "explained_variance"]), title="t")
    assert page.read_text().lower().startswith("<!doctype html>") and "src=\"plotly.min.js\"" in page.read_text()
    # plotly's JavaScript lives once beside the pages, not inside each of them
    bundle = (tmp_path / "out" / "plotly.min.js").read_text()
    assert len(bundle) > 1_000_000 and len(page.read_text()) < 100_000
    # the PNG beside it: two panels of 450 px at 100 dpi
    assert png == tmp_path / "out" / "plot.png" and assert_png(png) == (900, 450)
    faceted = line_panels([{**r, "term": t} for r in rows for t in ("W_dec", "W_enc", "b_enc")], x="pair", series="method", panels=["delta_loss"], facet="term", log_y=["delta_loss"])
    assert [p.title for p in faceted] == ["delta_loss: term=W_dec", "delta_loss: term=W_enc", "delta_loss: term=b_enc"] and faceted[0].log_y
    assert [line.name for line in faceted[0].lines] == ["a", "b"] and faceted[0].lines[0].x == [0, 1]
    html_path, png_path = write_figure(tmp_path / "out" / "faceted.html", faceted, title="t")
    assert html_path.read_text().lower().startswith("<!doctype html>") and png_path == tmp_path / "out" / "faceted.png"
    assert (tmp_path / "out" / "plotly.min.js").read_text() == bundle and len(list((tmp_path / "out").glob("*.js"))) == 1
    assert assert_png(png_path)[0] == 3 * 450  # one panel per term
    # a step folder inside a results folder that holds the bundle loads the parent's copy
    sub_page, _ = write_figure(tmp_path / "out" / "step" / "plot.html", faceted, title="t")
    assert 'src="../plotly.min.js"' in sub_page.read_text() and not (tmp_path / "out" / "step" / "plotly.min.js").exists()
    assert ship_plotly(tmp_path / "out" / "step", share_parent=False) == "plotly.min.js" and (tmp_path / "out" / "step" / "plotly.min.js").is_file()
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes leave no temporaries
    with pytest.raises(ValueError, match="No rows"):
        write_table(tmp_path, "empty", [])
