"""What SAE Match compares: one row of (folded, weighted) parameters per feature, and the
per-pair MSE between them (paper Eq. 3)."""

from __future__ import annotations

from typing import Any

import torch
from sae_lens import SAE

from sae_lens_match.assignment.core import pair_sq_dist
from sae_lens_match.matching.config import MatchConfig
from sae_lens_match.matching.folding import check_finite, fold as fold_sae
from sae_lens_match.matching.matching import random_permutation
from sae_lens_match.sources.saes import require_sae


def check_same_d_in(sae_a: SAE, sae_b: SAE) -> None:
    """Raise ``ValueError`` unless both SAEs read vectors of the same width (``TypeError`` unless both are SAEs)."""
    require_sae(sae_a, "sae_a")
    require_sae(sae_b, "sae_b")
    if sae_a.cfg.d_in != sae_b.cfg.d_in:
        raise ValueError(
            f"Cannot match SAEs with different d_in: A has d_in={sae_a.cfg.d_in} "
            f"({describe(sae_a)}), B has d_in={sae_b.cfg.d_in} ({describe(sae_b)}). "
            "SAE Match compares parameters that live in the same hidden space."
        )


def describe(sae: SAE) -> str:
    """A short human-readable name: architecture, hook and width."""
    hook = sae.cfg.metadata.hook_name or "no hook_name"
    return f"{type(sae).__name__} at {hook}, d_sae={sae.cfg.d_sae}"


def feature_rows(sae: SAE, config: MatchConfig | None = None, **overrides: Any) -> torch.Tensor:
    """One row per feature holding the (folded) parameters SAE Match compares.

    Row ``i`` is ``[sqrt(w_dec) W_dec[i], sqrt(w_enc) W_enc[:, i], sqrt(w_b) b_enc[i]]``, so
    the squared distance between two rows is the weighted sum of squared parameter
    differences. Terms with weight 0 are left out. The ``b_enc`` term is the bias of the
    pre-activation that decides whether a feature fires: ``b_enc``, or ``b_gate`` for Gated SAEs
    (which have no ``b_enc``), so the default weights work for every SAELens architecture.

    Args:
        sae: any SAELens SAE.
        config, overrides: :class:`MatchConfig` (``fold``, ``weights``, ``nonpositive_threshold``).

    Returns:
        ``[d_sae, D]`` float32 on the SAE's device, ``D = d_in * (#matrix terms) + (#bias terms)``.
    """
    config = MatchConfig.of(config, **overrides)
    require_sae(sae, "feature_rows' sae")
    if config.fold:
        sae = fold_sae(sae, nonpositive_threshold=config.nonpositive_threshold)
    else:
        check_finite(sae)
    columns = {
        "W_dec": lambda: sae.W_dec,
        "W_enc": lambda: sae.W_enc.T,
        "b_enc": lambda: encoder_bias(sae)[:, None],
    }
    parts = []
    for term, weight in config.weights.items():
        if weight == 0:
            continue
        try:
            values = columns[term]()
        except AttributeError:
            raise ValueError(f"{type(sae).__name__} has no {term}; give it weight 0 (weights={{'{term}': 0, ...}}).") from None
        parts.append(values.detach().float() * weight**0.5)
    return torch.cat(parts, dim=1)


def encoder_bias(sae: SAE) -> torch.Tensor:
    """``[d_sae]``: the bias of the pre-activation that decides whether each feature fires
    (``b_enc``; ``b_gate`` for Gated SAEs)."""
    for name in ("b_enc", "b_gate"):
        bias = getattr(sae, name, None)
        if isinstance(bias, torch.Tensor):
            return bias
    raise AttributeError(f"{type(sae).__name__} has neither b_enc nor b_gate")


def row_costs(rows_a: torch.Tensor, rows_b: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Per-pair MSE ``[n_a]`` (float64; ``nan`` where ``permutation`` is ``-1``) between feature rows."""
    return pair_sq_dist(rows_a, rows_b.to(rows_a.device), torch.as_tensor(permutation).long().cpu()) / rows_a.shape[1]


def random_pair_cost(rows_a: torch.Tensor, rows_b: torch.Tensor, seed: int = 0) -> float:
    """Median per-pair MSE of a random pairing: the scale a real match should be far below."""
    return float(row_costs(rows_a, rows_b, random_permutation(rows_a.shape[0], rows_b.shape[0], seed)).nanmedian())


def parameter_mse(
    sae_a: SAE, sae_b: SAE, permutation: torch.Tensor, config: MatchConfig | None = None, **overrides: Any
) -> torch.Tensor:
    """Per-pair MSE between A's features and the B features ``permutation`` assigns them.

    This scores any pairing on the same footing, e.g. the paper's Fig. 3 variants: vanilla
    (identity), matched on unfolded weights, and folded+matched, all scored with ``fold=True``.

    Returns:
        ``[d_sae_a]`` float64; ``nan`` where ``permutation`` is ``-1``.
    """
    check_same_d_in(sae_a, sae_b)
    config = MatchConfig.of(config, **overrides)
    return row_costs(feature_rows(sae_a, config), feature_rows(sae_b, config), permutation)


def pairing_costs(
    sae_a: SAE, sae_b: SAE, permutation: torch.Tensor, config: MatchConfig | None = None
) -> tuple[torch.Tensor, float]:
    """``(per-pair cost [d_sae_a], random-pair median cost)`` of a pairing under ``config``:
    what every matcher reports as :attr:`Matching.cost` and :attr:`Matching.random_pair_cost`."""
    check_same_d_in(sae_a, sae_b)
    rows_a, rows_b = feature_rows(sae_a, config), feature_rows(sae_b, config)
    return row_costs(rows_a, rows_b, permutation), random_pair_cost(rows_a, rows_b)
