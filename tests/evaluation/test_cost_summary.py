"""The cost summary works on every matcher's matchings, under the one unmatched rule."""

import math

import pytest

from sae_lens_match import UnmatchedRule, compose_all, match_layers
from sae_lens_match.evaluation import CostSummaryConfig, run_cost_summary
from sae_lens_match.matching.matchers import run_matcher
from sae_lens_match.matching.synthetic import make_stack
from sae_lens_match.sources import TokenSet
from tests.planted_model import BOS, planted


def test_summary_reads_every_matcher_and_compositions():
    stack = make_stack(n_layers=3, d_in=16, d_sae=64, seed=0)
    steps = match_layers(stack.saes, progress=False)
    cosine = [run_matcher("cosine_top1", a, b) for a, b in zip(stack.saes, stack.saes[1:])]
    for matchings in (steps, cosine, [compose_all(steps)]):
        for row, m in zip(run_cost_summary(matchings).rows(), matchings):
            assert row["method"] == m.method and row["random_pair_cost"] == m.random_pair_cost
            assert row["unmatched_threshold"] == pytest.approx(0.5 * m.random_pair_cost)
            costs = m.cost[m.matched]
            assert row["fraction_matched"] == pytest.approx(float((costs <= row["unmatched_threshold"]).double().mean()))
    # a composition's chance level adds up along the path, like its costs
    assert compose_all(steps).random_pair_cost == pytest.approx(sum(m.random_pair_cost for m in steps))
    quantile = run_cost_summary(steps, CostSummaryConfig(UnmatchedRule(quantile=0.9))).rows()
    assert all(r["fraction_matched"] == pytest.approx(0.9, abs=1 / 64) and "0.9 quantile" in r["unmatched_rule"] for r in quantile)
    assert all(r["fraction_matched"] == 1.0 and math.isinf(r["unmatched_threshold"]) for r in run_cost_summary(steps, CostSummaryConfig(UnmatchedRule())).rows())


def test_summary_of_a_data_based_matcher():
    p = planted()
    data = TokenSet(p.model, p.tokens, bos_token_id=BOS, progress=False)
    (row,) = run_cost_summary([run_matcher("activation_correlation", p.sae_a, p.sae_b, data=data)]).rows()
    assert row["method"] == "activation_correlation" and row["random_pair_cost"] > 0
