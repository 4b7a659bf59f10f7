"""The evaluations on the embedded world model (trained LM + JumpReLU SAEs).

Uses the session fixture ``world_root`` (the default world, built once into the cache).
"""

import pytest
import torch

from sae_lens_match import Matching, UnmatchedRule, world
from sae_lens_match.evaluation import LayerPruningConfig, ReplacementConfig, compute_matchings, run_compare, run_layer_pruning
from sae_lens_match.sources import TokenSet


@pytest.mark.slow
@torch.no_grad()
def test_matchers_and_baselines_on_the_world(world_root):
    model, saes = world.load_model("hooked_sae"), world.load_saes("resid_post")
    assert [s.cfg.metadata.hook_name for s in saes] == [f"blocks.{i}.hook_resid_post" for i in range(4)]
    eval_tokens, fit_tokens = world.tokens("test", 16), world.tokens("train", 32)
    assert (eval_tokens[:, 0] == model.tokenizer.bos_token_id).all() and eval_tokens.shape[1] == model.cfg.n_ctx
    data = TokenSet(model, eval_tokens, batch_size=16, progress=False)
    fit = TokenSet(model, fit_tokens, batch_size=16, progress=False)
    saes = saes[:3]  # two layer pairs keep it quick
    matchings = compute_matchings(saes, data=fit, progress=False)
    rows = run_compare(saes, matchings, data=data).rows()
    g = torch.Generator().manual_seed(0)
    shuffled = {"random": [Matching(torch.randperm(s.cfg.d_sae, generator=g), torch.zeros(s.cfg.d_sae, dtype=torch.float64), s.cfg.d_sae) for s in saes[:-1]]}
    keep_all = LayerPruningConfig(ReplacementConfig(unmatched_rule=UnmatchedRule()), baselines=())
    rows += run_layer_pruning(data, saes, shuffled, keep_all).rows()
    for pair in (0, 1):
        by = {r["method"]: r for r in rows if r["pair"] == pair}
        # trained SAEs reconstruct well, and the clean model is recovered when nothing changes
        assert by["current"]["explained_variance"] > 0.9 and abs(by["current"]["delta_loss"]) < 0.05
        for name in ("sae_match", "cosine_top1", "activation_correlation"):
            r = by[name]
            assert r["matching_score"] > 3 * r["random_matching_score"]  # matched features fire together
            assert r["explained_variance"] > by["random"]["explained_variance"] + 0.3
            assert r["delta_loss"] < by["random"]["delta_loss"]
        # the data-based matcher is fitted to co-activation, the data-free ones are not
        assert by["activation_correlation"]["matching_score"] > by["sae_match"]["matching_score"]
