"""sae-lens-match: SAE Match and Learned Feedback Patterns for SAELens + TransformerLens."""

from sae_lens_match.errors import HubUnavailableError
from sae_lens_match.folding import FOLD_RULES, fold, register_fold_rule
from sae_lens_match.loading import load_pretrained, load_sae
from sae_lens_match.match import DEFAULT_WEIGHTS, feature_rows, match, match_layers, parameter_mse
from sae_lens_match.matching import Matching
from sae_lens_match.paths import FeaturePaths, agreement, compose_all, feature_paths
from sae_lens_match.permute import permute, select_features
from sae_lens_match.version import __version__

__all__ = [
    "DEFAULT_WEIGHTS",
    "FOLD_RULES",
    "FeaturePaths",
    "HubUnavailableError",
    "Matching",
    "__version__",
    "agreement",
    "compose_all",
    "feature_paths",
    "feature_rows",
    "fold",
    "load_pretrained",
    "load_sae",
    "match",
    "match_layers",
    "parameter_mse",
    "permute",
    "register_fold_rule",
    "select_features",
]
