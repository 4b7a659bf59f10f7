"""Sparsity penalties other than SAELens's built-in L1, shared by the tied and sqrt SAEs.

The square root is taken of ``f + eps`` (minus ``sqrt(eps)``) so its gradient stays finite
where a feature is exactly 0. SAELens's ``lp_norm=0.5`` is ``(sum sqrt|f|)^2``, a different
penalty.
"""

from __future__ import annotations

from typing import Literal

import torch
from sae_lens.saes.sae import TrainStepInput

SparsityPenalty = Literal["l1", "sqrt"]


def sparsity_penalty(
    feature_acts: torch.Tensor, W_dec: torch.Tensor, kind: SparsityPenalty, eps: float = 1e-6
) -> torch.Tensor:
    """Per-example penalty ``[batch]`` on decoder-norm-weighted activations ``[batch, d_sae]``."""
    weighted = feature_acts * W_dec.norm(dim=1)
    if kind == "l1":
        return weighted.sum(-1)
    if kind == "sqrt":
        return ((weighted + eps).sqrt() - eps**0.5).sum(-1)
    raise ValueError(f"Unknown sparsity penalty {kind!r}; choose 'l1' or 'sqrt'.")


class PenaltyLoss:
    """Mixin for a SAELens training SAE: replaces the standard L1 term by
    :func:`sparsity_penalty` of kind ``penalty_kind``, weighted by the ``l1`` coefficient."""

    penalty_kind: SparsityPenalty

    def calculate_aux_loss(
        self, step_input: TrainStepInput, feature_acts: torch.Tensor, hidden_pre: torch.Tensor, sae_out: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        penalty = sparsity_penalty(feature_acts, self.W_dec, self.penalty_kind, self.cfg.sqrt_eps)
        return {f"{self.penalty_kind}_loss": (step_input.coefficients["l1"] * penalty).mean()}
