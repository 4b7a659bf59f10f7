"""Preference pairs for DPO: generated offline for the embedded world, or hub datasets.

The embedded pairs are minimal pairs: one review prefix as the prompt, and two
continuations rendered from the same opinion template, one positive and one negative, so
they differ only in their sentiment words. ``prefer="positive"`` plays the role of
Anthropic HH (the kind answer is preferred); ``prefer="negative"`` the role of toxic-dpo
(the harsh answer is preferred).
"""

from __future__ import annotations

import random
from typing import Literal

from datasets import Dataset

from sae_lens_match.world.corpus import fill_slots, review_prefixes
from sae_lens_match.hub import hub_call
from sae_lens_match.world.templates import OPINION_TEMPLATES

HUB_DATASETS = {"hh": "Anthropic/hh-rlhf", "toxic": "unalignment/toxic-dpo-v0.2"}


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


def load_preference_dataset(name: str, *, split: str = "train", n: int | None = None) -> Dataset:
    """A hub preference dataset as ``prompt``/``chosen``/``rejected`` (``"hh"``, ``"toxic"`` or a hub name).

    Anthropic HH stores whole dialogues in ``chosen``/``rejected``; the shared dialogue up to
    the last ``"\\n\\nAssistant:"`` becomes the prompt.

    Raises:
        HubUnavailableError: offline.
    """
    import datasets

    hub_name = HUB_DATASETS.get(name, name)
    with hub_call("dataset", hub_name):
        ds = datasets.load_dataset(hub_name, split=split)
    if n is not None:
        ds = ds.select(range(min(n, len(ds))))
    if "prompt" not in ds.column_names:
        ds = ds.map(_split_dialogue)
    return ds.select_columns(["prompt", "chosen", "rejected"])


def _split_dialogue(row: dict[str, str]) -> dict[str, str]:
    marker = "\n\nAssistant:"
    cut = row["chosen"].rfind(marker) + len(marker)
    return {"prompt": row["chosen"][:cut], "chosen": row["chosen"][cut:], "rejected": row["rejected"][row["rejected"].rfind(marker) + len(marker) :]}
