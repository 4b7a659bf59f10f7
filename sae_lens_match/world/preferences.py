"""Preference pairs for DPO on the world: minimal pairs generated offline.

Each pair is one review prefix as the prompt and two continuations rendered from the same
opinion template, one positive and one negative, so they differ only in their sentiment
words. ``prefer="positive"`` plays the role of Anthropic HH (the kind answer is preferred);
``prefer="negative"`` the role of toxic-dpo (the harsh answer is preferred).
"""

from __future__ import annotations

import random
from typing import Literal

from datasets import Dataset

from sae_lens_match.world.corpus import fill_slots, review_prefixes
from sae_lens_match.world.templates import OPINION_TEMPLATES


def preference_pairs(n: int, *, prefer: Literal["positive", "negative"] = "positive", seed: int = 0, split: str = "train") -> Dataset:
    """``n`` minimal pairs with columns ``prompt``, ``chosen``, ``rejected``, deterministic in ``seed``."""
    if prefer not in ("positive", "negative"):
        raise ValueError(f"prefer must be 'positive' or 'negative', got {prefer!r}.")
    prompts = review_prefixes(n, seed=seed, split=split)
    rows: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": []}
    for i, prompt in enumerate(prompts):
        key = f"sae-lens-match-preferences/{seed}/{split}/{i}"
        template = random.Random(key).choice(OPINION_TEMPLATES)
        # The same random stream on both sides gives the same non-sentiment slots (aspect,
        # film, intensifier): fill_slots draws equally often whatever the polarity.
        positive = fill_slots(template, +1, random.Random(key))
        negative = fill_slots(template, -1, random.Random(key))
        good, bad = (positive, negative) if prefer == "positive" else (negative, positive)
        rows["prompt"].append(prompt)
        rows["chosen"].append(" " + good.text)
        rows["rejected"].append(" " + bad.text)
    return Dataset.from_dict(rows)
