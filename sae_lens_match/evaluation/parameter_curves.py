"""Parameter MSE per layer pair for vanilla / matched / folded+matched (paper Fig. 3).

For each consecutive pair of SAEs, three pairings of features:

- ``vanilla``: the identity (feature ``i`` with feature ``i``; for different widths the
  first ``min(d_a, d_b)`` features);
- ``matched``: SAE Match on unfolded weights;
- ``folded+matched``: SAE Match on folded weights (the method);

plus any extra matchings you pass (e.g. other matchers). Every pairing is scored the same
way, as in the paper: the per-pair MSE of the *folded* parameters, separately for the
decoder (``W_dec``), the encoder (``W_enc``) and ``b_enc``, averaged over matched features.
Expected ordering: vanilla > matched > folded+matched.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.folding import NonPositivePolicy
from sae_lens_match.match import match, parameter_mse
from sae_lens_match.matching import Matching

TERMS = ("W_dec", "W_enc", "b_enc")
VARIANTS = ("vanilla", "matched", "folded+matched")


def identity_matching(d_sae_a: int, d_sae_b: int) -> Matching:
    """Feature ``i`` of A with feature ``i`` of B (``-1`` beyond B's width)."""
    perm = torch.arange(d_sae_a)
    perm = torch.where(perm < d_sae_b, perm, -1)
    cost = torch.full((d_sae_a,), float("nan"), dtype=torch.float64)
    return Matching(perm, cost, d_sae_b, info={"method": "vanilla"})


def parameter_mse_curves(
    saes: Sequence[SAE],
    *,
    extra: Mapping[str, Sequence[Matching]] | None = None,
    terms: Sequence[str] = TERMS,
    match_weights: Mapping[str, float] | None = None,
    solver: str = "auto",
    nonpositive_threshold: NonPositivePolicy = "error",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Mean folded-parameter MSE per (layer pair, pairing, term).

    Args:
        saes: SAEs at increasing depth; pair ``i`` is ``(saes[i], saes[i+1])``.
        extra: more pairings to score, name -> one matching per pair.
        terms: which parameters to score separately (``W_dec``, ``W_enc``, ``b_enc``). A term
            an SAE lacks (``b_enc`` of a Gated SAE) gives ``nan``.
        match_weights: term weights used to *make* the matched variants (default: SAE Match's).
        solver, nonpositive_threshold: passed to :func:`sae_lens_match.match` / scoring.

    Returns:
        Rows ``{"pair", "variant", "term", "mean_mse", "median_mse", "n_matched"}``.
    """
    if len(saes) < 2:
        raise ValueError(f"parameter_mse_curves needs at least two SAEs, got {len(saes)}.")
    for name, ms in (extra or {}).items():
        if len(ms) != len(saes) - 1:
            raise ValueError(f"extra[{name!r}] has {len(ms)} matchings for {len(saes) - 1} SAE pairs.")
    rows: list[dict[str, Any]] = []
    for i in tqdm(range(len(saes) - 1), desc="parameter MSE curves", disable=not progress):
        a, b = saes[i], saes[i + 1]
        kw = dict(weights=match_weights, solver=solver, nonpositive_threshold=nonpositive_threshold)
        variants = {
            "vanilla": identity_matching(a.cfg.d_sae, b.cfg.d_sae),
            "matched": match(a, b, fold=False, **kw),
            "folded+matched": match(a, b, fold=True, **kw),
            **{name: ms[i] for name, ms in (extra or {}).items()},
        }
        for variant, m in variants.items():
            for term in terms:
                mse = _term_mse(a, b, m.permutation, term, nonpositive_threshold)
                valid = mse[~torch.isnan(mse)]
                rows.append(
                    {
                        "pair": i,
                        "variant": variant,
                        "term": term,
                        "mean_mse": float(valid.mean()) if valid.numel() else math.nan,
                        "median_mse": float(valid.median()) if valid.numel() else math.nan,
                        "n_matched": int(valid.numel()),
                    }
                )
    return rows


def _term_mse(a: SAE, b: SAE, perm: torch.Tensor, term: str, policy: NonPositivePolicy) -> torch.Tensor:
    if getattr(a, term, None) is None or getattr(b, term, None) is None:
        return torch.full((a.cfg.d_sae,), math.nan, dtype=torch.float64)
    return parameter_mse(a, b, perm, fold=True, weights={term: 1.0}, nonpositive_threshold=policy)
