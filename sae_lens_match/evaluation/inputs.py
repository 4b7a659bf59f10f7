"""The checks every evaluation makes of what it is given, in one place."""

from __future__ import annotations

from typing import Mapping, Sequence

from sae_lens import SAE

from sae_lens_match.matching.matching import Matching
from sae_lens_match.sources.tokens import TokenSet


def check_stack(saes: Sequence[SAE], matchings: Mapping[str, Sequence[Matching]]) -> None:
    """Raise ``ValueError`` unless ``matchings[name][i]`` was made from ``saes[i]`` to ``saes[i + 1]``
    for every name and pair (widths, and the hook names and layer indices it recorded)."""
    if len(saes) < 2:
        raise ValueError(f"Need at least two SAEs, got {len(saes)}.")
    for name, ms in matchings.items():
        if len(ms) != len(saes) - 1:
            raise ValueError(f"matchings[{name!r}] has {len(ms)} matchings for {len(saes) - 1} SAE pairs.")
        for i, m in enumerate(ms):
            m.check_fits(saes[i], saes[i + 1], what=f"matchings[{name!r}][{i}] (for SAEs {i} -> {i + 1})")


def check_held_out(matchings: Mapping[str, Sequence[Matching]], data: TokenSet) -> None:
    """Raise ``ValueError`` if a data-based matching would be judged on the tokens it was fitted on."""
    tokens = data.fingerprint()
    for name, ms in matchings.items():
        if any(m.fit_tokens == tokens for m in ms):
            raise ValueError(
                f"Matchings {name!r} were fitted on the very tokens they would be judged on; fit them on "
                "other tokens (e.g. another split) so the evaluation is not circular."
            )
