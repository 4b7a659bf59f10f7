"""The causal check and steering on a tiny random HookedSAETransformer with random ReLU SAEs,
checked against the same interventions written by hand with plain TransformerLens hooks."""

import pytest
import torch

from sae_lens_match.flow import (
    CausalConfig,
    FlowConfig,
    FlowStack,
    Node,
    activation_change,
    build_flow_graph,
    causal_check,
    causal_summary,
    median_norm,
    random_nodes,
    steering_hooks,
    steering_vectors,
)
from sae_lens_match.sources import TokenSet
from tests.helpers import random_sae
from tests.planted_model import BOS, D_MODEL, N_LAYERS, sampled_tokens, tiny_model


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    tokens = sampled_tokens(model, n_rows=6, seq_len=10)

    def sae(hook, seed):
        s = random_sae("standard", d_in=D_MODEL, d_sae=24, seed=seed)
        s.cfg.metadata.hook_name = hook
        return s

    stack = FlowStack(
        [sae(f"blocks.{L}.hook_resid_post", L) for L in range(N_LAYERS)],
        attention=None,  # a missing module
        mlp=[sae(f"blocks.{L}.hook_mlp_out", 10 + L) for L in range(N_LAYERS)],
    )
    graph = build_flow_graph(stack, FlowConfig(threshold=-1.0), progress=False)  # every best match is an edge
    return model, TokenSet(model, tokens, bos_token_id=BOS, batch_size=4, progress=False), stack, graph


def by_hand(model, tokens, stack, source: Node, feature: int, target: Node) -> torch.Tensor:
    """Target activation with ``feature``'s decoder contribution removed at ``source``'s hook."""
    src, tgt = stack.sae(source.module, source.layer), stack.sae("residual", target.layer)
    seen = {}

    def remove(x, hook):
        return x - src.encode(x)[..., feature : feature + 1] * src.W_dec[feature]

    def read(x, hook):
        seen["f"] = tgt.encode(x)[..., target.feature]

    model.run_with_hooks(tokens, fwd_hooks=[(stack.hook(source.module, source.layer), remove), (stack.hook("residual", target.layer), read)])
    return seen["f"]


@torch.no_grad()
def test_deactivation_removes_exactly_that_features_contribution(setup):
    model, data, stack, graph = setup
    effects = causal_check(data, stack, graph, CausalConfig(n_edges=12, seed=1))
    assert len(effects) >= 8 and {e.source_module for e in effects} == {"residual", "mlp"}
    tokens, mask = data.tokens, data.position_mask(data.tokens)
    assert not model.acts_to_saes  # the SAEs were removed again
    for e in effects:
        source, target = Node(e.layer - (e.source_module == "residual"), e.source_module, e.source_feature), Node(e.layer, "residual", e.target_feature)
        hook = stack.hook("residual", e.layer)
        clean = stack.sae("residual", e.layer).encode(model.run_with_cache(tokens, names_filter=hook)[1][hook])[..., e.target_feature]
        fires = (clean > 0) & mask
        assert int(fires.sum()) == e.n_positions
        for feature, effect in ((e.source_feature, e.effect), (e.random_feature, e.random_effect)):
            expected = (clean - by_hand(model, tokens, stack, source, feature, target))[fires].mean().item()
            assert effect == pytest.approx(expected, abs=1e-4)
        assert e.random_feature != e.source_feature


def test_summary_counts_and_fractions(setup):
    _, data, stack, graph = setup
    effects = causal_check(data, stack, graph, CausalConfig(n_edges=10, seed=0))
    rows = causal_summary(effects)
    overall = next(r for r in rows if r["layer"] == "all" and r["target_class"] == "all")
    assert overall["n_edges"] == len(effects)
    assert overall["fraction_validated"] == sum(e.validated for e in effects) / len(effects)
    assert sum(r["n_edges"] for r in rows if r["layer"] != "all") == len(effects)


@torch.no_grad()
def test_steering_with_coefficient_zero_is_the_identity(setup):
    model, data, stack, graph = setup
    node = Node(2, "residual", 0)
    hooks = steering_hooks(steering_vectors(stack, graph.flow(node), 0.0))
    assert len(hooks) >= 2
    assert torch.equal(model.run_with_hooks(data.tokens, fwd_hooks=hooks), model(data.tokens))


@torch.no_grad()
def test_steering_adds_the_unit_direction_with_equal_total_norm(setup):
    model, data, stack, graph = setup
    node = Node(1, "residual", 3)
    hook = stack.hook("residual", 1)
    vectors = steering_vectors(stack, [node], 5.0)
    unit = stack.sae("residual", 1).W_dec[3] / stack.sae("residual", 1).W_dec[3].norm()
    _, clean = model.run_with_cache(data.tokens, names_filter=hook)
    seen = {}
    model.run_with_hooks(data.tokens, fwd_hooks=[*steering_hooks(vectors), (hook, lambda x, hook: seen.setdefault("x", x))])
    assert torch.allclose(seen["x"] - clean[hook], 5.0 * unit.expand_as(seen["x"]), atol=1e-5)
    # flow steering: the same total norm, split over the nodes (distinct hooks here)
    nodes = [Node(0, "residual", 1), Node(1, "mlp", 2), Node(2, "residual", 4)]
    flow_vectors = steering_vectors(stack, nodes, 5.0)
    assert sum(v.norm() for v in flow_vectors.values()).item() == pytest.approx(5.0, rel=1e-5)
    others = random_nodes(stack, nodes, seed=0)
    assert [(n.layer, n.module) for n in others] == [(n.layer, n.module) for n in nodes] and all(a != b for a, b in zip(others, nodes))


@torch.no_grad()
def test_activation_change_matches_a_hand_computation(setup):
    model, data, stack, _ = setup
    target = Node(2, "residual", 5)
    vectors = steering_vectors(stack, [Node(1, "residual", 3)], 4.0)
    sae, hook = stack.sae("residual", 2), stack.hook("residual", 2)
    _, clean = model.run_with_cache(data.tokens, names_filter=hook)
    seen = {}
    model.run_with_hooks(data.tokens, fwd_hooks=[*steering_hooks(vectors), (hook, lambda x, hook: seen.setdefault("x", x))])
    mask = data.position_mask(data.tokens)
    expected = (sae.encode(seen["x"]) - sae.encode(clean[hook]))[..., 5][mask].mean().item()
    assert activation_change(data, stack, vectors, target) == pytest.approx(expected, abs=1e-5)
    assert expected != 0.0


def test_median_norm_reads_the_evaluated_positions_of_the_hook(setup):
    model, data, stack, _ = setup
    hook = stack.hook("residual", 1)
    _, cache = model.run_with_cache(data.tokens)
    expected = cache[hook][data.position_mask(data.tokens)].norm(dim=-1).median()
    assert median_norm(data, hook) == pytest.approx(float(expected))
    assert median_norm(data, hook) != pytest.approx(float(cache[hook].norm(dim=-1).median()))  # BOS left out
