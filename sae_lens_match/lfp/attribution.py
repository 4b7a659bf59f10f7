"""Feature attribution to the reward (seed posts): which dictionary features drive the reward of
the tuned model's completions, found without a probe.

Scale feature i of every dictionary by ``s_i`` inside the model (``HookedSAETransformer``, the
SAE's error term kept, so at ``s = 1`` the model is unchanged). The expected reward of sampled
completions then depends on ``s``, and its derivative at ``s = 1`` has the score-function
(REINFORCE) form::

    d E[R] / d s_i = E_y[(R(y) - b) * d log p(y) / d s_i]
                   = E_y[(R(y) - b) * sum_t f_i,t * d log p(y) / d f_i,t]

that is gradient x activation of the completion's log-likelihood, weighted by its reward
advantage (``b``, the mean reward, lowers the variance and not the expectation). One backward
pass per completion gives it for every feature at once. The reward itself (VADER) needs no
gradient. A positive attribution means more of the feature raises the reward.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.lfp.reward import RewardFn
from sae_lens_match.lfp.validation import sample_completions


def reward_attribution(
    model: Any,
    saes: Sequence[SAE],
    prompts: Sequence[str],
    reward: RewardFn,
    *,
    max_new_tokens: int = 24,
    seed: int = 0,
    with_prompt: bool = True,
) -> list[torch.Tensor]:
    """Per dictionary, ``[d_sae]``: the estimated derivative of the mean reward of completions to
    ``prompts`` with respect to scaling each feature (see the module docstring).

    Args:
        model: a ``HookedSAETransformer`` with a tokenizer; ``saes`` are spliced in at their hooks.
        reward: texts in, one float each out; it scores prompt + completion, or the completion
            alone with ``with_prompt=False``.
        seed: the sampling seed (the same draws as :func:`~sae_lens_match.lfp.validation.completion_rewards`).
    """
    if len(prompts) < 2:
        raise ValueError("reward_attribution needs at least 2 prompts (the baseline is their mean reward).")
    completions = sample_completions(model, prompts, max_new_tokens=max_new_tokens, seed=seed)
    rewards = torch.tensor(reward([c.prompt + c.completion if with_prompt else c.completion for c in completions]), dtype=torch.float64)
    advantages = (rewards - rewards.mean()).tolist()
    dtype = next(model.parameters()).dtype
    scales = [torch.ones(sae.cfg.d_sae, dtype=dtype, device=sae.W_dec.device, requires_grad=True) for sae in saes]
    hooks = [(f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post", _scale(s)) for sae, s in zip(saes, scales)]
    totals = [torch.zeros(sae.cfg.d_sae, dtype=torch.float64) for sae in saes]
    spliced = [copy.deepcopy(sae) for sae in saes]  # add_sae changes the SAE it is given
    with model.saes(saes=spliced, use_error_term=True), model.hooks(fwd_hooks=hooks), torch.enable_grad():
        for completion, advantage in zip(tqdm(completions, desc="reward attribution", leave=False), advantages):
            if advantage == 0.0 or completion.ids.shape[1] == completion.n_prompt:
                continue  # no signal from this draw
            log_probs = model(completion.ids).log_softmax(-1)[0, completion.n_prompt - 1 : -1]
            targets = completion.ids[0, completion.n_prompt :]
            log_likelihood = log_probs.gather(1, targets[:, None]).sum()
            for total, grad in zip(totals, torch.autograd.grad(log_likelihood, scales)):
                total += advantage * grad.double().cpu()
    return [t / len(completions) for t in totals]


def _scale(s: torch.Tensor):
    def hook(acts: torch.Tensor, hook: Any) -> torch.Tensor:
        return acts * s

    return hook


def attribution_agreement(attribution: Sequence[torch.Tensor], features: Sequence[Sequence[int]]) -> dict[str, Any]:
    """How strongly attributed the named ``features`` (per dictionary, e.g. the probe's related
    ones) are, against chance.

    Features are ranked by ``|attribution|`` within their dictionary (rank 0 = strongest).

    Returns:
        ``n_features``; ``mean_percentile`` (each named feature's share of its dictionary's
        features attributed less strongly, averaged; 0.5 is chance, 1 the top); ``top_overlap``
        (how many named features are among the ``n`` most attributed of their dictionary, ``n``
        the number named there) and ``top_overlap_expected`` (the same under chance).
    """
    percentiles, overlap, expected = [], 0, 0.0
    for attr, chosen in zip(attribution, features):
        chosen = sorted(set(int(f) for f in chosen))
        if not chosen:
            continue
        d = len(attr)
        ranks = torch.empty(d, dtype=torch.long)
        ranks[attr.abs().argsort(descending=True)] = torch.arange(d)
        percentiles += [1.0 - float(ranks[f]) / max(d - 1, 1) for f in chosen]
        overlap += sum(int(ranks[f]) < len(chosen) for f in chosen)
        expected += len(chosen) ** 2 / d
    if not percentiles:
        return {"n_features": 0, "mean_percentile": None, "top_overlap": None, "top_overlap_expected": None}
    return {"n_features": len(percentiles), "mean_percentile": sum(percentiles) / len(percentiles), "top_overlap": overlap, "top_overlap_expected": expected}


def top_attributed(attribution: Sequence[torch.Tensor], n: int) -> list[list[int]]:
    """The ``n`` features with the largest *positive* attribution over all dictionaries (those whose
    removal should lower the reward most), as one list of indices per dictionary."""
    flat = torch.cat(list(attribution))
    if n < 1 or n > len(flat):
        raise ValueError(f"n must lie in [1, {len(flat)}], got {n}.")
    offsets = torch.tensor([0, *torch.tensor([len(a) for a in attribution]).cumsum(0).tolist()])
    best = flat.argsort(descending=True)[:n]
    return [sorted(int(i - offsets[k]) for i in best if offsets[k] <= i < offsets[k + 1]) for k in range(len(attribution))]
