"""Validating the probes (LFP paper §3.4, Tables 6 and 7, with the control the paper lacked).

1. Explain the top-overlap features of the n-dictionaries from their top-activating contexts
   and label each "related to the fine-tuning task" or not, through the package's explainer
   interface: an LLM when one is configured, else the offline heuristics here (every label
   says which made it).
2. Activation frequency: how often the related features fire on inputs whose predicted
   feedback is above a threshold, against the average feature (Table 7).
3. Ablation: zero the related features inside the tuned model (``HookedSAETransformer``, the
   SAE's error term kept, so only those features change), sample completions of fixed
   prefixes and compare the mean reward before and after, against as many random features of
   the same dictionaries (Table 6 plus a control). The reference notebook loaded the
   checkpoint into the wrong class, ablated an empty list and zeroed a ``d_model`` coordinate
   of the reconstruction: :func:`ablated` refuses an empty list and zeroes SAE features.
"""

from __future__ import annotations

import contextlib
import copy
import random
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import torch
from sae_lens import SAE

from sae_lens_match.evaluation.explain.client import ChatClient
from sae_lens_match.evaluation.explain.contexts import Explainer, FeatureContexts, top_activating_contexts
from sae_lens_match.evaluation.explain.llm import format_contexts
from sae_lens_match.lfp.reward import RewardFn
from sae_lens_match.sources.tokens import TokenSet
from sae_lens_match.sources.vader import vader_lexicon


@runtime_checkable
class Relatedness(Protocol):
    """Says whether an explained feature is related to the fine-tuning task."""

    name: str

    def related(self, contexts: FeatureContexts, explanation: str) -> tuple[bool | None, str]: ...


@dataclass(frozen=True)
class VaderTokenRelatedness:
    """Offline heuristic for sentiment tasks: a feature is related when at least ``share`` of its
    top-activating tokens are words VADER scores."""

    share: float = 0.5
    name: str = "heuristic:vader-tokens"

    def related(self, contexts: FeatureContexts, explanation: str) -> tuple[bool | None, str]:
        if not contexts.examples:
            return None, "never fires"
        lexicon = vader_lexicon()
        scored = [t for t in contexts.top_tokens if t.strip().lower() in lexicon]
        fraction = len(scored) / len(contexts.top_tokens)
        return fraction >= self.share, f"{len(scored)}/{len(contexts.top_tokens)} top tokens are VADER words"


@dataclass(frozen=True)
class LLMRelatedness:
    """Asks an OpenAI-compatible endpoint whether the feature relates to ``task`` (yes / no)."""

    client: ChatClient
    task: str = "training the model to generate completions with positive sentiment"

    @property
    def name(self) -> str:
        return f"llm:{self.client.model}"

    def related(self, contexts: FeatureContexts, explanation: str) -> tuple[bool | None, str]:
        prompt = (
            f"A language-model feature is explained as: {explanation}\n"
            f"Its top-activating contexts (the activating token between << >>):\n{format_contexts(contexts)}\n\n"
            f"Is this feature related to {self.task}? Answer 'yes' or 'no' on the first line, then one sentence why."
        )
        answer = self.client.complete([{"role": "user", "content": prompt}], temperature=0.0)
        first = answer.strip().split()[0].strip(".,:;!").lower() if answer.strip() else ""
        return ({"yes": True, "no": False}.get(first), answer.strip()[:300])


def related_features(
    data: TokenSet,
    saes: Sequence[SAE],
    features: Sequence[Sequence[int]],
    explainer: Explainer,
    relatedness: Relatedness,
    *,
    k: int = 10,
) -> list[dict[str, Any]]:
    """Explain ``features[l]`` of ``saes[l]`` on ``data`` and label each related or not.

    Returns:
        One row per feature: ``layer`` (index into ``saes``), ``feature``, ``explanation``,
        ``explainer``, ``related`` (``None`` when no label could be had), ``reason``, ``judge``.
    """
    rows = []
    for layer, (sae, chosen) in enumerate(zip(saes, features)):
        for contexts in top_activating_contexts(data, sae, list(chosen), k=k):
            explanation = explainer.explain(contexts)
            related, reason = relatedness.related(contexts, explanation.text)
            rows.append({
                "layer": layer, "feature": contexts.feature, "explanation": explanation.text, "explainer": explanation.source,
                "related": related, "reason": reason, "judge": relatedness.name,
            })
    return rows


@contextlib.contextmanager
def ablated(model: Any, saes: Sequence[SAE], features: Sequence[Sequence[int]]) -> Iterator[None]:
    """Within the block, ``model`` (a ``HookedSAETransformer``) runs with each SAE spliced in at
    its hook, its error term kept, and ``features[l]`` of ``saes[l]`` set to 0: the hidden state
    changes by exactly ``-sum_i f_i W_dec[i]`` over the named features.

    Raises:
        ValueError: nothing to ablate, or an index outside an SAE's features.
    """
    if not any(len(f) for f in features):
        raise ValueError("No features to ablate: an empty ablation changes nothing and proves nothing.")
    if len(features) != len(saes):
        raise ValueError(f"Give one list of features per SAE ({len(saes)}), got {len(features)}.")
    hooks = []
    for sae, chosen in zip(saes, features):
        index = torch.as_tensor(list(chosen), dtype=torch.long)
        if index.numel() and (index.min() < 0 or index.max() >= sae.cfg.d_sae):
            raise ValueError(f"Feature indices must lie in [0, {sae.cfg.d_sae}) for {sae.cfg.metadata.hook_name}.")
        hooks.append((f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post", _zero(index)))
    spliced = [copy.deepcopy(sae) for sae in saes]  # add_sae changes the SAE it is given
    with model.saes(saes=spliced, use_error_term=True), model.hooks(fwd_hooks=hooks):
        yield


def _zero(index: torch.Tensor):
    def hook(acts: torch.Tensor, hook: Any) -> torch.Tensor:
        acts[..., index.to(acts.device)] = 0.0
        return acts

    return hook


@dataclass(frozen=True)
class Completion:
    """One sampled completion: ``ids [1, T]`` (BOS, the prompt's ``n_prompt - 1`` tokens, then the
    completion's), and both as text."""

    ids: torch.Tensor
    n_prompt: int
    prompt: str
    completion: str


@torch.no_grad()
def sample_completions(model: Any, prompts: Sequence[str], *, max_new_tokens: int = 24, seed: int = 0) -> list[Completion]:
    """One sampled completion per prompt (BOS prepended), each prompt sampled with its own seed
    so that conditions (e.g. with and without an ablation) are compared on the same draws."""
    bos = model.tokenizer.bos_token_id
    out = []
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([[bos, *model.tokenizer(prompt, add_special_tokens=False)["input_ids"]]], device=next(model.parameters()).device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 100_003 + i)
            tokens = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=True, verbose=False, stop_at_eos=False)
        tokens = tokens.clone()  # generate runs in inference mode; a clone can enter autograd later
        out.append(Completion(tokens, ids.shape[1], prompt, model.tokenizer.decode(tokens[0, ids.shape[1] :])))
    return out


def completion_rewards(model: Any, prompts: Sequence[str], reward: RewardFn, *, max_new_tokens: int = 24, seed: int = 0, with_prompt: bool = True) -> torch.Tensor:
    """``[len(prompts)]``: the reward of one sampled completion per prompt (:func:`sample_completions`),
    scoring prompt + completion or (``with_prompt=False``) the completion alone."""
    completions = sample_completions(model, prompts, max_new_tokens=max_new_tokens, seed=seed)
    return torch.tensor(reward([c.prompt + c.completion if with_prompt else c.completion for c in completions]), dtype=torch.float64)


def ablation_effect(
    model: Any,
    saes: Sequence[SAE],
    groups: Mapping[str, Sequence[Sequence[int]]],
    prompts: Sequence[str],
    reward: RewardFn,
    *,
    n_random: int = 3,
    max_new_tokens: int = 24,
    n_boot: int = 1000,
    seed: int = 0,
    with_prompt: bool = True,
) -> dict[str, Any]:
    """Mean reward of completions before and after zeroing each group of features (e.g.
    ``{"related": [...], "attributed": [...]}``, one list of indices per SAE), and after zeroing
    random features of the same dictionaries, as many per dictionary as the *first* group names
    (``n_random`` draws, averaged), with 95 % bootstrap intervals (over prompts, paired) of
    each drop. All conditions complete the prompts with the same seeds.

    Returns:
        One entry per group and ``random``, each with ``n_features``, ``reward_before``,
        ``reward_after``, ``drop`` and ``drop_ci``; and ``n_prompts``.
    """
    if not groups:
        raise ValueError("ablation_effect needs at least one group of features.")
    rewards = lambda: completion_rewards(model, prompts, reward, max_new_tokens=max_new_tokens, seed=seed, with_prompt=with_prompt)  # noqa: E731
    before = rewards()

    def summary(after: torch.Tensor, n_features: int) -> dict[str, Any]:
        drop = before - after
        g = torch.Generator().manual_seed(seed)
        boots = torch.stack([drop[torch.randint(len(drop), (len(drop),), generator=g)].mean() for _ in range(n_boot)])
        return {
            "n_features": n_features, "reward_before": float(before.mean()), "reward_after": float(after.mean()),
            "drop": float(drop.mean()), "drop_ci": [float(boots.quantile(0.025)), float(boots.quantile(0.975))],
        }

    out: dict[str, Any] = {}
    for name, features in groups.items():
        with ablated(model, saes, features):
            out[name] = summary(rewards(), sum(len(f) for f in features))
    first = next(iter(groups.values()))
    rng = random.Random(f"ablation/{seed}")
    random_after = []
    for _ in range(n_random):
        with ablated(model, saes, [rng.sample(range(sae.cfg.d_sae), len(chosen)) for sae, chosen in zip(saes, first)]):
            random_after.append(rewards())
    out["random"] = {**summary(torch.stack(random_after).mean(0), sum(len(f) for f in first)), "n_draws": n_random}
    return {**out, "n_prompts": len(prompts)}


def activation_frequency(codes: torch.Tensor, predicted: torch.Tensor, related: Sequence[int], *, threshold: float = 3.0) -> dict[str, Any]:
    """Table 7: among inputs whose predicted feedback is above ``threshold``, the share where each
    related feature is active, averaged over the related features, and the same for the average
    feature.

    Args:
        codes: ``[n, D]`` concatenated codes of the inputs; ``related`` indexes its columns.
        predicted: ``[n]`` the probe's prediction for each input.
    """
    above = predicted > threshold
    result: dict[str, Any] = {"threshold": threshold, "n_inputs_above": int(above.sum())}
    if not above.any() or not related:
        return {**result, "related": None, "average": None}
    active = (codes[above] > 0).double().mean(0)
    return {**result, "related": float(active[list(related)].mean()), "average": float(active.mean())}
