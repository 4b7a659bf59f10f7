"""Feature flow on the embedded world (session fixture ``world_root``): generation under steering."""

import pytest
import torch

from sae_lens_match import world
from sae_lens_match.flow import FlowStack, Node, SteeringConfig, build_flow_graph, steered_completions, steering_vectors


@pytest.fixture(scope="module")
def world_flow(world_root):
    stack = FlowStack(world.load_saes("resid_post"), mlp=world.load_saes("mlp_out"))
    return world.load_model("hooked_sae"), stack, build_flow_graph(stack, progress=False)


@torch.no_grad()
def test_steered_generation_is_seeded_and_zero_steering_changes_nothing(world_flow):
    model, stack, graph = world_flow
    prefixes = world.review_prefixes(3)
    config = SteeringConfig(max_new_tokens=8, seeds=(0,))
    state = torch.random.get_rng_state()
    plain = steered_completions(model, prefixes, {}, config, seed=0)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is left alone
    assert plain == steered_completions(model, prefixes, {}, config, seed=0)
    node = next(e.target for e in graph.edges if e.target.layer == 2)
    assert steered_completions(model, prefixes, steering_vectors(stack, graph.flow(node), 0.0), config, seed=0) == plain
    strong = steered_completions(model, prefixes, steering_vectors(stack, [Node(1, "residual", node.feature)], 200.0), config, seed=0)
    assert strong != plain
    assert not model.acts_to_saes and not any(hp.fwd_hooks for hp in model.hook_dict.values())  # hooks removed
