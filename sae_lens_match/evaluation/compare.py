"""All registered matchers on the same SAEs and data, side by side."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.evaluation.approximation import BASELINES, UnmatchedRule, layer_pruning
from sae_lens_match.evaluation.coactivation import coactivations, random_matching
from sae_lens_match.evaluation.data import TokenSet
from sae_lens_match.matching import Matching

DEFAULT_MATCHERS = ("sae_match", "cosine_top1", "activation_correlation")


def compute_matchings(
    saes: Sequence[SAE],
    matchers: Sequence[str] = DEFAULT_MATCHERS,
    *,
    data: TokenSet | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    skip_data_matchers: bool = False,
    progress: bool = True,
) -> dict[str, list[Matching]]:
    """Run each registered matcher on every consecutive pair of ``saes``.

    Args:
        saes: SAEs at increasing depth.
        matchers: registry names (:data:`sae_lens_match.matchers.MATCHERS`).
        data: tokens for data-based matchers. Use different tokens from the evaluation's
            to avoid judging a data-based matcher on the data it was fitted to.
        options: per-matcher keyword options, e.g. ``{"sae_match": {"weights": {"W_dec": 1}}}``.
        skip_data_matchers: without ``data``, leave data-based matchers out instead of raising.

    Returns:
        name -> one matching per pair (``[i]`` maps ``saes[i]`` to ``saes[i+1]``).
    """
    from sae_lens_match.matchers import get_matcher  # the registry imports this package

    specs = [get_matcher(name) for name in matchers]
    if data is None:
        missing = [s.name for s in specs if s.needs_data]
        if missing and not skip_data_matchers:
            raise ValueError(f"Matchers {missing} are data-based: pass data=TokenSet(model, tokens) (or skip_data_matchers=True).")
        specs = [s for s in specs if not s.needs_data]
    out: dict[str, list[Matching]] = {s.name: [] for s in specs}
    pairs = range(len(saes) - 1)
    for i in tqdm(pairs, desc="matching (all matchers)", disable=not progress):
        for spec in specs:
            out[spec.name].append(spec(saes[i], saes[i + 1], data=data, **dict((options or {}).get(spec.name, {}))))
    return out


def agreement_rate(m: Matching, reference: Matching) -> float:
    """Fraction of A features matched by both that go to the same B feature."""
    both = m.matched & reference.matched
    if not both.any():
        return math.nan
    return float((m.permutation[both] == reference.permutation[both]).double().mean())


def compare_matchers(
    saes: Sequence[SAE],
    matchings: Mapping[str, Sequence[Matching]],
    *,
    data: TokenSet | None = None,
    reference: str | None = "sae_match",
    pruning: bool = True,
    baselines: Sequence[str] = BASELINES,
    fold: bool = True,
    quantile: float | None = None,
    unmatched: UnmatchedRule = "own_decoder",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (layer pair, method) with everything that judges a matching.

    Columns for every matcher: ``mean_cost`` / ``median_cost`` (folded parameter MSE of the
    matched pairs; the same quantity for every matcher), ``n_matched``,
    ``n_distinct_targets``, ``one_to_one``, ``mean_score`` and ``score`` (the matcher's own
    similarity), ``agreement`` with ``reference``. With ``data``: ``matching_score``
    (co-activation Jaccard), ``p_b_given_a``, ``correlation`` and their ``random_*`` chance
    levels; with ``pruning`` also ``delta_loss`` and ``explained_variance`` of the
    hidden-state approximation, plus rows for the ``baselines``.
    """
    n_pairs = len(saes) - 1
    for name, ms in matchings.items():
        if len(ms) != n_pairs:
            raise ValueError(f"matchings[{name!r}] has {len(ms)} matchings for {n_pairs} SAE pairs.")
    if reference is not None and reference not in matchings:
        reference = None
    rows: list[dict[str, Any]] = []
    pruning_rows: dict[tuple[int, str], dict[str, Any]] = {}
    if data is not None and pruning:
        for r in layer_pruning(data, saes, matchings, baselines=baselines, fold=fold, quantile=quantile, unmatched=unmatched):
            pruning_rows[(r["pair"], r["method"])] = r
    for i in range(n_pairs):
        co = {}
        if data is not None:
            some = next(iter(matchings.values()))[i]
            co = coactivations(data, saes[i], saes[i + 1], {**{n: ms[i] for n, ms in matchings.items()}, "__random__": random_matching(some, seed)})
            chance = co.pop("__random__").summary("random_")
        for name, ms in matchings.items():
            m = ms[i]
            cost = m.cost[m.matched & ~torch.isnan(m.cost)]
            row: dict[str, Any] = {
                "pair": i,
                "method": name,
                "kind": "matcher",
                "source_hook": saes[i].cfg.metadata.hook_name,
                "target_hook": saes[i + 1].cfg.metadata.hook_name,
                "mean_cost": float(cost.mean()) if cost.numel() else math.nan,
                "median_cost": float(cost.median()) if cost.numel() else math.nan,
                "n_matched": int(m.matched.sum()),
                "n_distinct_targets": int(m.permutation[m.matched].unique().numel()),
                "one_to_one": m.one_to_one,
                "score": m.info.get("score"),
                "mean_score": m.info.get("mean_score", math.nan),
                "agreement": agreement_rate(m, matchings[reference][i]) if reference else math.nan,
            }
            if name in co:
                row.update(co[name].summary())
                row.update(chance)
            if (i, name) in pruning_rows:
                p = pruning_rows[(i, name)]
                row.update(delta_loss=p["delta_loss"], explained_variance=p["explained_variance"], clean_loss=p["clean_loss"])
            rows.append(row)
        for b in baselines if pruning_rows else ():
            p = pruning_rows[(i, b)]
            rows.append(
                {
                    "pair": i, "method": b, "kind": "baseline", "source_hook": p["source_hook"], "target_hook": p["target_hook"],
                    "delta_loss": p["delta_loss"], "explained_variance": p["explained_variance"], "clean_loss": p["clean_loss"],
                }
            )
    return rows
