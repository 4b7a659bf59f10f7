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
    sample_edges,
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


@pytest.fixture(scope="module")
def mixed():
    """All three modules, three SAE architectures (one with layer-norm scaling), a few dead target
    features, edges of rank 0 and 1, and 10 rows in batches of 4 (the last one short)."""
    model = tiny_model(seed=1)
    tokens = sampled_tokens(model, n_rows=10, seq_len=10, seed=1)

    def sae(arch, hook, seed, **cfg):
        s = random_sae(arch, d_in=D_MODEL, d_sae=24, seed=seed, **cfg)
        s.cfg.metadata.hook_name = hook
        return s

    residual = [sae("standard", f"blocks.{L}.hook_resid_post", L) for L in range(N_LAYERS)]
    with torch.no_grad():
        for s in residual:
            s.b_enc[:3] = -1e4  # features 0-2 never fire: edges into them are left out
    stack = FlowStack(
        residual,
        attention=[sae("topk", f"blocks.{L}.hook_attn_out", 20 + L) for L in range(N_LAYERS)],
        mlp=[sae("jumprelu", f"blocks.{L}.hook_mlp_out", 10 + L, normalize_activations="layer_norm") for L in range(N_LAYERS)],
    )
    graph = build_flow_graph(stack, FlowConfig(threshold=-1.0, top_k=2), progress=False)  # best two predecessors per module
    return model, TokenSet(model, tokens, bos_token_id=BOS, batch_size=4, progress=False), stack, graph


def reference(model, data, stack, edge, feature):
    """Clean activation, drop and count of ``edge``'s target over the positions where it fires,
    with source ``feature`` zeroed: per batch, full clean and ablated passes with both SAEs attached."""
    source, target = stack.sae(edge.source.module, edge.source.layer), stack.sae("residual", edge.target.layer)
    source_name, target_name = (f"{s.cfg.metadata.hook_name}.hook_sae_acts_post" for s in (source, target))
    clean_sum, drop_sum, n = 0.0, 0.0, 0
    seen = {}

    def zero(acts, hook):
        acts = acts.clone()
        acts[..., feature] = 0.0
        return acts

    def read(acts, hook):
        seen["acts"] = acts[..., edge.target.feature]

    with model.saes(saes=[source, target], use_error_term=True):
        for tokens in data.batches():
            clean = model.run_with_cache(tokens, names_filter=target_name)[1][target_name][..., edge.target.feature]
            fires = (clean > 0) & data.position_mask(tokens)
            model.run_with_hooks(tokens, fwd_hooks=[(source_name, zero), (target_name, read)])
            clean_sum += clean[fires].sum().item()
            drop_sum += (clean - seen["acts"])[fires].sum().item()
            n += int(fires.sum())
    return clean_sum, drop_sum, n


@pytest.mark.parametrize("rank0_only, ablation_tokens", [(True, 4096), (True, 1), (False, 25)])
@torch.no_grad()
def test_batched_ablations_equal_one_pass_per_ablation(mixed, rank0_only, ablation_tokens):
    """The batched check (one row per pass with ablation_tokens=1, groups split over chunks of two
    rows with 25) against straightforward passes, one ablation each."""
    model, data, stack, graph = mixed
    config = CausalConfig(n_edges=40, rank0_only=rank0_only, ablation_tokens=ablation_tokens)
    effects = causal_check(data, stack, graph, config)
    assert not model.acts_to_saes
    sampled = sample_edges(graph, config)
    assert {e.source.module for e in sampled} == {"residual", "attention", "mlp"}
    assert rank0_only or any(e.rank > 0 for e in sampled)
    expected = {e: reference(model, data, stack, e, e.source.feature) for e in sampled}
    kept = [e for e in sampled if expected[e][2] > 0]  # the target fires somewhere
    assert any(e.target.feature < 3 for e in sampled) and all(e.target.feature >= 3 for e in kept)
    assert [(e.source.module, e.source.feature, e.target.layer, e.target.feature) for e in kept] == [
        (e.source_module, e.source_feature, e.layer, e.target_feature) for e in effects
    ]
    for edge, e in zip(kept, effects):
        clean, drop, n = expected[edge]
        _, random_drop, _ = reference(model, data, stack, edge, e.random_feature)
        assert e.n_positions == n and e.random_feature != e.source_feature
        assert (e.clean, e.effect, e.random_effect) == pytest.approx((clean / n, drop / n, random_drop / n), abs=1e-5)
    assert any(e.effect != 0 for e in effects) and any(e.random_effect != 0 for e in effects)


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
