"""All matchers side by side, in Python and on the command line."""

import json

import pytest


from sae_lens_match import MatchConfig, parameter_mse
from sae_lens_match.cli import main
from sae_lens_match.evaluation import compute_matchings, run_compare
from sae_lens_match.matching.synthetic import make_stack
from sae_lens_match.sources import TokenSet
from tests.helpers import assert_png
from tests.planted_model import BOS, planted, sampled_tokens


def test_side_by_side_on_planted_data():
    p = planted()
    data = TokenSet(p.model, p.tokens, bos_token_id=BOS, progress=False)
    # the data-based matcher is fitted on other tokens than it is judged on
    fit = TokenSet(p.model, sampled_tokens(p.model, n_rows=24, seed=7), bos_token_id=BOS, progress=False)
    saes = [p.sae_a, p.sae_b]
    matchings = compute_matchings(saes, data=fit, progress=False)
    assert list(matchings) == ["sae_match", "cosine_top1", "activation_correlation"]
    rows = run_compare(saes, matchings, data=data).rows()
    by = {r["method"]: r for r in rows}
    assert set(by) == {"sae_match", "cosine_top1", "activation_correlation", "layer_drop", "current", "previous"}
    assert by["sae_match"]["agreement"] == 1.0 and by["sae_match"]["one_to_one"] is True
    assert by["cosine_top1"]["agreement"] == 1.0 and by["cosine_top1"]["score_name"] == "decoder cosine"
    for name in matchings:
        r = by[name]
        m = matchings[name][0]  # the default rule: cost above half the median random-pair cost
        assert r["fraction_matched"] == pytest.approx(float((m.cost[m.matched] <= 0.5 * m.random_pair_cost).double().mean()))
        assert r["matching_score"] > r["random_matching_score"] + 0.2
        assert r["delta_loss"] < by["layer_drop"]["delta_loss"]
        assert r["explained_variance"] > by["layer_drop"]["explained_variance"]
    assert by["current"]["kind"] == "baseline" and by["current"]["mean_cost"] is None
    with pytest.raises(ValueError, match="fitted on the very tokens"):
        run_compare(saes, matchings, data=fit)
    with pytest.raises(ValueError, match="data-based"):
        compute_matchings(saes, progress=False)
    assert list(compute_matchings(saes, skip_data_matchers=True, progress=False)) == ["sae_match", "cosine_top1"]


def test_cli_compare_and_evaluate_without_data(tmp_path, capsys):
    specs = []
    for layer, sae in enumerate(make_stack(n_layers=3, d_in=16, d_sae=64, seed=0).saes):
        sae.save_model(tmp_path / f"layer_{layer}")
        specs.append(str(tmp_path / f"layer_{layer}"))
    out = tmp_path / "cmp"
    assert main(["compare", *specs, "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "skipped data-based matchers without data: ['activation_correlation']" in printed
    saved = json.loads((out / "compare.json").read_text())
    assert saved["eval_type"] == "compare" and saved["config"]["cost"]["fold"] is True
    rows = saved["rows"]
    assert [(r["pair"], r["method"]) for r in rows] == [(0, "sae_match"), (0, "cosine_top1"), (1, "sae_match"), (1, "cosine_top1")]
    assert (out / "compare.csv").exists() and (out / "compare.html").exists()
    assert_png(out / "compare.png")
    assert main(["evaluate", *specs, "--out", str(tmp_path / "ev")]) == 0
    assert "layer pruning skipped" in capsys.readouterr().out
    curves = json.loads((tmp_path / "ev" / "parameter_curves.json").read_text())["rows"]
    assert {r["variant"] for r in curves} == {"vanilla", "matched", "folded+matched"}
    assert (tmp_path / "ev" / "parameter_curves.html").exists()
    assert_png(tmp_path / "ev" / "parameter_curves.png")  # Fig. 3: one panel per term
    assert main(["compare", *specs, "--model", "x", "--out", str(out)]) == 2
    assert "needs both --model and --tokens" in capsys.readouterr().err
    assert main(["compare", specs[0], "--out", str(out)]) == 2
    assert "at least two SAEs" in capsys.readouterr().err


def test_every_matcher_is_costed_under_one_definition():
    """SAE Match made decoder-only and cosine_top1 made with the defaults: the table's cost
    column must still be the same quantity for both (the fixed COST_CONFIG)."""
    stack = make_stack(n_layers=2, d_in=16, d_sae=64, seed=1)
    saes = stack.saes
    decoder_only = compute_matchings(saes, ["sae_match"], config=MatchConfig(weights={"W_dec": 1.0}), progress=False)
    default = compute_matchings(saes, ["cosine_top1"], progress=False)
    rows = {r["method"]: r for r in run_compare(saes, {**decoder_only, **default}).rows()}
    for name, ms in {**decoder_only, **default}.items():
        expected = parameter_mse(saes[0], saes[1], ms[0].permutation)  # folded, W_dec + W_enc + b_enc
        assert rows[name]["mean_cost"] == pytest.approx(float(expected[ms[0].matched].mean()), rel=1e-9)
    # the decoder-only matching's own cost is another quantity, which the table must not show
    assert float(decoder_only["sae_match"][0].cost.mean()) != pytest.approx(rows["sae_match"]["mean_cost"], rel=1e-3)
