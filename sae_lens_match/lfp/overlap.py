"""Overlap between an ``n`` and a ``2n`` dictionary of the same layer (LFP step 4).

Features both dictionaries learn are likely real. Pairs come from the one-to-one
assignment on decoder cosine similarity, the same assignment machinery SAE Match uses
(for unit vectors, ``||a - b||^2 = 2 - 2 cos``, so the minimum-distance assignment is the
maximum-cosine one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sae_lens import SAE

from sae_lens_match.assignment import assign


@dataclass(frozen=True)
class DictionaryOverlap:
    """Pairs of features shared by a small and a large dictionary, best first.

    Attributes:
        small_index: ``[n_small]`` feature index in the *small* dictionary, sorted by cosine.
        large_index: ``[n_small]`` index of its partner in the *large* dictionary.
        cosine: ``[n_small]`` decoder cosine similarity of each pair (descending).
        mean_max_cosine: mean over small features of the best cosine with *any* large
            feature (the plain, many-to-one MMCS).
        mean_assigned_cosine: mean cosine over the one-to-one assignment.
    """

    small_index: torch.Tensor
    large_index: torch.Tensor
    cosine: torch.Tensor
    mean_max_cosine: float
    mean_assigned_cosine: float

    def top(self, k: int, dictionary: str) -> torch.Tensor:
        """Indices of the ``k`` most-shared features *in the named dictionary* (``"small"`` or ``"large"``).

        Later steps must read features from the dictionary these indices belong to.
        """
        if dictionary not in ("small", "large"):
            raise ValueError(f"dictionary must be 'small' or 'large', got {dictionary!r}.")
        return (self.small_index if dictionary == "small" else self.large_index)[:k]


def _unit_rows(w: torch.Tensor) -> torch.Tensor:
    return w.detach().float() / w.detach().float().norm(dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def dictionary_overlap(small: SAE, large: SAE, *, solver: str = "auto", chunk_size: int = 4096) -> DictionaryOverlap:
    """One-to-one decoder-cosine overlap of ``small`` (``d_sae = n``) into ``large`` (``d_sae >= n``)."""
    if small.cfg.d_in != large.cfg.d_in:
        raise ValueError(f"Dictionaries read different widths: d_in {small.cfg.d_in} vs {large.cfg.d_in}.")
    if small.cfg.d_sae > large.cfg.d_sae:
        raise ValueError(f"The small dictionary ({small.cfg.d_sae}) is wider than the large one ({large.cfg.d_sae}); swap them.")
    a, b = _unit_rows(small.W_dec), _unit_rows(large.W_dec).to(small.W_dec.device)
    best = torch.cat([(a[s : s + chunk_size] @ b.T).max(1).values for s in range(0, len(a), chunk_size)])
    result = assign(a, b, solver=solver)
    cosine = (1 - result.sq_dist / 2).float()
    order = cosine.argsort(descending=True)
    return DictionaryOverlap(
        small_index=order,
        large_index=result.cols[order],
        cosine=cosine[order],
        mean_max_cosine=float(best.mean()),
        mean_assigned_cosine=float(cosine.mean()),
    )
