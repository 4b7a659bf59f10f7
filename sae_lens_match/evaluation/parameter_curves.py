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
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.evaluation.inputs import check_stack
from sae_lens_match.evaluation.results import EvalResult
from sae_lens_match.matching.config import TERMS, MatchConfig
from sae_lens_match.matching.match import match
from sae_lens_match.matching.matching import Matching, sae_description
from sae_lens_match.matching.parameters import parameter_mse

VARIANTS = ("vanilla", "matched", "folded+matched")


@dataclass(frozen=True)
class ParameterCurvesConfig:
    """What :func:`run_parameter_curves` scores.

    Attributes:
        terms: which parameters to score separately. A term an SAE lacks (``b_enc`` of a
            Gated SAE) gives ``nan``.
        match: how the matched variants are made (its ``fold`` is set per variant); its
            ``nonpositive_threshold`` also applies to the scoring.
    """

    terms: tuple[str, ...] = TERMS
    match: MatchConfig = field(default_factory=MatchConfig)


@dataclass(frozen=True)
class ParameterCurvesRow:
    """Mean and median folded MSE of one term for one pairing of one layer pair."""

    pair: int
    variant: str
    term: str
    mean_mse: float
    median_mse: float
    n_matched: int


def identity_matching(sae_a: SAE, sae_b: SAE) -> Matching:
    """Feature ``i`` of A with feature ``i`` of B (``-1`` beyond B's width): the paper's "vanilla"."""
    perm = torch.arange(sae_a.cfg.d_sae)
    perm = torch.where(perm < sae_b.cfg.d_sae, perm, -1)
    cost = torch.full((sae_a.cfg.d_sae,), float("nan"), dtype=torch.float64)
    return Matching(perm, cost, sae_b.cfg.d_sae, sae_description(sae_a), sae_description(sae_b), method="vanilla")


def run_parameter_curves(
    saes: Sequence[SAE],
    config: ParameterCurvesConfig | None = None,
    *,
    extra: Mapping[str, Sequence[Matching]] | None = None,
    progress: bool = True,
) -> EvalResult[ParameterCurvesRow]:
    """Mean folded-parameter MSE per (layer pair, pairing, term).

    Args:
        saes: SAEs at increasing depth; pair ``i`` is ``(saes[i], saes[i+1])``.
        config: :class:`ParameterCurvesConfig`.
        extra: more pairings to score, name -> one matching per pair (checked against ``saes``).
        progress: show a progress bar.
    """
    config = config or ParameterCurvesConfig()
    check_stack(saes, extra or {})
    rows: list[ParameterCurvesRow] = []
    for i in tqdm(range(len(saes) - 1), desc="parameter MSE curves", disable=not progress):
        a, b = saes[i], saes[i + 1]
        variants = {
            "vanilla": identity_matching(a, b),
            "matched": match(a, b, replace(config.match, fold=False)),
            "folded+matched": match(a, b, replace(config.match, fold=True)),
            **{name: ms[i] for name, ms in (extra or {}).items()},
        }
        for variant, m in variants.items():
            for term in config.terms:
                mse = _term_mse(a, b, m.permutation, term, config.match)
                valid = mse[~torch.isnan(mse)]
                rows.append(
                    ParameterCurvesRow(
                        pair=i, variant=variant, term=term,
                        mean_mse=float(valid.mean()) if valid.numel() else math.nan,
                        median_mse=float(valid.median()) if valid.numel() else math.nan,
                        n_matched=int(valid.numel()),
                    )
                )
    return EvalResult("parameter_curves", config, tuple(rows))


def _term_mse(a: SAE, b: SAE, perm: torch.Tensor, term: str, config: MatchConfig) -> torch.Tensor:
    if getattr(a, term, None) is None or getattr(b, term, None) is None:
        return torch.full((a.cfg.d_sae,), math.nan, dtype=torch.float64)
    return parameter_mse(a, b, perm, config, fold=True, weights={term: 1.0})
