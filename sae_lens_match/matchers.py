"""Feature matchers under one interface, in a registry (SAELens registry style).

Every matcher is called as ``fn(sae_a, sae_b, data=None, **options)`` and returns a
:class:`~sae_lens_match.Matching`, so every evaluation runs on every matcher:

- ``sae_match`` (default): SAE Match, the exact min-MSE bijection on folded parameters.
- ``cosine_top1``: Feature Flow (Laptev et al. 2025): each A feature goes to the B feature
  whose unit-norm decoder row has the highest cosine similarity (many-to-one).
- ``activation_correlation``: data-based (Balcells et al. 2024): each A feature goes to the
  B feature whose activations correlate best (Pearson) on real tokens. Needs ``data``.

Whatever the matcher, ``Matching.cost`` holds the same quantity, the per-pair MSE of the
folded parameters (:func:`sae_lens_match.parameter_mse` with the default terms), so cost
thresholds (the MSE-quantile rule) mean the same thing for every matcher. A matcher's own
similarity is summarised in ``Matching.info`` (``score``, ``mean_score``).

Register your own with :func:`register_matcher`; names are unique (registering another
function under a taken name raises ``ValueError``, the same function again is a no-op).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from sae_lens import SAE

from sae_lens_match.evaluation.data import TokenSet, feature_activations
from sae_lens_match.folding import NonPositivePolicy
from sae_lens_match.match import match, parameter_mse, sae_description
from sae_lens_match.matching import Matching
from sae_lens_match.validation import check_same_d_in

MatcherFn = Callable[..., Matching]
"""``fn(sae_a, sae_b, *, data: TokenSet | None = None, **options) -> Matching``."""


@dataclass(frozen=True)
class MatcherSpec:
    """A registered matcher.

    Attributes:
        name: registry key; stored as ``info["method"]`` of the matchings it makes.
        fn: the matcher function.
        needs_data: whether it needs a :class:`~sae_lens_match.evaluation.TokenSet`.
        description: one line for listings.
    """

    name: str
    fn: MatcherFn
    needs_data: bool = False
    description: str = ""

    def __call__(self, sae_a: SAE, sae_b: SAE, *, data: TokenSet | None = None, **options: Any) -> Matching:
        """Run the matcher and check that it returned a valid matching between these SAEs."""
        if self.needs_data and data is None:
            raise ValueError(f"Matcher {self.name!r} is data-based: pass data=TokenSet(model, tokens).")
        result = self.fn(sae_a, sae_b, data=data, **options)
        if not isinstance(result, Matching):
            raise TypeError(f"Matcher {self.name!r} returned {type(result).__name__}, not a Matching.")
        if result.d_sae_a != sae_a.cfg.d_sae or result.d_sae_b != sae_b.cfg.d_sae:
            raise ValueError(
                f"Matcher {self.name!r} returned a {result.d_sae_a} -> {result.d_sae_b} matching for SAEs "
                f"of widths {sae_a.cfg.d_sae} -> {sae_b.cfg.d_sae}."
            )
        return result


MATCHERS: dict[str, MatcherSpec] = {}


def register_matcher(name: str, fn: MatcherFn, *, needs_data: bool = False, description: str = "") -> MatcherSpec:
    """Register ``fn`` as matcher ``name``; returns its :class:`MatcherSpec`.

    Raises:
        ValueError: ``name`` is already taken by a different function.
    """
    if name in MATCHERS:
        if MATCHERS[name].fn is fn:
            return MATCHERS[name]
        raise ValueError(f"A matcher named {name!r} is already registered; choose another name.")
    spec = MatcherSpec(name, fn, needs_data, description)
    MATCHERS[name] = spec
    return spec


def get_matcher(name: str) -> MatcherSpec:
    """The registered matcher ``name``, or ``KeyError`` listing the registered names."""
    try:
        return MATCHERS[name]
    except KeyError:
        raise KeyError(f"Unknown matcher {name!r}; registered: {sorted(MATCHERS)}.") from None


def run_matcher(name: str, sae_a: SAE, sae_b: SAE, *, data: TokenSet | None = None, **options: Any) -> Matching:
    """Shorthand for ``get_matcher(name)(sae_a, sae_b, data=data, **options)``."""
    return get_matcher(name)(sae_a, sae_b, data=data, **options)


# --- the built-in matchers ---------------------------------------------------------------


def sae_match(sae_a: SAE, sae_b: SAE, *, data: TokenSet | None = None, **options: Any) -> Matching:
    """SAE Match: :func:`sae_lens_match.match` (data is not used). Options go to ``match``."""
    return match(sae_a, sae_b, **options)


def _scored(
    sae_a: SAE,
    sae_b: SAE,
    permutation: torch.Tensor,
    score: torch.Tensor,
    *,
    method: str,
    score_name: str,
    one_to_one: bool,
    fold: bool,
    weights: Mapping[str, float] | None,
    nonpositive_threshold: NonPositivePolicy,
    seconds: float,
    extra: dict[str, Any],
) -> Matching:
    """A Matching whose cost is the folded parameter MSE, like SAE Match's, plus score stats."""
    cost = parameter_mse(sae_a, sae_b, permutation, fold=fold, weights=weights, nonpositive_threshold=nonpositive_threshold)
    matched = permutation >= 0
    n_targets = int(permutation[matched].unique().numel())
    info = {
        "method": method,
        "score": score_name,
        "mean_score": float(score[matched].double().mean()) if matched.any() else float("nan"),
        "cost": "folded parameter MSE" if fold else "parameter MSE",
        "fold": fold,
        "weights": weights,
        "n_distinct_targets": n_targets,
        "seconds": seconds,
        "steps": 1,
        **extra,
    }
    return Matching(
        permutation, cost, sae_b.cfg.d_sae, sae_description(sae_a), sae_description(sae_b), info, one_to_one
    )


def _pick(similarity_rows: Callable[[slice], torch.Tensor], n_a: int, n_b: int, one_to_one: bool, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 (or, for ``one_to_one``, max-total assignment) on a similarity matrix built in row chunks."""
    if one_to_one:
        from scipy.optimize import linear_sum_assignment

        sim = torch.cat([similarity_rows(slice(s, s + chunk)) for s in range(0, n_a, chunk)]).double()
        rows, cols = linear_sum_assignment(sim.cpu().numpy(), maximize=True)
        perm = torch.full((n_a,), -1, dtype=torch.long)
        perm[torch.as_tensor(rows, dtype=torch.long)] = torch.as_tensor(cols, dtype=torch.long)
        score = torch.full((n_a,), float("nan"), dtype=torch.float64)
        score[torch.as_tensor(rows, dtype=torch.long)] = torch.as_tensor(sim.cpu().numpy()[rows, cols])
        return perm, score
    perm, score = [], []
    for s in range(0, n_a, chunk):
        best = similarity_rows(slice(s, s + chunk)).max(dim=1)
        perm.append(best.indices.cpu())
        score.append(best.values.double().cpu())
    return torch.cat(perm).long(), torch.cat(score)


def cosine_top1(
    sae_a: SAE,
    sae_b: SAE,
    *,
    data: TokenSet | None = None,
    one_to_one: bool = False,
    min_similarity: float | None = None,
    fold: bool = True,
    weights: Mapping[str, float] | None = None,
    nonpositive_threshold: NonPositivePolicy = "error",
    chunk_size: int = 4096,
) -> Matching:
    """Feature Flow: match each A feature to the B feature with the most similar decoder direction.

    Similarity is the cosine of unit-norm decoder rows (scale-free, so folding does not
    change it). Top-1 per A feature: many-to-one (``one_to_one=False`` in the result).

    Args:
        one_to_one: instead solve the assignment maximising total cosine (a bijection).
        min_similarity: A features whose best cosine is below this are unmatched (``-1``).
        fold, weights, nonpositive_threshold: how ``cost`` (the parameter MSE) is computed.
        chunk_size: A rows per similarity block (memory ``chunk_size * d_sae_b``).
    """
    check_same_d_in(sae_a, sae_b)
    start = time.perf_counter()
    with torch.no_grad():
        wa = torch.nn.functional.normalize(sae_a.W_dec.detach().float(), dim=1)
        wb = torch.nn.functional.normalize(sae_b.W_dec.detach().float(), dim=1).to(wa.device)
        perm, score = _pick(lambda sl: wa[sl] @ wb.T, wa.shape[0], wb.shape[0], one_to_one, chunk_size)
    if min_similarity is not None:
        perm = torch.where(score >= min_similarity, perm, -1)
    return _scored(
        sae_a, sae_b, perm, score, method="cosine_top1", score_name="decoder cosine", one_to_one=one_to_one,
        fold=fold, weights=weights, nonpositive_threshold=nonpositive_threshold,
        seconds=time.perf_counter() - start, extra={"min_similarity": min_similarity},
    )


def activation_correlations(data: TokenSet, sae_a: SAE, sae_b: SAE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pearson correlation of every A feature's activations with every B feature's, on ``data``.

    Activations come from one clean forward pass per batch, each SAE at its own hook, over
    the non-BOS positions. Statistics are accumulated in float64 (memory ``8 d_a d_b`` bytes).

    Returns:
        ``(corr [d_sae_a, d_sae_b] float64, active_a [d_sae_a] bool, active_b [d_sae_b] bool)``:
        ``corr`` is 0 where a feature never varies (dead on this data); ``active_*`` say
        which features fired at least once.
    """
    n = 0
    sums = [torch.zeros(s.cfg.d_sae, dtype=torch.float64) for s in (sae_a, sae_b)]
    sq = [torch.zeros(s.cfg.d_sae, dtype=torch.float64) for s in (sae_a, sae_b)]
    cross = torch.zeros(sae_a.cfg.d_sae, sae_b.cfg.d_sae, dtype=torch.float64)
    for fa, fb in feature_activations(data, [sae_a, sae_b], desc="feature correlations"):
        fa, fb = fa.double().cpu(), fb.double().cpu()
        n += fa.shape[0]
        for k, f in enumerate((fa, fb)):
            sums[k] += f.sum(0)
            sq[k] += (f**2).sum(0)
        cross += fa.T @ fb
    if n < 2:
        raise ValueError(f"activation correlations need at least 2 evaluated positions, got {n}.")
    mean_a, mean_b = sums[0] / n, sums[1] / n
    cov = cross / n - mean_a[:, None] * mean_b[None, :]
    std_a = (sq[0] / n - mean_a**2).clamp_min(0).sqrt()
    std_b = (sq[1] / n - mean_b**2).clamp_min(0).sqrt()
    denom = std_a[:, None] * std_b[None, :]
    corr = torch.where(denom > 0, cov / denom.clamp_min(1e-300), torch.zeros_like(cov)).clamp(-1, 1)
    return corr, sq[0] > 0, sq[1] > 0


def activation_correlation(
    sae_a: SAE,
    sae_b: SAE,
    *,
    data: TokenSet | None = None,
    one_to_one: bool = False,
    min_correlation: float | None = None,
    fold: bool = True,
    weights: Mapping[str, float] | None = None,
    nonpositive_threshold: NonPositivePolicy = "error",
) -> Matching:
    """Data-based matching: each A feature goes to the B feature it correlates with best.

    Pearson correlation of feature activations on ``data`` (Balcells et al. 2024), top-1
    per A feature (many-to-one). A features that never fire on ``data`` stay unmatched
    (``-1``): the data says nothing about them.

    Args:
        data: model and tokens (required).
        one_to_one: instead solve the assignment maximising total correlation (a bijection
            over the features that fire; dead A features stay unmatched).
        min_correlation: A features whose best correlation is below this are unmatched.
        fold, weights, nonpositive_threshold: how ``cost`` (the parameter MSE) is computed.
    """
    if data is None:
        raise ValueError("activation_correlation is data-based: pass data=TokenSet(model, tokens).")
    check_same_d_in(sae_a, sae_b)
    start = time.perf_counter()
    with torch.no_grad():
        corr, active_a, _ = activation_correlations(data, sae_a, sae_b)
        live = active_a.nonzero().squeeze(1)
        perm_live, score_live = _pick(lambda sl: corr[live[sl]], int(live.numel()), corr.shape[1], one_to_one, 4096)
    perm = torch.full((sae_a.cfg.d_sae,), -1, dtype=torch.long)
    score = torch.full((sae_a.cfg.d_sae,), float("nan"), dtype=torch.float64)
    perm[live], score[live] = perm_live, score_live
    if min_correlation is not None:
        perm = torch.where(score >= min_correlation, perm, -1)
    return _scored(
        sae_a, sae_b, perm, score, method="activation_correlation", score_name="Pearson correlation",
        one_to_one=one_to_one, fold=fold, weights=weights, nonpositive_threshold=nonpositive_threshold,
        seconds=time.perf_counter() - start,
        extra={"min_correlation": min_correlation, "n_positions": data.n_positions(), "n_dead_a": int((~active_a).sum())},
    )


register_matcher("sae_match", sae_match, description="SAE Match: min-MSE bijection on folded parameters (data-free)")
register_matcher("cosine_top1", cosine_top1, description="Feature Flow: top-1 unit-norm decoder cosine (data-free, many-to-one)")
register_matcher(
    "activation_correlation", activation_correlation, needs_data=True,
    description="Balcells et al.: top-1 Pearson correlation of activations on tokens (data-based, many-to-one)",
)
