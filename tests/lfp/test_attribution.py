"""Feature attribution to the reward: the estimate against an independent computation, and its summaries."""

import pytest
import torch

from sae_lens_match import world
from sae_lens_match.lfp.attribution import attribution_agreement, reward_attribution, top_attributed
from sae_lens_match.lfp.validation import sample_completions


def test_attribution_is_reward_weighted_gradient_times_activation(world_root):
    """Computed again without splicing the SAE: the gradient of each completion's log-likelihood
    with respect to the hidden state at the hook, contracted with f_i * W_dec[i], weighted by
    the reward advantage. A wrong hook, a lost error term or a sign error breaks the equality."""
    model = world.load_model("hooked_sae")
    sae = world.load_saes("resid_post", layers=[1])[0]
    prompts = world.review_prefixes(4, split="test")
    reward = lambda texts: [float(len(t)) for t in texts]  # noqa: E731  (any reward that differs between draws)
    (attribution,) = reward_attribution(model, [sae], prompts, reward, max_new_tokens=5, seed=2)
    completions = sample_completions(model, prompts, max_new_tokens=5, seed=2)
    rewards = torch.tensor(reward([c.prompt + c.completion for c in completions]), dtype=torch.float64)
    advantages = rewards - rewards.mean()
    assert advantages.abs().sum() > 0  # else the test proves nothing
    expected = torch.zeros(sae.cfg.d_sae, dtype=torch.float64)
    for c, a in zip(completions, advantages):
        store = {}

        def keep(x, hook):
            x.retain_grad()
            store["x"] = x
            return x

        with torch.enable_grad():
            logits = model.run_with_hooks(c.ids, fwd_hooks=[("blocks.1.hook_resid_post", keep)])
            log_likelihood = logits.log_softmax(-1)[0, c.n_prompt - 1 : -1].gather(1, c.ids[0, c.n_prompt :, None]).sum()
            log_likelihood.backward()
        x, grad = store["x"].detach()[0], store["x"].grad[0]
        f = sae.encode(x).detach()
        expected += a * ((grad @ sae.W_dec.detach().T) * f).sum(0).double()
    expected /= len(prompts)
    torch.testing.assert_close(attribution, expected, atol=1e-5, rtol=1e-3)
    assert attribution.abs().max() > 0


def test_top_attributed_takes_the_largest_positive_over_all_dictionaries():
    attribution = [torch.tensor([0.5, -3.0, 0.1]), torch.tensor([2.0, 0.0])]
    assert top_attributed(attribution, 2) == [[0], [0]]
    assert top_attributed(attribution, 3) == [[0, 2], [0]]
    with pytest.raises(ValueError, match="n must lie"):
        top_attributed(attribution, 6)


def test_agreement_ranks_by_absolute_attribution_against_chance():
    attribution = [torch.tensor([0.1, -5.0, 0.2, 3.0, 0.0])]
    strongest = attribution_agreement(attribution, [[1, 3]])
    assert strongest["mean_percentile"] == 1.0 - 0.5 / 4 and strongest["top_overlap"] == 2
    assert strongest["top_overlap_expected"] == pytest.approx(4 / 5)
    weakest = attribution_agreement(attribution, [[4]])
    assert weakest["mean_percentile"] == 0.0 and weakest["top_overlap"] == 0
    assert attribution_agreement(attribution, [[]])["n_features"] == 0
