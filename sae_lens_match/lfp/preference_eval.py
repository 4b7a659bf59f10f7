"""Held-out measures of a preference-tuned policy against its base model (DPO vs TR-DPO).

- :func:`preference_scores`: DPO's implicit reward of each held-out answer,
  ``beta * (log pi(y|x) - log pi_base(y|x))`` summed over the answer's tokens, with the base
  model as the reference (not the moving reference TR-DPO ended with, so every recipe is
  judged against the same model); accuracy (chosen strictly above rejected) and mean margin.
- :func:`kl_to_base`: ``KL(pi || pi_base)`` per completion token on completions the policy
  samples for held-out prompts.
- :func:`completion_reward`: a text reward (default VADER) of sampled completions.

Answers are tokenized the way TRL 1.x's ``DPOTrainer`` does for plain-text pairs: the prompt
and ``prompt + answer + eos`` with the tokenizer's special tokens, the answer being every
token after their common prefix (so the EOS token counts, and the BOS does not; TRL takes the
shorter of the chosen and rejected answers' common prefixes, which differs only where tokens
merge across the end of the prompt).
Models are Hugging Face causal LMs (``FineTuneResult.model`` of
:mod:`~sae_lens_match.lfp.finetune`, or one loaded from ``run_lfp``'s ``tuned_model/``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from sae_lens_match.lfp.reward import RewardFn, RewardScope, vader_reward
from sae_lens_match.lfp.validation import Completion
from sae_lens_match.sources.training import seeded

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _evaluating(*models: Any) -> Iterator[None]:
    """Eval mode and no gradients for the block; each model's training flag restored afterwards."""
    flags = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, flag in zip(models, flags):
            m.train(flag)


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _answer_ids(tokenizer: Any, prompt: str, answer: str, add_eos: bool) -> tuple[list[int], int]:
    """``prompt + answer`` tokenized as TRL's DPO does, and where the answer starts."""
    eos = tokenizer.eos_token or ""
    text = prompt + answer + (eos if add_eos and not answer.endswith(eos) else "")
    prompt_ids, ids = tokenizer(prompt)["input_ids"], tokenizer(text)["input_ids"]
    start = 0
    while start < min(len(prompt_ids), len(ids)) and prompt_ids[start] == ids[start]:
        start += 1
    return ids, max(start, 1)  # the first token has no prediction


def _padded(sequences: Sequence[Sequence[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``ids [b, T]`` and ``mask [b, T]`` (right padding leaves real tokens' positions unchanged)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.as_tensor(list(s))
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def _token_log_probs(model: Any, sequences: Sequence[Sequence[int]], starts: Sequence[int], pad: int) -> torch.Tensor:
    """``[b, T - 1]`` float64 log-probability of each next token, 0 outside ``[start, len)`` of each sequence."""
    ids, mask = _padded(sequences, pad, _device(model))
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].double()
    picked = logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    return picked * _answer_mask(sequences, starts, picked.shape[1]).to(picked.device)


def _answer_mask(sequences: Sequence[Sequence[int]], starts: Sequence[int], width: int) -> torch.Tensor:
    """``[b, width]`` bool: True at the positions that predict an answer token (position t predicts token t + 1)."""
    mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for i, (s, start) in enumerate(zip(sequences, starts)):
        mask[i, start - 1 : len(s) - 1] = True
    return mask


def _check_length(model: Any, sequences: Sequence[Sequence[int]]) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    longest = max(len(s) for s in sequences)
    if limit is not None and longest > limit:
        raise ValueError(f"A prompt with its answer is {longest} tokens, more than the model's {limit} positions; shorten it.")


def completion_log_probs(
    model: Any, tokenizer: Any, prompts: Sequence[str], completions: Sequence[str], *, add_eos: bool = True, batch_size: int = 32
) -> torch.Tensor:
    """``[n]`` float64: ``log pi(completion | prompt)`` summed over the completion's tokens.

    Args:
        model: a Hugging Face causal LM (``model(input_ids, attention_mask).logits [b, T, d_vocab]``).
        prompts, completions: ``n`` each; a completion continues its prompt directly (no separator).
        add_eos: append the EOS token to each completion, as TRL's ``DPOTrainer`` does.

    Raises:
        ValueError: no prompts, a different number of prompts and completions, or a sequence
            longer than the model's positions.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"Need one completion per prompt, got {len(prompts)} prompts and {len(completions)} completions.")
    if not prompts:
        raise ValueError("completion_log_probs needs at least one prompt.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    encoded = [_answer_ids(tokenizer, p, c, add_eos) for p, c in zip(prompts, completions)]
    _check_length(model, [ids for ids, _ in encoded])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    with _evaluating(model):
        for i in range(0, len(encoded), batch_size):
            batch = encoded[i : i + batch_size]
            out.append(_token_log_probs(model, [ids for ids, _ in batch], [s for _, s in batch], pad).sum(1).cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class PreferenceScores:
    """DPO's implicit rewards of held-out pairs, with the base model as the reference.

    Attributes:
        chosen_reward, rejected_reward: ``[n]`` float64, ``beta * (log pi(y|x) - log pi_base(y|x))``.
        accuracy: share of pairs with ``chosen_reward > rejected_reward`` (ties count as wrong,
            as in TRL's ``rewards/accuracies``; so the base model against itself scores 0).
        margin: mean of ``chosen_reward - rejected_reward``.
    """

    chosen_reward: torch.Tensor
    rejected_reward: torch.Tensor
    accuracy: float
    margin: float

    @property
    def n(self) -> int:
        return len(self.chosen_reward)


def _columns(pairs: Any) -> tuple[list[str], list[str], list[str]]:
    """``prompt``, ``chosen`` and ``rejected`` of a ``datasets.Dataset`` or a mapping of lists, checked."""
    try:
        prompts, chosen, rejected = (list(pairs[k]) for k in ("prompt", "chosen", "rejected"))
    except (KeyError, TypeError) as e:
        raise ValueError(f"Preference pairs need columns prompt, chosen and rejected ({e!r}).") from None
    if not (len(prompts) == len(chosen) == len(rejected)):
        raise ValueError(f"Preference columns differ in length: {len(prompts)} prompts, {len(chosen)} chosen, {len(rejected)} rejected.")
    if not prompts:
        raise ValueError("No preference pairs to score.")
    return prompts, chosen, rejected


def preference_scores(policy: Any, base: Any, tokenizer: Any, pairs: Any, *, beta: float = 0.1, batch_size: int = 32) -> PreferenceScores:
    """Held-out preference accuracy and reward margin of ``policy`` with ``base`` as the reference.

    Args:
        policy, base: Hugging Face causal LMs with the same tokenizer.
        pairs: ``n`` pairs, a ``datasets.Dataset`` or a mapping with ``prompt``, ``chosen``, ``rejected``.
        beta: DPO's inverse temperature; it scales rewards and margin, never the accuracy.

    Raises:
        ValueError: missing columns, columns of different lengths, no pairs, or ``beta <= 0``.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}.")
    prompts, chosen, rejected = _columns(pairs)
    rewards = []
    for answers in (chosen, rejected):
        own = completion_log_probs(policy, tokenizer, prompts, answers, batch_size=batch_size)
        ref = completion_log_probs(base, tokenizer, prompts, answers, batch_size=batch_size)
        rewards.append(beta * (own - ref))
    good, bad = rewards
    return PreferenceScores(good, bad, float((good > bad).double().mean()), float((good - bad).mean()))


def sample_completions(
    model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 24, seed: int = 0, temperature: float = 1.0
) -> list[Completion]:
    """One completion per prompt from a Hugging Face causal LM, by plain sampling (no top-k or
    top-p) at ``temperature``: the counterpart of
    :func:`~sae_lens_match.lfp.validation.sample_completions` (TransformerLens models), with
    the same seeds and the same :class:`~sae_lens_match.lfp.validation.Completion` records
    (``ids [1, T]``: the prompt as the tokenizer encodes it, BOS included when it adds one,
    then the completion).

    Prompt ``i`` is sampled alone (no padding) under its own seed ``seed * 100_003 + i``, so
    two models (or one model with and without a change) are compared on the same draws,
    whatever other prompts are sampled; the caller's random state is left as it was.
    Sampling stops at the EOS token (which is kept) or after ``max_new_tokens``.

    Raises:
        ValueError: no prompts, ``max_new_tokens < 1`` or ``temperature <= 0``.
    """
    if not prompts:
        raise ValueError("sample_completions needs at least one prompt.")
    if max_new_tokens < 1 or not temperature > 0:
        raise ValueError(f"Need max_new_tokens >= 1 and temperature > 0, got {max_new_tokens}, {temperature}.")
    device, room_max = _device(model), getattr(model.config, "max_position_embeddings", None)
    out = []
    with _evaluating(model):
        for i, prompt in enumerate(tqdm(prompts, desc="sampling", leave=False)):
            ids = torch.tensor([tokenizer(prompt)["input_ids"]], device=device)
            room = max_new_tokens if room_max is None else max(1, min(max_new_tokens, room_max - ids.shape[1]))
            with seeded(seed * 100_003 + i, device):
                generated = model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0, top_p=1.0, temperature=temperature,
                    max_new_tokens=room, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                )
            out.append(Completion(generated.cpu(), ids.shape[1], prompt, tokenizer.decode(generated[0, ids.shape[1] :], skip_special_tokens=True)))
    return out


def token_kl(policy_logits: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
    """``[...]`` float64: exact ``KL(softmax(policy) || softmax(base))`` over the last axis (the vocabulary).

    Args:
        policy_logits, base_logits: ``[..., d_vocab]``, the same shape.
    """
    if policy_logits.shape != base_logits.shape:
        raise ValueError(f"Logits differ in shape: {tuple(policy_logits.shape)} and {tuple(base_logits.shape)}.")
    log_p, log_q = policy_logits.double().log_softmax(-1), base_logits.double().log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def kl_to_base(
    policy: Any, base: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 24, seed: int = 0, batch_size: int = 32
) -> float:
    """Mean ``KL(pi || pi_base)`` per completion token, on completions ``policy`` samples for ``prompts``.

    The sequence-level KL is ``E_{y ~ pi}[sum_t KL(pi(.|x, y<t) || pi_base(.|x, y<t))]``. Prefixes
    ``y<t`` are sampled from the policy (:func:`sample_completions`, seeded) and the KL of each
    next-token distribution is summed exactly over the vocabulary (:func:`token_kl`), rather than
    taking ``log pi(y_t) - log pi_base(y_t)`` of the one sampled token: both are unbiased, but
    the exact sum has lower variance (it averages out the token draw; the vocabularies here are
    small) and is never negative. The result is the sum over all sampled completion tokens
    divided by their number; 0 exactly when the two models give the same logits.

    Raises:
        ValueError: as :func:`sample_completions`, or ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    samples = sample_completions(policy, tokenizer, prompts, max_new_tokens=max_new_tokens, seed=seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, count = 0.0, 0
    with _evaluating(policy, base):
        for i in range(0, len(samples), batch_size):
            batch = samples[i : i + batch_size]
            sequences = [s.ids[0].tolist() for s in batch]
            ids, mask = _padded(sequences, pad, _device(policy))
            kl = token_kl(policy(input_ids=ids, attention_mask=mask).logits[:, :-1], base(input_ids=ids, attention_mask=mask).logits[:, :-1])
            answer = _answer_mask(sequences, [s.n_prompt for s in batch], kl.shape[1]).to(kl.device)
            total += float(kl[answer].sum())
            count += int(answer.sum())
    logger.debug("kl_to_base: %d completion tokens of %d samples", count, len(samples))
    return total / count


def completion_reward(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    reward: RewardFn = vader_reward,
    scope: RewardScope = "prefix+completion",
    max_new_tokens: int = 24,
    seed: int = 0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``[len(prompts)]`` float64: ``reward`` of one completion per prompt (:func:`sample_completions`),
    scoring the prompt with its completion (the LFP reference code, default) or the completion alone.

    Raises:
        ValueError: an unknown ``scope``, or as :func:`sample_completions`.
    """
    if scope not in ("prefix+completion", "completion"):
        raise ValueError(f"scope must be 'prefix+completion' or 'completion', got {scope!r}.")
    samples = sample_completions(model, tokenizer, prompts, max_new_tokens=max_new_tokens, seed=seed, temperature=temperature)
    texts = [s.prompt + s.completion if scope == "prefix+completion" else s.completion for s in samples]
    return torch.tensor(reward(texts), dtype=torch.float64)
