"""Judging matched pairs: top contexts of both features, explanations, then a verdict per pair.

Judges come in a registry (:data:`JUDGES`) of factories that build a judge and the explainer
it needs: ``"heuristic"`` (offline context overlap, always labelled as a heuristic) and
``"llm"`` (an OpenAI-compatible chat endpoint, the paper's protocol).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.evaluation.explain.client import ChatClient
from sae_lens_match.evaluation.explain.contexts import LABELS, Explainer, Judge, top_activating_contexts
from sae_lens_match.evaluation.explain.heuristic import ContextOverlapJudge, TopTokensExplainer
from sae_lens_match.evaluation.explain.llm import LLMExplainer, LLMJudge
from sae_lens_match.evaluation.inputs import check_stack
from sae_lens_match.evaluation.results import EvalResult
from sae_lens_match.matching.matching import Matching
from sae_lens_match.registry import Registry
from sae_lens_match.sources.tokens import TokenSet

JudgeFactory = Callable[..., tuple[Judge, Explainer]]
"""``factory(client: ChatClient | None) -> (judge, explainer)``."""

JUDGES: Registry[str, JudgeFactory] = Registry("judge")


def _heuristic(client: ChatClient | None = None) -> tuple[Judge, Explainer]:
    return ContextOverlapJudge(), TopTokensExplainer()


def _llm(client: ChatClient | None = None) -> tuple[Judge, Explainer]:
    client = client or ChatClient()
    return LLMJudge(client), LLMExplainer(client)


JUDGES.register("heuristic", _heuristic)
JUDGES.register("llm", _llm)


@dataclass(frozen=True)
class JudgingConfig:
    """Which pairs :func:`run_judging` judges.

    Attributes:
        n_features: matched A features drawn per layer pair and matching.
        k: top-activating contexts per feature.
        seed: which features are drawn.
    """

    n_features: int = 20
    k: int = 10
    seed: int = 0


@dataclass(frozen=True)
class JudgementRow:
    """One judged pair: the features, the verdict and where each text came from."""

    pair: int
    method: str
    feature_a: int
    feature_b: int
    cost: float
    label: str | None
    judge: str
    reason: str | None
    error: str | None
    score: float | None
    explanation_a: str | None
    explanation_b: str | None
    explainer: str | None
    frequency_a: float
    frequency_b: float


def judge_matching(
    data: TokenSet,
    sae_a: SAE,
    sae_b: SAE,
    matching: Matching,
    judge: Judge,
    *,
    explainer: Explainer | None = None,
    features: Sequence[int] | None = None,
    config: JudgingConfig | None = None,
) -> list[dict[str, Any]]:
    """Judge matched pairs of one matching: contexts of both features, explanations, a verdict.

    Args:
        data: model and tokens (both SAEs' contexts come from the same tokens).
        sae_a, sae_b, matching: the pairs to judge (``matching`` maps A to B; checked).
        judge: e.g. :class:`~sae_lens_match.evaluation.explain.llm.LLMJudge` or the offline
            :class:`~sae_lens_match.evaluation.explain.heuristic.ContextOverlapJudge`.
        explainer: needed when ``judge.needs_explanations``; also recorded otherwise.
        features: A features to judge (default: ``config.n_features`` matched ones drawn with ``config.seed``).
        config: :class:`JudgingConfig`.

    Returns:
        One dict per pair with the fields of :class:`JudgementRow` but ``pair`` and ``method``.
    """
    config = config or JudgingConfig()
    if judge.needs_explanations and explainer is None:
        raise ValueError(f"Judge {judge.name!r} compares explanations: pass an explainer.")
    matching.check_fits(sae_a, sae_b)
    if features is None:
        candidates = matching.matched.nonzero().squeeze(1)
        g = torch.Generator().manual_seed(config.seed)
        features = candidates[torch.randperm(candidates.numel(), generator=g)[: config.n_features]].sort().values.tolist()
    features = [int(f) for f in features]
    unmatched = [f for f in features if matching.permutation[f] < 0]
    if unmatched:
        raise ValueError(f"A features {unmatched[:5]} have no match; judge matched features only.")
    targets = [int(matching.permutation[f]) for f in features]
    ctx_a = top_activating_contexts(data, sae_a, features, k=config.k, label="A")
    ctx_b = top_activating_contexts(data, sae_b, targets, k=config.k, label="B")
    rows = []
    for fa, fb, ca, cb in tqdm(list(zip(features, targets, ctx_a, ctx_b)), desc=f"judging ({judge.name})", disable=not data.progress):
        ea = explainer.explain(ca) if explainer is not None else None
        eb = explainer.explain(cb) if explainer is not None else None
        verdict = judge.judge(ca, cb, ea, eb)
        rows.append(
            {
                "feature_a": fa,
                "feature_b": fb,
                "cost": float(matching.cost[fa]),
                "label": verdict.label,
                "judge": verdict.source,
                "reason": verdict.reason,
                "error": verdict.error,
                "score": verdict.score,
                "explanation_a": ea.text if ea else None,
                "explanation_b": eb.text if eb else None,
                "explainer": ea.source if ea else None,
                "frequency_a": ca.frequency,
                "frequency_b": cb.frequency,
            }
        )
    return rows


def run_judging(
    data: TokenSet,
    saes: Sequence[SAE],
    matchings: Mapping[str, Sequence[Matching]],
    judge: Judge,
    *,
    explainer: Explainer | None = None,
    config: JudgingConfig | None = None,
) -> EvalResult[JudgementRow]:
    """:func:`judge_matching` for every matching of every consecutive pair of ``saes``."""
    config = config or JudgingConfig()
    check_stack(saes, matchings)
    rows = []
    for name, ms in matchings.items():
        for i, m in enumerate(ms):
            for r in judge_matching(data, saes[i], saes[i + 1], m, judge, explainer=explainer, config=config):
                rows.append(JudgementRow(pair=i, method=name, **r))
    return EvalResult("judging", config, tuple(rows))


def summarize_verdicts(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Fractions of SAME / MAYBE / DIFFERENT among labelled pairs, plus counts and who judged."""
    labels = Counter(r["label"] for r in rows)
    labelled = sum(labels[l] for l in LABELS)
    judges = sorted({r["judge"] for r in rows})
    return {
        "judge": ", ".join(judges),
        "heuristic": all(j.startswith("heuristic:") for j in judges),
        "n_pairs": len(rows),
        "n_labelled": labelled,
        "n_unlabelled": len(rows) - labelled,
        **{f"frac_{l.lower()}": (labels[l] / labelled if labelled else float("nan")) for l in LABELS},
    }
