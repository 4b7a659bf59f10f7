"""Parameter MSE curves (paper Fig. 3)."""

import math

from sae_lens_match import MatchConfig
from sae_lens_match.evaluation import ParameterCurvesConfig, run_parameter_curves
from sae_lens_match.matching.matchers import run_matcher
from sae_lens_match.matching.synthetic import make_stack
from tests.helpers import random_sae


def test_fig3_ordering_per_term_on_a_planted_stack():
    stack = make_stack(n_layers=3, d_in=32, d_sae=128, seed=0)
    extra = {"cosine_top1": [run_matcher("cosine_top1", a, b) for a, b in zip(stack.saes, stack.saes[1:])]}
    result = run_parameter_curves(stack.saes, extra=extra, progress=False)
    assert result.eval_type == "parameter_curves" and result.to_json()["config"]["terms"] == ["W_dec", "W_enc", "b_enc"]
    rows = result.rows()
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
    rows = run_parameter_curves(gated, ParameterCurvesConfig(match=MatchConfig(weights={"W_dec": 1, "W_enc": 1})), progress=False).rows()
    b_enc = [r for r in rows if r["term"] == "b_enc"]
    assert b_enc and all(math.isnan(r["mean_mse"]) for r in b_enc)
    wide = [random_sae("standard", d_sae=32, seed=0), random_sae("standard", d_sae=48, seed=1)]
    vanilla = [r for r in run_parameter_curves(wide, progress=False).rows() if r["variant"] == "vanilla"]
    assert {r["n_matched"] for r in vanilla} == {32}
