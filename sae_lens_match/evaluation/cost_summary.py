"""The cost of each layer-to-layer matching in a few numbers, and how many pairs the unmatched rule keeps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from sae_lens_match.evaluation.results import EvalResult
from sae_lens_match.matching.matching import DEFAULT_UNMATCHED, Matching, UnmatchedRule


@dataclass(frozen=True)
class CostSummaryConfig:
    """Attributes:
    unmatched_rule: which pairs count as unmatched (default: the package-wide rule)."""

    unmatched_rule: UnmatchedRule = DEFAULT_UNMATCHED


@dataclass(frozen=True)
class CostSummaryRow:
    """One matching (layer pair ``pair``): its cost statistics over matched pairs and the rule's verdict.

    Attributes:
        source, target: the SAEs (hook name, else the last part of their path or id).
        random_pair_cost: median cost of random pairs (the chance level), if known.
        unmatched_threshold, unmatched_rule: the cost above which a pair is unmatched, and why.
        fraction_matched: share of the matching's pairs at or below the threshold.
    """

    pair: int
    source: str | None
    target: str | None
    method: str
    n_matched: int
    mean_cost: float
    median_cost: float
    total_cost: float
    random_pair_cost: float | None
    unmatched_threshold: float
    unmatched_rule: str
    fraction_matched: float
    seconds: float | None


def _name(desc: Mapping[str, Any]) -> str | None:
    spec = desc.get("spec")
    return desc.get("hook_name") or (Path(str(spec).split(":")[-1]).name if spec else None)


def run_cost_summary(matchings: Sequence[Matching], config: CostSummaryConfig | None = None) -> EvalResult[CostSummaryRow]:
    """One row per matching (e.g. the result of ``match_layers``)."""
    config = config or CostSummaryConfig()
    rows = []
    for i, m in enumerate(matchings):
        cost = m.cost[m.matched]
        limit = config.unmatched_rule.threshold(m)
        rows.append(
            CostSummaryRow(
                pair=i,
                source=_name(m.source),
                target=_name(m.target),
                method=m.method,
                n_matched=int(m.matched.sum()),
                mean_cost=float(cost.mean()) if cost.numel() else math.nan,
                median_cost=float(cost.median()) if cost.numel() else math.nan,
                total_cost=m.total_cost,
                random_pair_cost=m.random_pair_cost,
                unmatched_threshold=limit,
                unmatched_rule=config.unmatched_rule.describe(),
                fraction_matched=float((cost <= limit).double().mean()) if cost.numel() else math.nan,
                seconds=m.info.get("seconds"),
            )
        )
    return EvalResult("cost_summary", config, tuple(rows))
