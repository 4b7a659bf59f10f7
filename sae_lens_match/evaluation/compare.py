"""All registered matchers on the same SAEs and data, side by side."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.evaluation.coactivation import MatchingScoreConfig, run_matching_score
from sae_lens_match.evaluation.explain.contexts import Explainer, Judge
from sae_lens_match.evaluation.explain.judging import JudgingConfig, run_judging, summarize_verdicts
from sae_lens_match.evaluation.inputs import check_held_out, check_stack
from sae_lens_match.evaluation.layer_pruning import BASELINES, LayerPruningConfig, run_layer_pruning
from sae_lens_match.evaluation.replacement import ReplacementConfig
from sae_lens_match.evaluation.results import EvalResult
from sae_lens_match.matching.config import COST_CONFIG, MatchConfig
from sae_lens_match.matching.matchers import get_matcher
from sae_lens_match.matching.matching import Matching, agreement
from sae_lens_match.matching.parameters import parameter_mse
from sae_lens_match.sources.tokens import TokenSet

DEFAULT_MATCHERS = ("sae_match", "cosine_top1", "activation_correlation")


def compute_matchings(
    saes: Sequence[SAE],
    matchers: Sequence[str] = DEFAULT_MATCHERS,
    *,
    data: TokenSet | None = None,
    config: MatchConfig | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    skip_data_matchers: bool = False,
    progress: bool = True,
) -> dict[str, list[Matching]]:
    """Run each registered matcher on every consecutive pair of ``saes``.

    Args:
        saes: SAEs at increasing depth.
        matchers: registry names (:data:`sae_lens_match.matching.matchers.MATCHERS`).
        data: tokens for data-based matchers. Evaluations refuse to judge a data-based
            matching on the tokens it was fitted on: fit on other tokens than you evaluate on.
        config: the :class:`MatchConfig` every matcher gets (SAE Match's parameters, and
            everyone's cost).
        options: per-matcher keyword options, e.g. ``{"cosine_top1": {"one_to_one": True}}``.
        skip_data_matchers: without ``data``, leave data-based matchers out instead of raising.

    Returns:
        name -> one matching per pair (``[i]`` maps ``saes[i]`` to ``saes[i+1]``).
    """
    specs = [get_matcher(name) for name in matchers]
    if data is None:
        missing = [s.name for s in specs if s.needs_data]
        if missing and not skip_data_matchers:
            raise ValueError(f"Matchers {missing} are data-based: pass data=TokenSet(model, tokens) (or skip_data_matchers=True).")
        specs = [s for s in specs if not s.needs_data]
    out: dict[str, list[Matching]] = {s.name: [] for s in specs}
    for i in tqdm(range(len(saes) - 1), desc="matching (all matchers)", disable=not progress):
        for spec in specs:
            out[spec.name].append(spec(saes[i], saes[i + 1], data=data, config=config, **dict((options or {}).get(spec.name, {}))))
    return out


@dataclass(frozen=True)
class CompareConfig:
    """What :func:`run_compare` puts side by side.

    Attributes:
        cost: the one cost definition every matcher's pairs are scored under
            (default :data:`~sae_lens_match.matching.config.COST_CONFIG`), whatever it was made with.
        replacement: layer pruning's replacement (its unmatched rule also decides
            ``fraction_matched`` and which pairs the matching score counts).
        baselines: layer-pruning baselines shown as extra rows.
        reference: matcher the others' ``agreement`` is measured against (if present).
        pruning: run layer pruning when there is data.
        judging: judge a sample of pairs (with ``run_compare(judge=...)``).
        seed: seed of the random pairing (chance level of the matching score).
    """

    cost: MatchConfig = COST_CONFIG
    replacement: ReplacementConfig = field(default_factory=ReplacementConfig)
    baselines: tuple[str, ...] = BASELINES
    reference: str | None = "sae_match"
    pruning: bool = True
    judging: JudgingConfig = field(default_factory=JudgingConfig)
    seed: int = 0


@dataclass(frozen=True)
class CompareRow:
    """One (layer pair, method): everything that judges a matching, ``None`` where not measured.

    Attributes:
        mean_cost, median_cost: cost of the matcher's pairs under ``CompareConfig.cost``.
        n_matched: pairs the matcher made; fraction_matched: the share the unmatched rule keeps.
        n_distinct_targets: distinct B features used (below ``n_matched``: many-to-one).
        score_name, mean_score: the matcher's own similarity.
        agreement: share of the reference matcher's pairs this one reproduces.
        matching_score, p_b_given_a, correlation (and ``random_*``): co-activation on data.
        delta_loss, explained_variance, clean_loss: layer pruning.
        frac_same, frac_maybe, frac_different, judge: judgements of a sample of pairs.
    """

    pair: int
    method: str
    kind: str
    source_hook: str | None
    target_hook: str | None
    mean_cost: float | None = None
    median_cost: float | None = None
    n_matched: int | None = None
    fraction_matched: float | None = None
    n_distinct_targets: int | None = None
    one_to_one: bool | None = None
    score_name: str | None = None
    mean_score: float | None = None
    agreement: float | None = None
    matching_score: float | None = None
    p_b_given_a: float | None = None
    correlation: float | None = None
    random_matching_score: float | None = None
    random_p_b_given_a: float | None = None
    random_correlation: float | None = None
    delta_loss: float | None = None
    explained_variance: float | None = None
    clean_loss: float | None = None
    frac_same: float | None = None
    frac_maybe: float | None = None
    frac_different: float | None = None
    judge: str | None = None


def run_compare(
    saes: Sequence[SAE],
    matchings: Mapping[str, Sequence[Matching]],
    *,
    data: TokenSet | None = None,
    config: CompareConfig | None = None,
    judge: Judge | None = None,
    explainer: Explainer | None = None,
) -> EvalResult[CompareRow]:
    """One row per (layer pair, method) with everything that judges a matching.

    Data-free columns for every matcher; with ``data`` also the matching score and layer
    pruning (with rows for the baselines); with ``judge`` the judged fractions.

    Raises:
        ValueError: matchings for other SAEs, or data-based matchings fitted on ``data``.
    """
    config = config or CompareConfig()
    if not matchings:
        raise ValueError("run_compare needs at least one set of matchings (compute_matchings found none to run?).")
    check_stack(saes, matchings)
    reference = config.reference if config.reference in matchings else None
    extra: dict[tuple[int, str], dict[str, Any]] = {}

    def add(rows: list[dict[str, Any]], keep: Sequence[str]) -> None:
        for r in rows:
            extra.setdefault((r["pair"], r["method"]), {}).update({k: r[k] for k in keep})

    baselines: list[dict[str, Any]] = []
    if data is not None:
        check_held_out(matchings, data)
        score = run_matching_score(data, saes, matchings, MatchingScoreConfig(config.replacement.unmatched_rule, config.seed))
        add(score.rows(), [c for c in score.rows()[0] if c not in ("pair", "method", "n_pairs_evaluated")])
        if config.pruning:
            pruning = run_layer_pruning(data, saes, matchings, LayerPruningConfig(config.replacement, config.baselines))
            add(pruning.rows(), ["delta_loss", "explained_variance", "clean_loss"])
            baselines = [r for r in pruning.rows() if r["kind"] == "baseline"]
    rows = []
    for i in range(len(saes) - 1):
        hooks = {"source_hook": saes[i].cfg.metadata.hook_name, "target_hook": saes[i + 1].cfg.metadata.hook_name}
        for name, ms in matchings.items():
            m = ms[i]
            cost = parameter_mse(saes[i], saes[i + 1], m.permutation, config.cost)
            cost = cost[m.matched & ~torch.isnan(cost)]
            kept = config.replacement.unmatched_rule.apply(m)
            rows.append(
                CompareRow(
                    pair=i, method=name, kind="matcher", **hooks,
                    mean_cost=float(cost.mean()) if cost.numel() else math.nan,
                    median_cost=float(cost.median()) if cost.numel() else math.nan,
                    n_matched=int(m.matched.sum()),
                    fraction_matched=float(kept.matched.sum()) / max(int(m.matched.sum()), 1),
                    n_distinct_targets=int(m.permutation[m.matched].unique().numel()),
                    one_to_one=m.one_to_one,
                    score_name=m.score_name,
                    mean_score=float(m.score[m.matched].mean()) if m.score is not None and m.matched.any() else None,
                    agreement=agreement(m, matchings[reference][i]) if reference else None,
                    **extra.get((i, name), {}),
                )
            )
        for b in (r for r in baselines if r["pair"] == i):
            rows.append(CompareRow(pair=i, method=b["method"], kind="baseline", **hooks, delta_loss=b["delta_loss"], explained_variance=b["explained_variance"], clean_loss=b["clean_loss"]))
    result = EvalResult("compare", config, tuple(rows))
    if judge is not None and data is not None:
        result = add_judgements(result, saes, matchings, data, judge, explainer)
    return result


def add_judgements(
    result: EvalResult[CompareRow],
    saes: Sequence[SAE],
    matchings: Mapping[str, Sequence[Matching]],
    data: TokenSet,
    judge: Judge,
    explainer: Explainer | None = None,
) -> EvalResult[CompareRow]:
    """``result`` with the judged fractions of a sample of each matcher's pairs filled in.

    A separate step, so a caller can save the comparison first: judging may call a remote LLM
    that fails, and what was computed before it must not be lost.
    """
    judged = run_judging(data, saes, matchings, judge, explainer=explainer, config=result.config.judging).rows()
    table = []
    for row in result.table:
        if row.kind == "matcher":
            summary = summarize_verdicts([r for r in judged if r["pair"] == row.pair and r["method"] == row.method])
            row = replace(row, **{k: summary[k] for k in ("frac_same", "frac_maybe", "frac_different", "judge")})
        table.append(row)
    return replace(result, table=tuple(table))
