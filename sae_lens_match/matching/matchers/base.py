"""The matcher registry and what every matcher shares.

Every matcher is called as ``fn(sae_a, sae_b, *, data=None, config=None, **options)`` and
returns a :class:`~sae_lens_match.Matching`, so every evaluation runs on every matcher.
Whatever the matcher, ``Matching.cost`` is the per-pair MSE of the parameters ``config``
compares (:func:`sae_lens_match.parameter_mse`) and ``random_pair_cost`` its chance level, so
an :class:`~sae_lens_match.UnmatchedRule` means the same thing for every matcher. A matcher's
own similarity is ``Matching.score``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from sae_lens import SAE

from sae_lens_match.matching.config import MatchConfig
from sae_lens_match.matching.matching import Matching, sae_description
from sae_lens_match.matching.parameters import pairing_costs
from sae_lens_match.registry import Registry
from sae_lens_match.sources.tokens import TokenSet

MatcherFn = Callable[..., Matching]
"""``fn(sae_a, sae_b, *, data: TokenSet | None, config: MatchConfig, **options) -> Matching``."""


@dataclass(frozen=True)
class MatcherSpec:
    """A registered matcher.

    Attributes:
        name: registry key; the ``method`` of the matchings it makes.
        fn: the matcher function.
        needs_data: whether it needs a :class:`~sae_lens_match.sources.tokens.TokenSet`.
        description: one line for listings.
    """

    name: str
    fn: MatcherFn
    needs_data: bool = False
    description: str = field(default="", compare=False)

    def __call__(self, sae_a: SAE, sae_b: SAE, *, data: TokenSet | None = None, config: MatchConfig | None = None, **options: Any) -> Matching:
        """Run the matcher and check that it returned a valid matching between these SAEs."""
        if self.needs_data and data is None:
            raise ValueError(f"Matcher {self.name!r} is data-based: pass data=TokenSet(model, tokens).")
        result = self.fn(sae_a, sae_b, data=data, config=MatchConfig.of(config), **options)
        if not isinstance(result, Matching):
            raise TypeError(f"Matcher {self.name!r} returned {type(result).__name__}, not a Matching.")
        result.check_fits(sae_a, sae_b, what=f"matching returned by matcher {self.name!r}")
        return result


MATCHERS: Registry[str, MatcherSpec] = Registry("matcher")


def register_matcher(name: str, fn: MatcherFn, *, needs_data: bool = False, description: str = "") -> MatcherSpec:
    """Register ``fn`` as matcher ``name``; returns its :class:`MatcherSpec`.

    Raises:
        ValueError: ``name`` is already taken by a different matcher.
    """
    return MATCHERS.register(name, MatcherSpec(name, fn, needs_data, description))


def get_matcher(name: str) -> MatcherSpec:
    """The registered matcher ``name`` (``ValueError`` listing the registered names otherwise)."""
    return MATCHERS.get(name)


def run_matcher(name: str, sae_a: SAE, sae_b: SAE, *, data: TokenSet | None = None, config: MatchConfig | None = None, **options: Any) -> Matching:
    """Shorthand for ``get_matcher(name)(sae_a, sae_b, data=data, config=config, **options)``."""
    return get_matcher(name)(sae_a, sae_b, data=data, config=config, **options)


def scored_matching(
    sae_a: SAE,
    sae_b: SAE,
    permutation: torch.Tensor,
    score: torch.Tensor,
    *,
    method: str,
    score_name: str,
    one_to_one: bool,
    config: MatchConfig,
    started: float,
    info: dict[str, Any] | None = None,
    fit_tokens: str | None = None,
) -> Matching:
    """The :class:`Matching` of a similarity-based matcher: its pairs and scores, with the same
    cost and chance level as SAE Match's under ``config``."""
    cost, chance = pairing_costs(sae_a, sae_b, permutation, config)
    return Matching(
        permutation, cost, sae_b.cfg.d_sae, sae_description(sae_a), sae_description(sae_b),
        method=method, one_to_one=one_to_one, random_pair_cost=chance,
        score=torch.where(permutation >= 0, score.double(), float("nan")), score_name=score_name,
        fit_tokens=fit_tokens,
        info={"config": config.to_dict(), "seconds": time.perf_counter() - started, **(info or {})},
    )


def pick(similarity_rows: Callable[[slice], torch.Tensor], n_a: int, n_b: int, one_to_one: bool, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 per row (or, for ``one_to_one``, the max-total assignment) on a similarity matrix
    ``[n_a, n_b]`` built in row chunks. Returns ``(permutation [n_a] int64, score [n_a] float64)``."""
    if one_to_one:
        from scipy.optimize import linear_sum_assignment

        sim = torch.cat([similarity_rows(slice(s, s + chunk)) for s in range(0, n_a, chunk)]).double().cpu()
        rows, cols = linear_sum_assignment(sim.numpy(), maximize=True)
        rows_t, cols_t = torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)
        perm = torch.full((n_a,), -1, dtype=torch.long)
        perm[rows_t] = cols_t
        score = torch.full((n_a,), float("nan"), dtype=torch.float64)
        score[rows_t] = sim[rows_t, cols_t]
        return perm, score
    perm, score = [], []
    for s in range(0, n_a, chunk):
        best = similarity_rows(slice(s, s + chunk)).max(dim=1)
        perm.append(best.indices.cpu())
        score.append(best.values.double().cpu())
    return torch.cat(perm).long(), torch.cat(score)
