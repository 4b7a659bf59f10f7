"""The matcher registry, the three built-in matchers, and many-to-one matchings."""

import json

import pytest
import torch

from safetensors.torch import save_file

from sae_lens_match import Matching, match, parameter_mse
from sae_lens_match.sources import TokenSet
from sae_lens_match.matching.matchers import MATCHERS, activation_correlations, get_matcher, register_matcher, run_matcher
from sae_lens_match.matching.synthetic import make_stack
from tests.planted_model import BOS, planted


@pytest.fixture(scope="module")
def world():
    p = planted()
    return p, TokenSet(p.model, p.tokens, bos_token_id=BOS, progress=False)


# --- many-to-one matchings ---------------------------------------------------------------


def _m(perm, one_to_one=True, d_b=None):
    perm = torch.tensor(perm)
    cost = torch.where(perm >= 0, torch.arange(len(perm), dtype=torch.float64) + 1, float("nan"))
    return Matching(perm, cost, d_b or len(perm), one_to_one=one_to_one)


def test_many_to_one_matching_is_accepted_only_when_declared():
    with pytest.raises(ValueError, match="one_to_one=False"):
        _m([1, 1, 0])
    m = _m([1, 1, 0], one_to_one=False)
    assert m.permutation.tolist() == [1, 1, 0] and not m.one_to_one
    with pytest.raises(ValueError, match="no inverse"):
        m.inverse()
    with pytest.raises(ValueError, match="bool"):
        Matching(torch.tensor([0]), torch.zeros(1, dtype=torch.float64), 1, one_to_one=1)


def test_compose_is_one_to_one_only_if_both_are():
    bij = _m([2, 0, 1])
    many = _m([0, 0, 2], one_to_one=False)
    assert bij.compose(bij).one_to_one
    for composed in (bij.compose(many), many.compose(bij)):
        assert not composed.one_to_one
    # A0 -> B2 -> C2, A1 -> B0 -> C0, A2 -> B1 -> C0
    assert bij.compose(many).permutation.tolist() == [2, 0, 0]
    assert many.with_unmatched(quantile=0.5).one_to_one is False  # with_unmatched keeps the flag


def test_save_load_keeps_the_flag_and_reads_old_files(tmp_path):
    many = _m([1, 1, -1], one_to_one=False, d_b=2)
    many.save(tmp_path / "m.safetensors")
    loaded = Matching.load(tmp_path / "m.safetensors")
    assert loaded.one_to_one is False and loaded.permutation.tolist() == [1, 1, -1]
    bij = _m([1, 0])
    bij.save(tmp_path / "b.safetensors")
    assert Matching.load(tmp_path / "b.safetensors").one_to_one is True
    # a file written before the field existed (no "one_to_one" key) is one-to-one
    meta = {"format": "sae-lens-match/matching", "format_version": "1", "d_sae_b": "2", "source": "{}", "target": "{}", "info": json.dumps({})}
    save_file({"permutation": bij.permutation, "cost": bij.cost}, str(tmp_path / "old.safetensors"), metadata=meta)
    assert Matching.load(tmp_path / "old.safetensors").one_to_one is True


# --- the registry ------------------------------------------------------------------------


def test_registry_lists_the_three_matchers_and_refuses_clashes():
    assert {"sae_match", "cosine_top1", "activation_correlation"} <= set(MATCHERS)
    assert get_matcher("activation_correlation").needs_data and not get_matcher("sae_match").needs_data
    with pytest.raises(ValueError, match="Unknown matcher 'nope'; registered: .*'cosine_top1'"):
        get_matcher("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_matcher("sae_match", lambda a, b, **kw: None)
    spec = get_matcher("cosine_top1")
    assert register_matcher("cosine_top1", spec.fn) is spec  # the same function again: a no-op


def test_registered_matcher_results_are_checked():
    from tests.helpers import random_sae

    a, b = random_sae("standard", seed=1), random_sae("standard", seed=2, d_sae=48)
    register_matcher("_test_bad_type", lambda sae_a, sae_b, data=None, config=None: "nope")
    register_matcher("_test_bad_shape", lambda sae_a, sae_b, data=None, config=None: Matching(torch.arange(4), torch.zeros(4, dtype=torch.float64), 4))
    register_matcher("_test_needs_data", lambda sae_a, sae_b, data=None, config=None: match(sae_a, sae_b), needs_data=True)
    register_matcher("_test_backwards", lambda sae_a, sae_b, data=None, config=None: match(sae_b, sae_a))
    try:
        with pytest.raises(TypeError, match="not a Matching"):
            run_matcher("_test_bad_type", a, b)
        with pytest.raises(ValueError, match="is 4 -> 4 features but the SAEs have 32 -> 48"):
            run_matcher("_test_bad_shape", a, b)
        with pytest.raises(ValueError, match="data-based"):
            run_matcher("_test_needs_data", a, b)
        c = random_sae("standard", seed=3)
        c.cfg.metadata.hook_name = "blocks.1.hook_resid_post"
        with pytest.raises(ValueError, match="source has hook_name='blocks.1.hook_resid_post'"):
            run_matcher("_test_backwards", a, c)  # same widths, made from B to A
    finally:
        for name in ("_test_bad_type", "_test_bad_shape", "_test_needs_data", "_test_backwards"):
            MATCHERS.remove(name)


# --- the built-in matchers ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["sae_match", "cosine_top1", "activation_correlation"])
def test_each_matcher_returns_a_valid_matching_that_finds_the_planted_pairs(world, name):
    p, data = world
    m = run_matcher(name, p.sae_a, p.sae_b, data=data)
    assert isinstance(m, Matching)
    assert m.d_sae_a == p.sae_a.cfg.d_sae and m.d_sae_b == p.sae_b.cfg.d_sae
    assert m.method == name
    assert (m.score is None) == (name == "sae_match")  # the similarity-based matchers record their own score
    assert m.one_to_one == (name == "sae_match")
    # cost means the same for every matcher: the folded parameter MSE of each pair
    torch.testing.assert_close(m.cost, parameter_mse(p.sae_a, p.sae_b, m.permutation), equal_nan=True)
    accuracy = float((m.permutation == p.truth).double().mean())
    # decoders of the planted layer t+1 are layer t's pushed through the block's affine fit;
    # activations correlate with their planted partner up to the fit's nonlinearity
    assert accuracy >= (0.9 if name == "activation_correlation" else 1.0)


@torch.no_grad()
def test_correlation_matrix_matches_a_direct_computation(world):
    p, data = world
    corr, active_a, active_b = activation_correlations(data, p.sae_a, p.sae_b)
    _, cache = p.model.run_with_cache(p.tokens, names_filter=[p.sae_a.cfg.metadata.hook_name, p.sae_b.cfg.metadata.hook_name])
    keep = p.tokens != BOS
    fa = p.sae_a.encode(cache[p.sae_a.cfg.metadata.hook_name][keep]).double()
    fb = p.sae_b.encode(cache[p.sae_b.cfg.metadata.hook_name][keep]).double()
    direct = torch.corrcoef(torch.cat([fa, fb], 1).T)[: fa.shape[1], fa.shape[1] :]
    torch.testing.assert_close(corr, direct, atol=1e-8, rtol=1e-6)
    assert active_a.all() and active_b.all()


def test_one_to_one_options_and_thresholds(world):
    p, data = world
    for name in ("cosine_top1", "activation_correlation"):
        bij = run_matcher(name, p.sae_a, p.sae_b, data=data, one_to_one=True)
        assert bij.one_to_one and bij.permutation.unique().numel() == bij.d_sae_a
    strict = run_matcher("cosine_top1", p.sae_a, p.sae_b, min_similarity=1.01)
    assert (strict.permutation == -1).all() and torch.isnan(strict.cost).all()
    loose = run_matcher("activation_correlation", p.sae_a, p.sae_b, data=data, min_correlation=0.5)
    assert 0 < int(loose.matched.sum()) <= loose.d_sae_a


def test_cosine_top1_confuses_threshold_twins_that_sae_match_separates():
    # twins share a decoder direction and differ in threshold (synthetic.make_stack): the
    # unit-norm cosine cannot tell them apart, folded parameters can
    stack = make_stack(n_layers=2, d_in=32, d_sae=256, twin_fraction=0.4, twin_spread=0.02, seed=0)
    a, b = stack.saes
    acc = {name: stack.accuracy(run_matcher(name, a, b), 0) for name in ("sae_match", "cosine_top1")}
    assert acc["sae_match"] > 0.9  # measured 0.95
    assert acc["cosine_top1"] < acc["sae_match"] - 0.1  # measured 0.78
