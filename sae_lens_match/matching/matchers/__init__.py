"""Feature matchers under one interface, in one registry (:data:`MATCHERS`).

- ``sae_match`` (default): SAE Match, the exact min-MSE bijection on folded parameters.
- ``cosine_top1``: Feature Flow (Laptev et al. 2025): each A feature goes to the B feature
  whose unit-norm decoder row has the highest cosine similarity (many-to-one).
- ``activation_correlation``: data-based (Balcells et al. 2024): each A feature goes to the
  B feature whose activations correlate best (Pearson) on real tokens. Needs ``data``.

Register your own with :func:`register_matcher`: a function
``fn(sae_a, sae_b, *, data=None, config=None, **options) -> Matching``.
"""

from sae_lens_match.matching.matchers.activation_correlation import activation_correlation, activation_correlations
from sae_lens_match.matching.matchers.base import MATCHERS, MatcherFn, MatcherSpec, get_matcher, register_matcher, run_matcher
from sae_lens_match.matching.matchers.cosine_top1 import cosine_top1
from sae_lens_match.matching.matchers.sae_match import sae_match

register_matcher("sae_match", sae_match, description="SAE Match: min-MSE bijection on folded parameters (data-free)")
register_matcher("cosine_top1", cosine_top1, description="Feature Flow: top-1 unit-norm decoder cosine (data-free, many-to-one)")
register_matcher(
    "activation_correlation", activation_correlation, needs_data=True,
    description="Balcells et al.: top-1 Pearson correlation of activations on tokens (data-based, many-to-one)",
)

__all__ = [
    "MATCHERS",
    "MatcherFn",
    "MatcherSpec",
    "activation_correlation",
    "activation_correlations",
    "cosine_top1",
    "get_matcher",
    "register_matcher",
    "run_matcher",
    "sae_match",
]
