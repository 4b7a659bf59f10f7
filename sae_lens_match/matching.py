"""The :class:`Matching` type: a map from the features of SAE A to those of SAE B.

One-to-one by default (SAE Match); ``one_to_one=False`` allows several A features to share a
B feature (top-1 matchers such as Feature Flow's decoder cosine).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sae_lens_match.io import atomic_path

FORMAT = "sae-lens-match/matching"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Matching:
    """Features of SAE A (source) matched to features of SAE B (target).

    Attributes:
        permutation: ``[d_sae_a]`` int64: the B feature matched to each A feature, ``-1``
            where A's feature has no match (rectangular problems, thresholded matchings).
        cost: ``[d_sae_a]`` float64: per-pair mean squared error between the matched
            features' (folded) parameters; ``nan`` where unmatched. For a composed
            matching it is the sum of the costs along the path.
        d_sae_b: number of features of B.
        source, target: JSON-serialisable descriptions of A and B (release/sae_id, path,
            hook_name, ...).
        info: how the matching was made (fold, weights, solver, timings, steps, ...).
        one_to_one: whether each B feature receives at most one A feature (checked). ``False``
            for many-to-one matchings (top-1 matchers); those have no :meth:`inverse`.
    """

    permutation: torch.Tensor
    cost: torch.Tensor
    d_sae_b: int
    source: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    one_to_one: bool = True

    def __post_init__(self) -> None:
        p, c = self.permutation, self.cost
        if p.ndim != 1 or p.dtype != torch.long or c.shape != p.shape:
            raise ValueError(f"Matching needs a 1-D int64 permutation and a cost of the same shape; got {p.dtype} {tuple(p.shape)} and {tuple(c.shape)}.")
        if (p < -1).any() or (p >= self.d_sae_b).any():
            raise ValueError(f"Matching permutation entries must lie in [-1, {self.d_sae_b}).")
        if not isinstance(self.one_to_one, bool):
            raise ValueError(f"Matching.one_to_one must be a bool, got {self.one_to_one!r}.")
        matched = p[p >= 0]
        if self.one_to_one and matched.unique().numel() != matched.numel():
            raise ValueError(
                "Matching permutation maps two A features to the same B feature; "
                "pass one_to_one=False for a many-to-one matching."
            )

    @property
    def d_sae_a(self) -> int:
        return self.permutation.shape[0]

    @property
    def matched(self) -> torch.Tensor:
        """``[d_sae_a]`` bool: which A features have a match."""
        return self.permutation >= 0

    @property
    def total_cost(self) -> float:
        """Sum of ``cost`` over matched features."""
        return float(self.cost[self.matched].sum())

    @property
    def steps(self) -> int:
        """How many layer-to-layer matchings were composed into this one."""
        return int(self.info.get("steps", 1))

    def compose(self, other: "Matching") -> "Matching":
        """A -> B (self) then B -> C (other) gives A -> C; costs add along the path.

        The result is one-to-one only when both matchings are.
        """
        if other.d_sae_a != self.d_sae_b:
            raise ValueError(f"Cannot compose: this matching ends in {self.d_sae_b} features, the next starts from {other.d_sae_a}.")
        via = self.permutation.clamp_min(0)
        permutation = torch.where(self.matched, other.permutation[via], -1)
        cost = torch.where(permutation >= 0, self.cost + other.cost[via], float("nan"))
        info = {"composed_of": [self.info, other.info], "steps": self.steps + other.steps}
        one_to_one = self.one_to_one and other.one_to_one
        return Matching(permutation, cost, other.d_sae_b, self.source, other.target, info, one_to_one)

    def inverse(self) -> "Matching":
        """The same pairs read from B to A.

        Raises:
            ValueError: for a many-to-one matching (``one_to_one=False``), which has no inverse.
        """
        if not self.one_to_one:
            raise ValueError(
                "A many-to-one matching (one_to_one=False) has no inverse: a B feature may "
                "receive several A features. Match B -> A directly instead."
            )
        permutation = torch.full((self.d_sae_b,), -1, dtype=torch.long)
        cost = torch.full((self.d_sae_b,), float("nan"), dtype=torch.float64)
        rows = self.matched.nonzero().squeeze(1)
        permutation[self.permutation[rows]] = rows
        cost[self.permutation[rows]] = self.cost[rows]
        return Matching(permutation, cost, self.d_sae_a, self.target, self.source, dict(self.info))

    def with_unmatched(self, *, max_cost: float | None = None, quantile: float | None = None) -> "Matching":
        """Declare pairs unmatched (``-1``) whose cost is above a threshold.

        SAE Match always returns a bijection; a high per-pair MSE means "no similar feature
        found" (paper Fig. 5, Appendix B). Give exactly one of:

        Args:
            max_cost: pairs with ``cost > max_cost`` become unmatched.
            quantile: in [0, 1]; pairs above this quantile of the matched costs become
                unmatched (``quantile=0.9`` keeps the 90 % cheapest).
        """
        if (max_cost is None) == (quantile is None):
            raise ValueError("Give exactly one of max_cost or quantile.")
        if quantile is not None:
            if not 0.0 <= quantile <= 1.0:
                raise ValueError(f"quantile must lie in [0, 1], got {quantile}.")
            max_cost = float(torch.quantile(self.cost[self.matched], quantile))
        keep = self.matched & (self.cost <= max_cost)
        info = {**self.info, "max_cost": max_cost}
        return replace(
            self,
            permutation=torch.where(keep, self.permutation, -1),
            cost=torch.where(keep, self.cost, float("nan")),
            info=info,
        )

    def save(self, path: str | Path) -> None:
        """Write a safetensors file (permutation, cost) whose header holds the JSON metadata."""
        metadata = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "d_sae_b": str(self.d_sae_b),
            "source": json.dumps(self.source),
            "target": json.dumps(self.target),
            "info": json.dumps(self.info, default=str),
            "one_to_one": json.dumps(self.one_to_one),
        }
        tensors = {"permutation": self.permutation.contiguous(), "cost": self.cost.contiguous()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> "Matching":
        """Read a file written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path} is not a sae-lens-match matching file.")
        tensors = load_file(str(path))
        return cls(
            permutation=tensors["permutation"],
            cost=tensors["cost"],
            d_sae_b=int(metadata["d_sae_b"]),
            source=json.loads(metadata["source"]),
            target=json.loads(metadata["target"]),
            info=json.loads(metadata["info"]),
            # files written before the field existed hold one-to-one matchings
            one_to_one=json.loads(metadata.get("one_to_one", "true")),
        )
