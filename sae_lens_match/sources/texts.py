"""Text datasets from the Hugging Face hub: plain texts (IMDb, ...) and preference pairs (HH, toxic-dpo).

Both fail with ``HubUnavailableError`` naming the dataset when the hub cannot be reached.
"""

from __future__ import annotations

from typing import Any

from sae_lens_match.sources.hub import hub_call

PREFERENCE_DATASETS = {"hh": "Anthropic/hh-rlhf", "toxic": "unalignment/toxic-dpo-v0.2"}


def _load(name: str, split: str) -> Any:
    import datasets

    with hub_call("dataset", name):
        return datasets.load_dataset(name, split=split)


def load_texts(dataset: str, *, split: str = "train", n: int | None = None, column: str = "text") -> list[str]:
    """The first ``n`` texts of a hub dataset's ``column`` (e.g. ``load_texts("imdb", n=1000)``)."""
    ds = _load(dataset, split)
    if column not in ds.column_names:
        raise ValueError(f"Dataset {dataset!r} has no column {column!r}; it has {ds.column_names}.")
    if n is not None:
        ds = ds.select(range(min(n, len(ds))))
    return list(ds[column])


def load_preference_dataset(name: str, *, split: str = "train", n: int | None = None) -> Any:
    """A hub preference dataset as ``prompt``/``chosen``/``rejected`` (``"hh"``, ``"toxic"`` or a hub name).

    Anthropic HH stores whole dialogues in ``chosen``/``rejected``; the shared dialogue up to
    the last ``"\\n\\nAssistant:"`` becomes the prompt.
    """
    ds = _load(PREFERENCE_DATASETS.get(name, name), split)
    if n is not None:
        ds = ds.select(range(min(n, len(ds))))
    if "prompt" not in ds.column_names:
        ds = ds.map(_split_dialogue)
    return ds.select_columns(["prompt", "chosen", "rejected"])


def _split_dialogue(row: dict[str, str]) -> dict[str, str]:
    marker = "\n\nAssistant:"
    cut = row["chosen"].rfind(marker) + len(marker)
    return {"prompt": row["chosen"][:cut], "chosen": row["chosen"][cut:], "rejected": row["rejected"][row["rejected"].rfind(marker) + len(marker) :]}
