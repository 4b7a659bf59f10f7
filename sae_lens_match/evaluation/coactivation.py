"""Matching score on data: do matched features fire on the same tokens?

SAE Match is data-free; this is its data-based check (the paper's "matching score"). For
each matched pair ``(i, j = P(i))`` over the non-BOS positions of a token set:

- ``p_b_given_a``: P(B_j active | A_i active);
- ``jaccard``: P(both active | at least one active), the *matching score*: symmetric, so
  a B feature that fires everywhere does not score well;
- ``correlation``: Pearson correlation of the two activations (0 if either never varies).

"Active" means activation > 0 (SAE activations are non-negative; JumpReLU/TopK zero out
sub-threshold features). The same statistics for a random pairing (seeded) give the
chance level to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.evaluation.inputs import check_held_out, check_stack
from sae_lens_match.evaluation.results import EvalResult
from sae_lens_match.matching.matching import DEFAULT_UNMATCHED, Matching, UnmatchedRule, random_matching
from sae_lens_match.sources.activations import feature_activations
from sae_lens_match.sources.tokens import TokenSet


@dataclass(frozen=True)
class Coactivation:
    """Per-pair co-activation statistics of a matching on data.

    All tensors are ``[d_sae_a]`` (``float64``; ``nan`` for unmatched A features, and for
    ``p_b_given_a``/``jaccard`` where the statistic's denominator is 0).

    Attributes:
        n_positions: number of evaluated tokens.
        freq_a, freq_b: firing frequency of A feature ``i`` and of its match ``P(i)``.
        p_b_given_a, jaccard, correlation: see the module docstring.
    """

    n_positions: int
    freq_a: torch.Tensor
    freq_b: torch.Tensor
    p_b_given_a: torch.Tensor
    jaccard: torch.Tensor
    correlation: torch.Tensor

    def summary(self, prefix: str = "") -> dict[str, Any]:
        """Means over matched pairs where at least one of the two features fired."""
        live = ~torch.isnan(self.jaccard)
        def mean(t: torch.Tensor) -> float:
            v = t[live & ~torch.isnan(t)]
            return float(v.mean()) if v.numel() else float("nan")
        return {
            f"{prefix}matching_score": mean(self.jaccard),
            f"{prefix}p_b_given_a": mean(self.p_b_given_a),
            f"{prefix}correlation": mean(self.correlation),
            f"{prefix}n_pairs_evaluated": int(live.sum()),
        }


def coactivation(data: TokenSet, sae_a: SAE, sae_b: SAE, matching: Matching) -> Coactivation:
    """Co-activation statistics of the pairs in ``matching`` on ``data`` (one pass, streaming).

    Args:
        data: model and tokens; each SAE reads its own ``cfg.metadata.hook_name``.
        sae_a, sae_b: the matched SAEs.
        matching: A -> B (one-to-one or many-to-one).
    """
    return coactivations(data, sae_a, sae_b, {"m": matching})["m"]


def coactivations(data: TokenSet, sae_a: SAE, sae_b: SAE, matchings: Mapping[str, Matching]) -> dict[str, Coactivation]:
    """:func:`coactivation` for several matchings of the same two SAEs, in one pass over ``data``."""
    for name, m in matchings.items():
        m.check_fits(sae_a, sae_b, what=f"matching {name!r}")
    acc = {name: _Counts(m) for name, m in matchings.items()}
    n = 0
    with torch.no_grad():
        for fa, fb in feature_activations(data, [sae_a, sae_b], desc="co-activation"):
            fa, fb = fa.double().cpu(), fb.double().cpu()
            n += fa.shape[0]
            for counts in acc.values():
                counts.add(fa, fb)
    if n == 0:
        raise ValueError("No evaluated positions in data (every position is BOS).")
    return {name: counts.result(n) for name, counts in acc.items()}


class _Counts:
    """Streaming sums for the pairs of one matching."""

    def __init__(self, matching: Matching) -> None:
        self.matched = matching.permutation >= 0
        self.cols = matching.permutation.clamp_min(0)
        d = matching.d_sae_a
        self.n_a, self.n_b, self.n_ab = (torch.zeros(d, dtype=torch.float64) for _ in range(3))
        self.s_a, self.s_b, self.s_aa, self.s_bb, self.s_ab = (torch.zeros(d, dtype=torch.float64) for _ in range(5))

    def add(self, fa: torch.Tensor, fb_all: torch.Tensor) -> None:
        fb = fb_all[:, self.cols]  # B's activation of each A feature's match
        on_a, on_b = fa > 0, fb > 0
        self.n_a += on_a.sum(0)
        self.n_b += on_b.sum(0)
        self.n_ab += (on_a & on_b).sum(0)
        self.s_a += fa.sum(0)
        self.s_b += fb.sum(0)
        self.s_aa += (fa**2).sum(0)
        self.s_bb += (fb**2).sum(0)
        self.s_ab += (fa * fb).sum(0)

    def result(self, n: int) -> Coactivation:
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        either = self.n_a + self.n_b - self.n_ab
        mean_a, mean_b = self.s_a / n, self.s_b / n
        cov = self.s_ab / n - mean_a * mean_b
        var = ((self.s_aa / n - mean_a**2).clamp_min(0) * (self.s_bb / n - mean_b**2).clamp_min(0)).sqrt()
        correlation = torch.where(var > 0, cov / var.clamp_min(1e-300), torch.zeros_like(cov)).clamp(-1, 1)
        only_matched = lambda t: torch.where(self.matched, t, nan)  # noqa: E731
        return Coactivation(
            n_positions=n,
            freq_a=only_matched(self.n_a / n),
            freq_b=only_matched(self.n_b / n),
            p_b_given_a=only_matched(torch.where(self.n_a > 0, self.n_ab / self.n_a.clamp_min(1), nan)),
            jaccard=only_matched(torch.where(either > 0, self.n_ab / either.clamp_min(1), nan)),
            correlation=only_matched(torch.where(either > 0, correlation, nan)),
        )


@dataclass(frozen=True)
class MatchingScoreConfig:
    """What :func:`run_matching_score` measures.

    Attributes:
        unmatched_rule: pairs it calls unmatched are left out (default: the package-wide rule;
            ``UnmatchedRule()`` scores every pair).
        seed: seed of the random pairing that gives the chance level.
    """

    unmatched_rule: UnmatchedRule = DEFAULT_UNMATCHED
    seed: int = 0


@dataclass(frozen=True)
class MatchingScoreRow:
    """Co-activation of one matching of one layer pair, and of a random pairing (``random_*``).

    Means over matched pairs where at least one of the two features fired; see
    :class:`Coactivation` for the statistics.
    """

    pair: int
    method: str
    matching_score: float
    p_b_given_a: float
    correlation: float
    n_pairs_evaluated: int
    random_matching_score: float
    random_p_b_given_a: float
    random_correlation: float


def run_matching_score(
    data: TokenSet,
    saes: Sequence[SAE],
    matchings: Mapping[str, Sequence[Matching]],
    config: MatchingScoreConfig | None = None,
) -> EvalResult[MatchingScoreRow]:
    """The matching score on data of every matching of every consecutive pair, one pass per pair.

    Raises:
        ValueError: matchings for other SAEs, or data-based matchings fitted on ``data``.
    """
    config = config or MatchingScoreConfig()
    if not matchings:
        raise ValueError("run_matching_score needs at least one set of matchings.")
    check_stack(saes, matchings)
    check_held_out(matchings, data)
    rows = []
    for i in tqdm(range(len(saes) - 1), desc="matching score", disable=not data.progress):
        these = {name: config.unmatched_rule.apply(ms[i]) for name, ms in matchings.items()}
        chance = random_matching(next(iter(matchings.values()))[i], config.seed)
        stats = coactivations(data, saes[i], saes[i + 1], {**these, "__random__": chance})
        chance_stats = stats.pop("__random__").summary("random_")
        chance_stats.pop("random_n_pairs_evaluated")
        rows += [MatchingScoreRow(pair=i, method=name, **co.summary(), **chance_stats) for name, co in stats.items()]
    return EvalResult("matching_score", config, tuple(rows))
