"""``sae_match``: SAE Match itself, the exact min-MSE bijection on folded parameters (data-free)."""

from __future__ import annotations


from sae_lens import SAE

from sae_lens_match.matching.config import MatchConfig
from sae_lens_match.matching.match import match
from sae_lens_match.matching.matching import Matching
from sae_lens_match.sources.tokens import TokenSet


def sae_match(sae_a: SAE, sae_b: SAE, *, data: TokenSet | None = None, config: MatchConfig | None = None) -> Matching:
    """:func:`sae_lens_match.match` under ``config``; ``data`` is not used."""
    return match(sae_a, sae_b, config)
