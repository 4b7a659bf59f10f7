"""How well the world language model learned its corpus: loss, sentiment from context, samples."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import GPTNeoXForCausalLM, PreTrainedTokenizerFast

from sae_lens_match.sources.training import seeded
from sae_lens_match.world.corpus import Review
from sae_lens_match.world.lexicon import vocabulary


@torch.no_grad()
def mean_loss(model: GPTNeoXForCausalLM, rows: torch.Tensor, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy (nats) of ``model`` on ``rows [n, ctx]``."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        loss = model(input_ids=batch, labels=batch).loss
        n = batch.shape[0] * (batch.shape[1] - 1)
        total, count = total + loss.item() * n, count + n
    model.train(was_training)
    return total / count


def _first_token_ids(tokenizer: PreTrainedTokenizerFast, words: Sequence[str]) -> torch.Tensor:
    return torch.tensor([tokenizer.encode(" " + w, add_special_tokens=False)[0] for w in words])


@torch.no_grad()
def sentiment_margin(
    model: GPTNeoXForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    held_out: Sequence[Review],
    max_prompts: int = 400,
) -> float:
    """Does the context tell the model which polarity of adjective comes next?

    For each adjective slot of the held-out reviews (not negated, mid-sentence), the
    model reads the review up to the slot and we take the share of positive adjectives
    in the probability it gives to all corpus adjectives. The margin is the mean share
    where the true word is positive minus the mean share where it is negative: 0 for a
    model blind to context, 1 for one that always knows.
    """
    vocab = vocabulary()
    adjectives = {w.word: w for pol in (1, -1) for w in vocab.adjectives[pol]}
    pos_ids = _first_token_ids(tokenizer, [w.word for w in vocab.adjectives[1]])
    neg_ids = _first_token_ids(tokenizer, [w.word for w in vocab.adjectives[-1]])
    prompts: list[tuple[str, int]] = []
    for review in held_out:
        for span in review.words:
            if span.word in adjectives and not span.negated and review.text[span.start - 1] == " ":
                prompts.append((review.text[: span.start - 1], 1 if span.valence > 0 else -1))
    prompts = prompts[:max_prompts]
    if not prompts or not any(s > 0 for _, s in prompts) or not any(s < 0 for _, s in prompts):
        raise ValueError("held_out has too few adjective slots of both polarities")
    shares = {1: [], -1: []}
    model.eval()
    for text, sign in prompts:
        ids = tokenizer(text, return_tensors="pt")["input_ids"][:, -model.config.max_position_embeddings :]
        probs = model(input_ids=ids).logits[0, -1].softmax(-1)
        p_pos, p_neg = probs[pos_ids].sum(), probs[neg_ids].sum()
        shares[sign].append((p_pos / (p_pos + p_neg)).item())
    return sum(shares[1]) / len(shares[1]) - sum(shares[-1]) / len(shares[-1])


@torch.no_grad()
def sample_completions(
    model: GPTNeoXForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    prefixes: Sequence[str],
    max_new_tokens: int = 40,
    seed: int = 0,
    temperature: float = 1.0,
) -> list[str]:
    """Sample one completion per prefix with Hugging Face ``generate``.

    Plain sampling (no top-k/top-p) at ``temperature``, one prefix at a time so results
    do not depend on padding, under a forked RNG seeded with ``seed``. Returns the text
    after each prefix, special tokens dropped.
    """
    out = []
    model.eval()
    with seeded(seed):
        for prefix in prefixes:
            ids = tokenizer(prefix, return_tensors="pt")["input_ids"]
            room = model.config.max_position_embeddings - ids.shape[1]
            generated = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                top_k=0,
                top_p=1.0,
                temperature=temperature,
                max_new_tokens=max(1, min(max_new_tokens, room)),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            out.append(tokenizer.decode(generated[0, ids.shape[1] :], skip_special_tokens=True))
    return out
