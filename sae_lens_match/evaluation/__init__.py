"""Judging matchings on data and parameters (SAE Match paper, Section 5).

Each evaluation is a config, a typed row and a ``run_...`` function returning an
:class:`EvalResult` (``.rows()``, ``.to_json()``, ``.save()``):

- ``layer_pruning.py``: hidden-state approximation / layer pruning (Eq. 5) with the
  paper's baselines, on :mod:`~sae_lens_match.evaluation.replacement`'s hook engine;
- ``parameter_curves.py``: parameter MSE per layer pair (Fig. 3);
- ``coactivation.py``: the matching score on data;
- ``cost_summary.py``: cost statistics and the unmatched rule per matching;
- ``compare.py``: all matchers side by side;
- ``explain/``: explanations and SAME / MAYBE / DIFFERENT judgements.
"""

from sae_lens_match.evaluation.coactivation import (
    Coactivation,
    MatchingScoreConfig,
    MatchingScoreRow,
    coactivation,
    coactivations,
    run_matching_score,
)
from sae_lens_match.evaluation.compare import DEFAULT_MATCHERS, CompareConfig, CompareRow, add_judgements, compute_matchings, run_compare
from sae_lens_match.evaluation.cost_summary import CostSummaryConfig, CostSummaryRow, run_cost_summary
from sae_lens_match.evaluation.feature_cards import FeatureCard, FeatureCardConfig, FeatureCards, feature_cards, neuronpedia_url, pair_verdicts
from sae_lens_match.evaluation.layer_pruning import BASELINES, LayerPruningConfig, LayerPruningRow, run_layer_pruning
from sae_lens_match.evaluation.parameter_curves import ParameterCurvesConfig, ParameterCurvesRow, identity_matching, run_parameter_curves
from sae_lens_match.evaluation.replacement import (
    Replacement,
    ReplacementConfig,
    ReplacementResult,
    current_reconstruction,
    evaluate_replacements,
    explained_variance,
    layer_drop,
    matched_replacement,
    previous_reconstruction,
)
from sae_lens_match.evaluation.results import EvalResult

__all__ = [
    "add_judgements",
    "BASELINES",
    "DEFAULT_MATCHERS",
    "Coactivation",
    "CompareConfig",
    "CompareRow",
    "CostSummaryConfig",
    "CostSummaryRow",
    "EvalResult",
    "FeatureCard",
    "FeatureCardConfig",
    "FeatureCards",
    "LayerPruningConfig",
    "LayerPruningRow",
    "MatchingScoreConfig",
    "MatchingScoreRow",
    "ParameterCurvesConfig",
    "ParameterCurvesRow",
    "Replacement",
    "ReplacementConfig",
    "ReplacementResult",
    "coactivation",
    "coactivations",
    "compute_matchings",
    "current_reconstruction",
    "evaluate_replacements",
    "explained_variance",
    "feature_cards",
    "identity_matching",
    "layer_drop",
    "matched_replacement",
    "neuronpedia_url",
    "pair_verdicts",
    "previous_reconstruction",
    "run_compare",
    "run_cost_summary",
    "run_layer_pruning",
    "run_matching_score",
    "run_parameter_curves",
]
