"""SAE Match: data-free alignment of SAE features across layers, and everything a matching is.

- :class:`Matching` (``matching.py``): the result type, with :class:`UnmatchedRule`,
  :func:`random_matching` and :func:`agreement`;
- :class:`MatchConfig` (``config.py``): how two SAEs are compared;
- :func:`fold` (``folding.py``): thresholds folded into the weights, a rule per architecture;
- :func:`feature_rows`, :func:`parameter_mse` (``parameters.py``): what is compared;
- :func:`match` (``match.py``), :func:`match_layers` (``layers.py``): one pair, a whole stack;
- :func:`feature_paths`, :func:`compose_all` (``feature_paths.py``): features through many layers;
- :func:`permute`, :func:`select_features` (``permute.py``);
- :func:`make_stack`, :func:`make_pair` (``synthetic.py``): stacks and pairs of chosen
  :class:`Hardness` with planted ground truth;
- ``matchers/``: SAE Match and its alternatives behind one registry.
"""

from sae_lens_match.matching.config import COST_CONFIG, DEFAULT_WEIGHTS, MatchConfig
from sae_lens_match.matching.feature_paths import FeaturePaths, compose_all, feature_paths
from sae_lens_match.matching.folding import FOLD_RULES, fold, register_fold_rule
from sae_lens_match.matching.layers import match_layers
from sae_lens_match.matching.match import match
from sae_lens_match.matching.matching import DEFAULT_UNMATCHED, Matching, MatchingFileError, UnmatchedRule, agreement, random_matching, sae_description
from sae_lens_match.matching.parameters import feature_rows, parameter_mse
from sae_lens_match.matching.permute import permute, select_features
from sae_lens_match.matching.synthetic import Hardness, SyntheticStack, make_pair, make_stack

__all__ = [
    "COST_CONFIG",
    "DEFAULT_UNMATCHED",
    "DEFAULT_WEIGHTS",
    "FOLD_RULES",
    "FeaturePaths",
    "Hardness",
    "MatchConfig",
    "Matching",
    "MatchingFileError",
    "SyntheticStack",
    "UnmatchedRule",
    "agreement",
    "compose_all",
    "feature_paths",
    "feature_rows",
    "fold",
    "make_pair",
    "make_stack",
    "match",
    "match_layers",
    "parameter_mse",
    "permute",
    "random_matching",
    "register_fold_rule",
    "sae_description",
    "select_features",
]
