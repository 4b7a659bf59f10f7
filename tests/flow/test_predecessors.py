"""Predecessors and classes on planted flow stacks: exact when noiseless, loose with noise, and the null rule."""

import pytest
import torch

from sae_lens_match import parameter_mse
from sae_lens_match.flow import FlowConfig, FlowStack, feature_vectors, layer_predecessors, make_flow_stack, null_scores, top_k
from sae_lens_match.flow.similarity import rotated
from tests.helpers import random_sae


def classes_of(planted, config):
    return [layer_predecessors(planted.stack, layer, config).classes() for layer in range(planted.stack.n_layers)]


@pytest.mark.parametrize("similarity", ["cosine", "mse"])
def test_noiseless_stack_is_classified_exactly_with_its_sources(similarity):
    planted = make_flow_stack(n_layers=3, d_in=48, d_sae=128, noise=0.0, encoder_noise=0.0, seed=1)
    # copies keep their decoder direction exactly (cosine 1); their parameters differ only by the
    # planted threshold/gain jitter (MSE < 0.002), unrelated pairs sit near the random-pair MSE (~0.02)
    threshold = 0.99 if similarity == "cosine" else -0.01
    config = FlowConfig(similarity=similarity, threshold=threshold)
    assert planted.accuracy(classes_of(planted, config)) == 1.0
    module_of = {"translated": "residual", "attention": "attention", "mlp": "mlp"}
    for layer in range(3):
        preds = layer_predecessors(planted.stack, layer, config)
        for i, cls in enumerate(planted.classes[layer]):
            if cls != "born":
                assert preds.sources[module_of[cls]].best.indices[i, 0] == planted.sources[layer][i]


@pytest.mark.parametrize("similarity", ["cosine", "mse"])
def test_default_null_threshold_classifies_noisy_stacks(similarity):
    planted = make_flow_stack(n_layers=3, d_in=64, d_sae=192, noise=0.3, seed=2)
    accuracy = planted.accuracy(classes_of(planted, FlowConfig(similarity=similarity)))
    assert accuracy > 0.9
    # a much noisier stack (copies at ~0.6 cosine) loses accuracy: the test can fail
    noisy = make_flow_stack(n_layers=3, d_in=64, d_sae=192, noise=3.0, seed=2)
    assert noisy.accuracy(classes_of(noisy, FlowConfig(similarity=similarity))) < accuracy


@pytest.mark.parametrize("quantile", [0.8, 0.95])
def test_null_rule_lets_through_about_one_minus_quantile_of_unrelated_features(quantile):
    # every residual feature is born: any predecessor that passes is a false positive
    planted = make_flow_stack(n_layers=3, d_in=64, d_sae=256, fractions=(0.0, 0.0, 0.0, 1.0), seed=3)
    config = FlowConfig(null_quantile=quantile)
    passed = [p.above[:, 0].double().mean().item() for layer in range(3) for p in layer_predecessors(planted.stack, layer, config).sources.values()]
    rate = sum(passed) / len(passed)
    assert abs(rate - (1 - quantile)) < 0.05, (rate, passed)


def test_null_scores_match_the_real_scores_of_an_unrelated_module():
    a, b = random_sae("jumprelu", d_in=32, d_sae=200, seed=0), random_sae("jumprelu", d_in=32, d_sae=200, seed=1)
    config = FlowConfig()
    target = feature_vectors(a, config)
    real = top_k(target, feature_vectors(b, config), config).scores[:, 0]
    null = null_scores(target, b, config, seed=0)
    assert abs(real.median() - null.median()) < 0.05
    # a related module scores far above its null
    assert top_k(target, feature_vectors(a, config), config).scores[:, 0].min() > null.max()


def test_rotation_keeps_norms_and_reconstruction_in_the_rotated_space():
    sae = random_sae("jumprelu", d_in=16, d_sae=40, seed=0)
    rot = rotated(sae, seed=5)
    assert torch.allclose(rot.W_dec.norm(dim=1), sae.W_dec.norm(dim=1), atol=1e-5)
    x = torch.randn(8, 16)
    q = torch.linalg.lstsq(sae.W_dec, rot.W_dec).solution  # the rotation itself
    assert torch.allclose(rot.encode(x @ q), sae.encode(x), atol=1e-4)
    assert not torch.allclose(rot.W_dec, sae.W_dec)


@pytest.mark.parametrize("similarity", ["cosine", "mse"])
def test_blocks_do_not_change_the_result(similarity):
    a, b = random_sae("jumprelu", d_in=16, d_sae=50, seed=0), random_sae("jumprelu", d_in=16, d_sae=70, seed=1)
    big, tiny = FlowConfig(similarity=similarity, top_k=3), FlowConfig(similarity=similarity, top_k=3, block_elements=7)
    one = top_k(feature_vectors(a, big), feature_vectors(b, big), big)
    other = top_k(feature_vectors(a, tiny), feature_vectors(b, tiny), tiny)
    assert torch.equal(one.indices, other.indices) and torch.allclose(one.scores, other.scores)
    assert (one.scores[:, :-1] >= one.scores[:, 1:]).all()  # best first


def test_mse_scores_are_sae_match_costs():
    a, b = random_sae("jumprelu", d_in=16, d_sae=30, seed=0), random_sae("jumprelu", d_in=16, d_sae=30, seed=1)
    config = FlowConfig(similarity="mse")
    best = top_k(feature_vectors(a, config), feature_vectors(b, config), config)
    assert torch.allclose(-best.scores[:, 0], parameter_mse(a, b, best.indices[:, 0], config.match))


def test_ties_go_to_the_lower_index_and_short_modules_are_padded():
    a, b = random_sae("jumprelu", d_in=16, d_sae=6, seed=0), random_sae("jumprelu", d_in=16, d_sae=5, seed=1)
    with torch.no_grad():
        b.W_dec[1] = a.W_dec[0]
        b.W_dec[3] = a.W_dec[0] * 2  # same direction: an exact cosine tie with feature 1
    config = FlowConfig(top_k=7)
    best = top_k(feature_vectors(a, config), feature_vectors(b, config), config)
    assert best.indices[0, :2].tolist() == [1, 3]
    assert (best.indices[:, 5:] == -1).all() and best.scores[:, 5:].isnan().all()


def test_missing_modules_are_not_candidates():
    planted = make_flow_stack(n_layers=2, d_in=32, d_sae=64, seed=0)
    stack = FlowStack(planted.stack.residual, attention=None, mlp=[None, planted.stack.mlp[1]])
    first = layer_predecessors(stack, 0)
    assert first.sources == {} and set(first.classes()) == {"born"}
    second = layer_predecessors(stack, 1)
    assert set(second.sources) == {"residual", "mlp"}
    assert "attention" not in second.classes()


def test_bad_stacks_are_refused_in_one_line():
    with pytest.raises(ValueError, match="different widths"):
        FlowStack([random_sae("jumprelu", d_in=16), random_sae("jumprelu", d_in=8)])
    with pytest.raises(ValueError, match="one per layer"):
        FlowStack([random_sae("jumprelu")], mlp=[None, None])
    with pytest.raises(ValueError, match="similarity"):
        FlowConfig(similarity="dot")


def squeezed(planted, scale):
    """The planted stack with every decoder row mapped by one anisotropic linear map (all
    modules share it, as the SAEs of one stream share its anisotropy): copies stay copies."""
    for _, _, sae in planted.stack.items():
        with torch.no_grad():
            sae.W_dec.mul_(scale)
    return planted


@pytest.mark.parametrize("null, fair", [("whitened", True), ("isotropic", False)])
def test_only_the_whitened_null_keeps_its_rate_on_anisotropic_dictionaries(null, fair):
    scale = torch.exp(torch.linspace(0.0, -3.0, 64))  # a 20x spread of scales across directions
    born = squeezed(make_flow_stack(n_layers=2, d_in=64, d_sae=256, fractions=(0.0, 0.0, 0.0, 1.0), seed=4), scale)
    config = FlowConfig(null=null, null_quantile=0.95)
    passed = [p.above[:, 0].double().mean().item() for p in layer_predecessors(born.stack, 1, config).sources.values()]
    rate = sum(passed) / len(passed)
    assert (abs(rate - 0.05) < 0.05) == fair, rate
    if fair:  # and planted copies still pass it
        planted = squeezed(make_flow_stack(n_layers=3, d_in=64, d_sae=256, noise=0.2, seed=4), scale)
        assert planted.accuracy(classes_of(planted, config)) > 0.85


def test_whitened_rotation_keeps_the_second_moment():
    sae = random_sae("jumprelu", d_in=16, d_sae=40, seed=0)
    moved = rotated(sae, seed=1, whiten=True)
    second = lambda w: w.T @ w  # noqa: E731
    assert torch.allclose(second(moved.W_dec.double()), second(sae.W_dec.double()), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(moved.W_dec, sae.W_dec, atol=1e-3)
