"""SAE Match: the minimum-MSE one-to-one matching between two SAEs' features (paper Eq. 3)."""

from __future__ import annotations

import time
from typing import Any, Mapping

from sae_lens import SAE

from sae_lens_match.assignment import assign
from sae_lens_match.matching.config import MatchConfig
from sae_lens_match.matching.matching import Matching, sae_description
from sae_lens_match.matching.parameters import check_same_d_in, feature_rows, random_pair_cost


def match(
    sae_a: SAE,
    sae_b: SAE,
    config: MatchConfig | None = None,
    *,
    source: Mapping[str, Any] | None = None,
    target: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Matching:
    """Match the features of ``sae_a`` to those of ``sae_b`` with minimal total parameter MSE.

    The exact solution of the linear assignment problem on the (folded) parameters. With
    different widths the smaller side is fully matched; A features left over get ``-1``.

    Args:
        sae_a, sae_b: SAELens SAEs over the same ``d_in`` (typically consecutive layers).
        config: a :class:`MatchConfig` (default: fold, W_dec + W_enc + b_enc, solver "auto").
        source, target: extra description of A and B stored in the result (release, path, ...).
        overrides: :class:`MatchConfig` fields replacing ``config``'s, e.g. ``fold=False``,
            ``weights={"W_dec": 1}``, ``solver="sparse"``.

    Returns:
        A :class:`Matching` whose ``cost`` is the per-pair MSE over the compared parameters.
    """
    config = MatchConfig.of(config, **overrides)
    check_same_d_in(sae_a, sae_b)
    start = time.perf_counter()
    rows_a = feature_rows(sae_a, config)
    rows_b = feature_rows(sae_b, config).to(rows_a.device)
    result = assign(rows_a, rows_b, solver=config.solver, **config.solver_options)
    return Matching(
        permutation=result.cols,
        cost=result.sq_dist / rows_a.shape[1],
        d_sae_b=sae_b.cfg.d_sae,
        source={**sae_description(sae_a), **(source or {})},
        target={**sae_description(sae_b), **(target or {})},
        method="sae_match",
        random_pair_cost=random_pair_cost(rows_a, rows_b),
        info={"config": config.to_dict(), "seconds": time.perf_counter() - start, **result.info},
    )
