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
    """Rows scaled to unit norm; a zero row stays zero (cosine 0 with everything)."""
    w = w.detach().float()
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _max_cosine_assignment(a: torch.Tensor, b: torch.Tensor, solver: str) -> torch.Tensor:
    """``[n_a]`` partner in ``b`` of each row of ``a`` maximising the total cosine, for unit or zero rows.

    For unit rows ``|a - b|^2 = 2 - 2 cos``, so the minimum-distance assignment is the
    maximum-cosine one; a zero row would look like cosine 0.5 to it, so zero rows are
    left out and take the columns left over (cosine 0).
    """
    live_a, live_b = (a.norm(dim=1) > 0).nonzero().squeeze(1), (b.norm(dim=1) > 0).nonzero().squeeze(1)
    cols = torch.full((a.shape[0],), -1, dtype=torch.long)
    if len(live_a) and len(live_b):
        found = assign(a[live_a], b[live_b], solver=solver).cols
        cols[live_a.cpu()] = torch.where(found >= 0, live_b.cpu()[found.clamp_min(0)], -1)
    free = torch.ones(b.shape[0], dtype=torch.bool)
    free[cols[cols >= 0]] = False
    left = (cols < 0).nonzero().squeeze(1)
    cols[left] = free.nonzero().squeeze(1)[: len(left)]
    return cols


@torch.no_grad()
def dictionary_overlap(small: SAE, large: SAE, *, solver: str = "auto", chunk_size: int = 4096) -> DictionaryOverlap:
    """One-to-one decoder-cosine overlap of ``small`` (``d_sae = n``) into ``large`` (``d_sae >= n``).

    A feature with a zero decoder row has no direction: its cosine with everything is 0.
    """
    if small.cfg.d_in != large.cfg.d_in:
        raise ValueError(f"Dictionaries read different widths: d_in {small.cfg.d_in} vs {large.cfg.d_in}.")
    if small.cfg.d_sae > large.cfg.d_sae:
        raise ValueError(f"The small dictionary ({small.cfg.d_sae}) is wider than the large one ({large.cfg.d_sae}); swap them.")
    a, b = _unit_rows(small.W_dec), _unit_rows(large.W_dec).to(small.W_dec.device)
    best = torch.cat([(a[s : s + chunk_size] @ b.T).max(1).values for s in range(0, len(a), chunk_size)])
    cols = _max_cosine_assignment(a, b, solver)
    cosine = (a * b[cols.to(b.device)]).sum(1).cpu()
    order = cosine.argsort(descending=True)
    return DictionaryOverlap(
        small_index=order,
        large_index=cols[order],
        cosine=cosine[order],
        mean_max_cosine=float(best.mean()),
        mean_assigned_cosine=float(cosine.mean()),
    )
