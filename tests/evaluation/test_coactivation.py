"""Matching score on data: co-activation of matched features."""

import pytest
import torch


from sae_lens_match import Matching, UnmatchedRule
from sae_lens_match.evaluation import MatchingScoreConfig, coactivation, coactivations, run_matching_score
from sae_lens_match.matching import random_matching
from sae_lens_match.sources import TokenSet
from tests.planted_model import BOS, planted


@pytest.fixture(scope="module")
def world():
    p = planted()
    return p, TokenSet(p.model, p.tokens, bos_token_id=BOS, batch_size=5, progress=False)


def _matching(perm, one_to_one=True):
    perm = torch.as_tensor(perm).long()
    return Matching(perm, torch.zeros(len(perm), dtype=torch.float64), 32, one_to_one=one_to_one)


@torch.no_grad()
def test_statistics_match_a_direct_computation(world):
    p, data = world
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(1))
    perm[:3] = perm[3]  # many-to-one: A0..A3 share one B feature
    perm[5] = -1
    m = _matching(perm, one_to_one=False)
    co = coactivation(data, p.sae_a, p.sae_b, m)
    _, cache = p.model.run_with_cache(p.tokens, names_filter=[p.sae_a.cfg.metadata.hook_name, p.sae_b.cfg.metadata.hook_name])
    keep = p.tokens != BOS
    fa = p.sae_a.encode(cache[p.sae_a.cfg.metadata.hook_name][keep]).double()
    fb = p.sae_b.encode(cache[p.sae_b.cfg.metadata.hook_name][keep]).double()
    assert co.n_positions == fa.shape[0] == int(keep.sum())
    for i in (0, 1, 7, 20):
        a, b = fa[:, i], fb[:, perm[i]]
        on_a, on_b = a > 0, b > 0
        assert co.freq_a[i] == pytest.approx(float(on_a.double().mean()))
        assert co.p_b_given_a[i] == pytest.approx(float((on_a & on_b).sum() / on_a.sum()))
        assert co.jaccard[i] == pytest.approx(float((on_a & on_b).sum() / (on_a | on_b).sum()))
        assert co.correlation[i] == pytest.approx(float(torch.corrcoef(torch.stack([a, b]))[0, 1]), abs=1e-9)
    assert torch.isnan(co.jaccard[5]) and torch.isnan(co.correlation[5])


def test_planted_matching_scores_far_above_chance(world):
    p, data = world
    (score,) = run_matching_score(data, [p.sae_a, p.sae_b], {"t": [_matching(p.truth)]}, MatchingScoreConfig(UnmatchedRule(), seed=0)).rows()
    # each token activates exactly half of the +-u features, so chance co-activation is ~1/3
    assert score["random_matching_score"] == pytest.approx(1 / 3, abs=0.08)
    assert score["matching_score"] > score["random_matching_score"] + 0.25
    assert score["correlation"] > 0.6 and abs(score["random_correlation"]) < 0.15
    assert score["n_pairs_evaluated"] == 32
    both = coactivations(data, p.sae_a, p.sae_b, {"t": _matching(p.truth), "r": random_matching(_matching(p.truth), seed=0)})
    assert both["t"].summary()["matching_score"] == pytest.approx(score["matching_score"])
    assert both["r"].summary()["matching_score"] == pytest.approx(score["random_matching_score"])
    # the rule leaves out the pairs it calls unmatched: with none kept, nothing is scored
    (none,) = run_matching_score(data, [p.sae_a, p.sae_b], {"t": [_matching(p.truth)]}, MatchingScoreConfig(UnmatchedRule(max_cost=-1.0))).rows()
    assert none["n_pairs_evaluated"] == 0


def test_random_matching_handles_rectangular_shapes():
    wide = random_matching(Matching(torch.arange(4), torch.zeros(4, dtype=torch.float64), 10), seed=1)
    assert wide.d_sae_b == 10 and wide.matched.all() and wide.permutation.unique().numel() == 4
    narrow = random_matching(Matching(torch.tensor([0, 1, -1, -1, 2]), torch.zeros(5, dtype=torch.float64), 3), seed=1)
    assert int(narrow.matched.sum()) == 3 and sorted(narrow.permutation[narrow.matched].tolist()) == [0, 1, 2]
