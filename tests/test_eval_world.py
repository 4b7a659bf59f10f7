"""The evaluations on the embedded world model (trained LM + JumpReLU SAEs).

Uses the session fixture ``world_root`` (the default world, built once into the cache).
"""

import pytest
import torch


from sae_lens_match import Matching  # noqa: E402
from sae_lens_match.eval_cli import world_inputs  # noqa: E402
from sae_lens_match.evaluation import TokenSet, compare_matchers, compute_matchings, layer_pruning  # noqa: E402


@pytest.mark.slow
@torch.no_grad()
def test_matchers_and_baselines_on_the_world(world_root):
    model, saes, eval_tokens, fit_tokens = world_inputs(16, n_fit_texts=32)
    assert [s.cfg.metadata.hook_name for s in saes] == [f"blocks.{i}.hook_resid_post" for i in range(4)]
    assert (eval_tokens[:, 0] == model.tokenizer.bos_token_id).all() and eval_tokens.shape[1] == model.cfg.n_ctx
    data = TokenSet(model, eval_tokens, batch_size=16, progress=False)
    fit = TokenSet(model, fit_tokens, batch_size=16, progress=False)
    saes = saes[:3]  # two layer pairs keep it quick
    matchings = compute_matchings(saes, data=fit, progress=False)
    rows = compare_matchers(saes, matchings, data=data)
    g = torch.Generator().manual_seed(0)
    shuffled = {"random": [Matching(torch.randperm(s.cfg.d_sae, generator=g), torch.zeros(s.cfg.d_sae, dtype=torch.float64), s.cfg.d_sae) for s in saes[:-1]]}
    rows += layer_pruning(data, saes, shuffled, baselines=())
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
