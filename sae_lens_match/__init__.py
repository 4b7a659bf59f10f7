"""sae-lens-match: SAE Match and Learned Feedback Patterns for SAELens + TransformerLens.

How the code is organised (lower layers never import higher ones):

- ``assignment/``: exact minimum-cost assignment (dense and sparse solvers);
- ``saes/``: SAE architectures added to SAELens's registry (registered on import);
- ``sources/``: everything loaded or read: hub errors, SAEs, models, tokens, activations,
  text datasets, the VADER lexicon, SAE training;
- ``matching/``: the :class:`Matching` type, folding, SAE Match, stacks, paths, matchers;
- ``evaluation/``: judging matchings (layer pruning, Fig. 3 curves, co-activation,
  matchers side by side, explanations);
- ``flow/``: feature flow: predecessors across residual, attention and MLP SAEs, the flow graph, its causal check, steering;
- ``report/``: the one writer of tables, plots and pages;
- ``lfp/``: Learned Feedback Patterns, stage by stage;
- ``world/``: the embedded offline world (a data source only the command line picks);
- ``cli/``: the ``sae-lens-match`` command.
"""

from sae_lens_match import saes as _saes  # noqa: F401  (registers the plugin architectures with SAELens)
from sae_lens_match.matching import (
    COST_CONFIG,
    DEFAULT_UNMATCHED,
    DEFAULT_WEIGHTS,
    FOLD_RULES,
    FeaturePaths,
    MatchConfig,
    Matching,
    MatchingFileError,
    UnmatchedRule,
    agreement,
    compose_all,
    feature_paths,
    feature_rows,
    fold,
    match,
    match_layers,
    parameter_mse,
    permute,
    register_fold_rule,
    select_features,
)
from sae_lens_match.registry import Registry
from sae_lens_match.sources.hub import HubUnavailableError
from sae_lens_match.sources.saes import load_pretrained, load_sae
from sae_lens_match.version import __version__

__all__ = [
    "COST_CONFIG",
    "DEFAULT_UNMATCHED",
    "DEFAULT_WEIGHTS",
    "FOLD_RULES",
    "FeaturePaths",
    "HubUnavailableError",
    "MatchConfig",
    "Matching",
    "MatchingFileError",
    "Registry",
    "UnmatchedRule",
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
