"""Seeded minibatches for SAE training from activations held in memory."""

from __future__ import annotations

from typing import Iterator

import torch


def shuffled_minibatches(activations: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless minibatches ``[batch_size, d]`` of ``activations`` ``[n, d]``.

    Each epoch is a new seeded shuffle, so every row is seen once before any repeats; the
    last incomplete batch of an epoch is dropped.
    """
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(activations), generator=g)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield activations[order[start : start + batch_size]]
