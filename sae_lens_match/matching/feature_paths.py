"""Feature paths: following features through many layers by composing matchings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Sequence

import torch

from sae_lens_match.matching.matching import Matching


def compose_all(matchings: Sequence[Matching]) -> Matching:
    """``P(0 -> n) = P(n-1 -> n) o ... o P(0 -> 1)``; costs add along each path."""
    if not matchings:
        raise ValueError("compose_all needs at least one matching.")
    return reduce(Matching.compose, matchings)


@dataclass(frozen=True)
class FeaturePaths:
    """Where each feature of the first layer goes in each later layer.

    Attributes:
        indices: ``[n_layers, d_sae_0]`` int64; row ``l`` is the feature index at layer ``l``
            (row 0 is ``arange``), ``-1`` once the path has ended.
        cumulative_cost: ``[n_layers, d_sae_0]`` float64; summed matching cost up to layer
            ``l`` (0 at layer 0, ``nan`` once the path has ended).
    """

    indices: torch.Tensor
    cumulative_cost: torch.Tensor

    def path(self, feature: int) -> list[tuple[int, int, float]]:
        """``(layer, index, cumulative_cost)`` for each layer the feature reaches."""
        column = self.indices[:, feature]
        return [
            (layer, int(column[layer]), float(self.cumulative_cost[layer, feature]))
            for layer in range(len(column))
            if column[layer] >= 0
        ]


def feature_paths(matchings: Sequence[Matching]) -> FeaturePaths:
    """Follow every feature of layer 0 through consecutive ``matchings`` (layer l -> l+1)."""
    if not matchings:
        raise ValueError("feature_paths needs at least one matching.")
    d0 = matchings[0].d_sae_a
    indices = [torch.arange(d0)]
    costs = [torch.zeros(d0, dtype=torch.float64)]
    composed: Matching | None = None
    for m in matchings:
        composed = m if composed is None else composed.compose(m)
        indices.append(composed.permutation)
        costs.append(composed.cost)
    return FeaturePaths(torch.stack(indices), torch.stack(costs))
