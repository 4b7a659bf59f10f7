"""Parameter MSE curves (paper Fig. 3) and the result tables / plots."""

import json
import math

import pytest
import torch

torch.set_num_threads(1)

from sae_lens_match.evaluation import parameter_mse_curves  # noqa: E402
from sae_lens_match.evaluation.tables import format_table, line_plots_html, line_plots_png, markdown_table, write_line_plots, write_plot, write_rows  # noqa: E402
from sae_lens_match.matchers import run_matcher  # noqa: E402
from sae_lens_match.synthetic import make_stack  # noqa: E402
from tests.pngs import assert_png  # noqa: E402
from tests.saes import random_sae  # noqa: E402


def test_fig3_ordering_per_term_on_a_planted_stack():
    stack = make_stack(n_layers=3, d_in=32, d_sae=128, seed=0)
    extra = {"cosine_top1": [run_matcher("cosine_top1", a, b) for a, b in zip(stack.saes, stack.saes[1:])]}
    rows = parameter_mse_curves(stack.saes, extra=extra, progress=False)
    assert len(rows) == 2 * 4 * 3
    value = {(r["pair"], r["variant"], r["term"]): r["mean_mse"] for r in rows}
    for pair in (0, 1):
        for term in ("W_dec", "W_enc", "b_enc"):
            assert value[(pair, "vanilla", term)] > value[(pair, "matched", term)]
        # the method's objective is the sum over terms: folding never loses on it
        total = {v: sum(value[(pair, v, t)] for t in ("W_dec", "W_enc", "b_enc")) for v in ("vanilla", "matched", "folded+matched")}
        assert total["vanilla"] > total["matched"] >= total["folded+matched"]
        assert value[(pair, "cosine_top1", "W_dec")] < value[(pair, "vanilla", "W_dec")]
    assert {r["n_matched"] for r in rows} == {128}


def test_missing_terms_and_different_widths():
    gated = [random_sae("gated", d_sae=32, seed=s) for s in (0, 1)]
    rows = parameter_mse_curves(gated, match_weights={"W_dec": 1, "W_enc": 1, "b_enc": 0}, progress=False)
    b_enc = [r for r in rows if r["term"] == "b_enc"]
    assert b_enc and all(math.isnan(r["mean_mse"]) for r in b_enc)
    wide = [random_sae("standard", d_sae=32, seed=0), random_sae("standard", d_sae=48, seed=1)]
    vanilla = [r for r in parameter_mse_curves(wide, progress=False) if r["variant"] == "vanilla"]
    assert {r["n_matched"] for r in vanilla} == {32}


def test_tables_and_plots_are_written(tmp_path):
    rows = [
        {"pair": 0, "method": "a", "delta_loss": 0.5, "explained_variance": float("nan")},
        {"pair": 1, "method": "a", "delta_loss": 0.25, "explained_variance": 0.75},
        {"pair": 0, "method": "b", "delta_loss": 1.0, "explained_variance": 0.5, "extra": "x"},
    ]
    json_path, csv_path = write_rows(tmp_path / "out", "table", rows)
    loaded = json.loads(json_path.read_text())
    assert loaded[0]["explained_variance"] is None and loaded[2]["extra"] == "x"  # JSON has no NaN
    assert csv_path.read_text().splitlines()[0] == "pair,method,delta_loss,explained_variance,extra"
    text = format_table(rows, ["pair", "method", "delta_loss"])
    assert text.splitlines()[2].split() == ["0", "a", "0.5"]
    assert markdown_table(rows, ["method", "delta_loss"]).splitlines()[:2] == ["| method | delta_loss |", "|---|---|"]
    html = line_plots_html(rows, x="pair", series="method", panels=["delta_loss", "explained_variance"], title="t")
    page = write_plot(tmp_path / "out" / "plot.html", html)
    assert page.read_text().lower().startswith("<!doctype html>") and "plotly" in page.read_text()
    # the PNG beside it: two panels of 450 px at 100 dpi
    assert assert_png(line_plots_png(tmp_path / "out" / "plot.png", rows, x="pair", series="method", panels=["delta_loss", "explained_variance"], title="t")) == (900, 450)
    html_path, png_path = write_line_plots(tmp_path / "out" / "faceted.html", [{**r, "term": t} for r in rows for t in ("W_dec", "W_enc", "b_enc")], x="pair", series="method", panels=["delta_loss"], facet="term", title="t", log_y=["delta_loss"])
    assert html_path.read_text().lower().startswith("<!doctype html>") and png_path == tmp_path / "out" / "faceted.png"
    assert assert_png(png_path)[0] == 3 * 450  # one panel per term
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes leave no temporaries
    with pytest.raises(ValueError, match="No rows"):
        write_rows(tmp_path, "empty", [])
