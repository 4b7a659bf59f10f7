"""Judging a matching on data and parameters (SAE Match paper, Section 5).

- :class:`TokenSet`: a TransformerLens model (``HookedTransformer``, ``HookedSAETransformer``
  or ``TransformerBridge``) and the token rows to run it on, with BOS handling.
- Hidden-state approximation / layer pruning: :func:`layer_pruning`,
  :func:`matched_replacement`, the baselines :func:`layer_drop`,
  :func:`current_reconstruction`, :func:`previous_reconstruction`, and
  :func:`evaluate_replacements` for your own replacements.
- Parameter MSE curves (paper Fig. 3): :func:`parameter_mse_curves`.
- Matching score on data: :func:`coactivation`, :func:`coactivations`, :func:`matching_score`.
- All matchers side by side: :func:`compute_matchings`, :func:`compare_matchers`.
- Tables and plots: :mod:`sae_lens_match.evaluation.tables`.
"""

from sae_lens_match.evaluation.approximation import (
    BASELINES,
    Replacement,
    ReplacementResult,
    current_reconstruction,
    evaluate_replacements,
    explained_variance,
    layer_drop,
    layer_pruning,
    matched_replacement,
    previous_reconstruction,
)
from sae_lens_match.evaluation.coactivation import Coactivation, coactivation, coactivations, matching_score, random_matching
from sae_lens_match.evaluation.compare import compare_matchers, compute_matchings
from sae_lens_match.evaluation.data import TokenSet, feature_activations, pack_texts
from sae_lens_match.evaluation.parameter_curves import identity_matching, parameter_mse_curves

__all__ = [
    "BASELINES",
    "Coactivation",
    "Replacement",
    "ReplacementResult",
    "TokenSet",
    "coactivation",
    "coactivations",
    "compare_matchers",
    "compute_matchings",
    "current_reconstruction",
    "evaluate_replacements",
    "explained_variance",
    "feature_activations",
    "identity_matching",
    "layer_drop",
    "layer_pruning",
    "matched_replacement",
    "matching_score",
    "pack_texts",
    "parameter_mse_curves",
    "previous_reconstruction",
    "random_matching",
]
