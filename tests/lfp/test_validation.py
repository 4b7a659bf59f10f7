"""Part 2's validation: relatedness labels, the ablation, the activation frequency."""

import pytest
import torch

from sae_lens_match import world
from sae_lens_match.evaluation.explain import TopTokensExplainer
from sae_lens_match.lfp.reward import vader_reward
from sae_lens_match.lfp.validation import VaderTokenRelatedness, ablated, ablation_effect, activation_frequency, related_features
from sae_lens_match.sources.tokens import TokenSet


@pytest.fixture(scope="module")
def model(world_root):
    return world.load_model("hooked_sae")


def test_ablation_zeroes_exactly_the_named_sae_features(model):
    """The reference notebook ablated an empty list and zeroed a d_model coordinate of a model
    loaded with random weights. Here: the world's trained model, real SAE features, and the
    hidden state changes by exactly -sum_i f_i W_dec[i] over the named features."""
    sae = world.load_saes("resid_post", layers=[1])[0]
    tokens = world.tokens("test", 4)[:2]
    _, clean = model.run_with_cache(tokens)
    x = clean["blocks.1.hook_resid_post"]
    acts = sae.encode(x)
    named = [int(i) for i in acts[0, 5].nonzero()[:3, 0]]  # features active at one position
    assert len(named) == 3
    with ablated(model, [sae], [named]):
        _, cut = model.run_with_cache(tokens)
    expected = x - acts[..., named] @ sae.W_dec[named]
    torch.testing.assert_close(cut["blocks.2.hook_resid_pre"], expected.detach(), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(cut["blocks.2.hook_resid_pre"], x)
    # the model is back as it was afterwards, and bad requests are refused
    _, again = model.run_with_cache(tokens)
    torch.testing.assert_close(again["blocks.2.hook_resid_pre"], clean["blocks.2.hook_resid_pre"])
    with pytest.raises(ValueError, match="No features to ablate"):
        with ablated(model, [sae], [[]]):
            pass
    with pytest.raises(ValueError, match="must lie in"):
        with ablated(model, [sae], [[sae.cfg.d_sae]]):
            pass


def test_relatedness_and_ablation_run_on_the_world(model):
    sae = world.load_saes("mlp_out", layers=[2])[0]
    data = TokenSet(model, world.tokens("test", 40), progress=False)
    rows = related_features(data, [sae], [list(range(12))], TopTokensExplainer(), VaderTokenRelatedness())
    assert len(rows) == 12 and all(r["judge"] == "heuristic:vader-tokens" and r["explainer"].startswith("heuristic") for r in rows)
    related = [r["feature"] for r in rows if r["related"]] or [0]
    prompts = world.review_prefixes(6, split="test")
    result = ablation_effect(model, [sae], {"related": [related]}, prompts, vader_reward, n_random=1, max_new_tokens=6, n_boot=50)
    assert result["related"]["n_features"] == result["random"]["n_features"] == len(related)
    assert result["related"]["reward_before"] == result["random"]["reward_before"]  # the same draws
    low, high = result["related"]["drop_ci"]
    assert low <= result["related"]["drop"] <= high


def test_activation_frequency_counts_only_inputs_above_the_threshold():
    codes = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0], [5.0, 5.0, 5.0]])
    predicted = torch.tensor([4.0, 3.5, 1.0])
    result = activation_frequency(codes, predicted, [0, 1])
    assert result["n_inputs_above"] == 2
    assert result["related"] == pytest.approx(0.25)  # feature 0 on 1/2, feature 1 on 0/2
    assert result["average"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert activation_frequency(codes, predicted, [0], threshold=10)["related"] is None


def test_llm_relatedness_reads_yes_and_no(world_root):
    from sae_lens_match.evaluation.explain import ChatClient
    from sae_lens_match.evaluation.explain.contexts import Example, FeatureContexts
    from sae_lens_match.lfp.validation import LLMRelatedness
    from tests.evaluation.explain.test_llm import Server, completion

    server = Server()
    try:
        server.answers += [(200, completion("Yes. It fires on praise.")), (200, completion("no")), (200, completion("Perhaps."))]
        judge = LLMRelatedness(ChatClient(server.url, "m", sleep=lambda s: None))
        example = Example(0, 1, 2.0, ("the", " great"), (0.0, 2.0), (1, 2), 1)
        contexts = FeatureContexts("h", 3, (example,), 0.1, 10)
        assert [judge.related(contexts, "praise")[0] for _ in range(3)] == [True, False, None]
        assert "great" in server.requests[0]["body"]["messages"][0]["content"] and judge.name == "llm:m"
    finally:
        server.close()
