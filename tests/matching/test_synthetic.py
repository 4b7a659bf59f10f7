"""Planted ground truth: paper Fig. 3 ordering and matching accuracy (asserted loosely)."""

import pytest
import torch

from sae_lens_match import match, parameter_mse
from sae_lens_match.matching import Hardness, make_pair
from sae_lens_match.matching.synthetic import make_stack


def test_generator_is_deterministic():
    a, b = make_stack(n_layers=3, seed=7), make_stack(n_layers=3, seed=7)
    for x, y in zip(a.saes, b.saes):
        assert all(torch.equal(p, q) for p, q in zip(x.state_dict().values(), y.state_dict().values()))
    assert all(torch.equal(s, t) for s, t in zip(a.truth, b.truth))
    assert not torch.equal(make_stack(n_layers=3, seed=8).saes[1].W_dec, a.saes[1].W_dec)


def test_thresholds_grow_with_depth_and_truth_is_consistent():
    stack = make_stack(n_layers=5, d_sae=200, persist=0.8)
    means = [float(s.threshold.detach().mean()) for s in stack.saes]
    assert means[-1] > means[0] * 1.1
    for t in stack.truth:
        kept = t[t >= 0]
        assert len(kept) == 160 and kept.unique().numel() == 160


def test_fig3_ordering_and_accuracy_on_planted_stack():
    stack = make_stack(n_layers=4, d_in=64, d_sae=256, seed=0)
    for layer in range(3):
        a, b = stack.saes[layer], stack.saes[layer + 1]
        folded = match(a, b)
        unfolded = match(a, b, fold=False)
        vanilla_mse = parameter_mse(a, b, torch.arange(256)).mean()
        matched_mse = parameter_mse(a, b, unfolded.permutation).mean()
        assert vanilla_mse > 3 * matched_mse
        assert matched_mse >= folded.cost.mean()
        assert stack.accuracy(folded, layer) > 0.9
        assert stack.accuracy(unfolded, layer) > 0.9
        identity = folded.__class__(torch.arange(256), folded.cost, 256)
        assert stack.accuracy(identity, layer) < 0.05


@pytest.mark.parametrize("unmatched", [0.0, 0.15, 0.5])
def test_make_pair_plants_the_asked_hardness(unmatched):
    hardness = Hardness(unmatched=unmatched, noise=0.3, threshold_scale=1.2)
    pair = make_pair(16, 200, hardness, seed=3)
    (truth,) = pair.truth
    assert float((truth < 0).double().mean()) == pytest.approx(unmatched, abs=0.01)
    kept = truth >= 0
    ratio = pair.saes[1].threshold[truth[kept]] / pair.saes[0].threshold[kept]
    assert float(ratio.log().mean().exp()) == pytest.approx(1.2, rel=0.05)
    # It is make_stack with two layers, so the same seed gives the same pair.
    same = make_stack(n_layers=2, d_in=16, d_sae=200, persist=1 - unmatched, drift=0.3, norm_growth=1.2, seed=3)
    assert torch.equal(same.saes[1].W_dec, pair.saes[1].W_dec)


def test_hardness_refuses_impossible_levels():
    with pytest.raises(ValueError, match="unmatched in"):
        Hardness(unmatched=1.5)
