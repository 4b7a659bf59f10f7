import itertools

import pytest
import torch

from sae_lens_match import MatchConfig, fold, match, parameter_mse, permute, select_features
from tests.helpers import random_sae


@pytest.mark.parametrize("arch", ["jumprelu", "standard", "topk"])
@pytest.mark.parametrize("fold", [True, False])
def test_permute_then_match_recovers_the_permutation(arch, fold):
    sae = random_sae(arch, d_sae=64)
    p = torch.randperm(64, generator=torch.Generator().manual_seed(3))
    shuffled = permute(sae, p)
    m = match(sae, shuffled, fold=fold)
    # shuffled feature k is original feature p[k], so original i sits at p^-1[i]
    assert torch.equal(p[m.permutation], torch.arange(64))
    assert m.total_cost == pytest.approx(0.0, abs=1e-10)
    assert torch.equal(permute(shuffled, m.permutation).W_dec, sae.W_dec)


def test_permute_keeps_output_and_reorders_activations():
    sae = random_sae("jumprelu")
    p = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    shuffled = permute(sae, p)
    x = torch.randn(50, 16) * 3
    torch.testing.assert_close(shuffled(x), sae(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shuffled.encode(x), sae.encode(x)[:, p])


def test_permute_refuses_non_permutations():
    sae = random_sae("jumprelu")
    with pytest.raises(ValueError, match="distinct feature indices"):
        permute(sae, torch.zeros(32, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \[32\]"):
        permute(sae, torch.arange(31))


def test_select_features_keeps_the_chosen_features():
    sae = random_sae("jumprelu")
    keep = torch.tensor([5, 0, 17])
    small = select_features(sae, keep)
    assert small.cfg.d_sae == 3 and small.W_enc.shape == (16, 3) and small.threshold.shape == (3,)
    x = torch.randn(20, 16) * 3
    torch.testing.assert_close(small.encode(x), sae.encode(x)[:, keep])
    with pytest.raises(ValueError, match="distinct"):
        select_features(sae, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        select_features(sae, torch.tensor([-1, 2]))


def test_match_is_the_exact_optimum_on_a_tiny_problem():
    a, b = random_sae("jumprelu", d_sae=6, seed=1), random_sae("jumprelu", d_sae=6, seed=2)
    m = match(a, b)
    brute = min(
        float(parameter_mse(a, b, torch.tensor(p)).sum()) for p in itertools.permutations(range(6))
    )
    assert m.total_cost == pytest.approx(brute, rel=1e-9)
    torch.testing.assert_close(m.cost, parameter_mse(a, b, m.permutation))


def test_rectangular_matching_recovers_the_embedded_subset():
    small, extra = random_sae("jumprelu", d_sae=32, seed=4), random_sae("jumprelu", d_sae=16, seed=5)
    big = random_sae("jumprelu", d_sae=48)
    with torch.no_grad():  # big = small's features followed by extra's, then shuffled
        for name, p in big.named_parameters():
            axis = {"W_enc": 1, "b_dec": None}.get(name, 0)
            p.copy_(small.b_dec if axis is None else torch.cat([getattr(small, name), getattr(extra, name)], axis))
    shuffle = torch.randperm(48, generator=torch.Generator().manual_seed(6))
    big = permute(big, shuffle)
    where = torch.empty(48, dtype=torch.long)
    where[shuffle] = torch.arange(48)  # where[j]: position in big of original feature j
    forward = match(small, big)  # every small feature matched
    assert torch.equal(forward.permutation, where[:32])
    backward = match(big, small)  # big keeps 16 features unmatched
    assert torch.equal(backward.permutation[where[:32]], torch.arange(32))
    assert (backward.permutation[where[32:]] == -1).all()
    assert torch.isnan(backward.cost[where[32:]]).all()


def test_mismatched_d_in_is_refused():
    with pytest.raises(ValueError, match="different d_in: A has d_in=16 .* B has d_in=8"):
        match(random_sae("jumprelu", d_in=16), random_sae("jumprelu", d_in=8))


def test_term_weights():
    a, b = random_sae("jumprelu", seed=1), random_sae("jumprelu", seed=2)
    dec = match(a, b, weights={"W_dec": 1.0})
    assert dec.info["config"]["weights"] == {"W_dec": 1.0, "W_enc": 0.0, "b_enc": 0.0}
    assert match(a, b, MatchConfig(weights={"W_dec": 1.0})).permutation.equal(dec.permutation)
    # the decoder-only cost is the mean squared difference of the folded decoder rows

    fa, fb = fold(a), fold(b)
    expected = ((fa.W_dec - fb.W_dec[dec.permutation]) ** 2).mean(1).double()
    torch.testing.assert_close(dec.cost, expected.detach())
    with pytest.raises(ValueError, match="Unknown matching terms"):
        match(a, b, weights={"b_dec": 1.0})


def test_default_weights_work_for_gated_saes_through_the_gate_bias():
    """Gated SAEs have no b_enc; the default b_enc term is their gate's bias b_gate."""
    a, b = random_sae("gated"), random_sae("gated", seed=3)
    m = match(a, b)
    rows = lambda s: torch.cat([s.W_dec, s.W_enc.T, s.b_gate[:, None]], 1)  # noqa: E731
    expected = ((rows(a) - rows(b)[m.permutation]) ** 2).mean(1).double()
    torch.testing.assert_close(m.cost, expected.detach())
    assert torch.equal(match(a, permute(a, torch.arange(a.cfg.d_sae).flip(0))).permutation, torch.arange(a.cfg.d_sae).flip(0).argsort())


def test_match_options_are_config_fields():
    a, b = random_sae("jumprelu", seed=1), random_sae("jumprelu", seed=2)
    with pytest.raises(TypeError, match="Unknown match option.*'fodl'.*'fold'"):
        match(a, b, fodl=False)
    with pytest.raises(ValueError, match="nonpositive_threshold"):
        MatchConfig(nonpositive_threshold="ignore")
