"""``activation_correlation``: data-based matching (Balcells et al. 2024), many-to-one."""

from __future__ import annotations

import time

import torch
from sae_lens import SAE

from sae_lens_match.matching.config import MatchConfig
from sae_lens_match.matching.matchers.base import pick, scored_matching
from sae_lens_match.matching.matching import Matching
from sae_lens_match.matching.parameters import check_same_d_in
from sae_lens_match.sources.activations import feature_activations
from sae_lens_match.sources.tokens import TokenSet


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
    config: MatchConfig | None = None,
    one_to_one: bool = False,
    min_correlation: float | None = None,
) -> Matching:
    """Each A feature goes to the B feature whose activations correlate best with it on ``data``.

    Pearson correlation of feature activations, top-1 per A feature (many-to-one). A features
    that never fire on ``data`` stay unmatched (``-1``): the data says nothing about them. The
    result records the fingerprint of ``data`` (``fit_tokens``), and evaluations refuse to
    judge it on the same tokens.

    Args:
        data: model and tokens (required).
        config: how ``cost`` (the parameter MSE) is computed.
        one_to_one: instead solve the assignment maximising total correlation (a bijection
            over the features that fire; dead A features stay unmatched).
        min_correlation: A features whose best correlation is below this are unmatched.
    """
    if data is None:
        raise ValueError("activation_correlation is data-based: pass data=TokenSet(model, tokens).")
    check_same_d_in(sae_a, sae_b)
    start = time.perf_counter()
    with torch.no_grad():
        corr, active_a, _ = activation_correlations(data, sae_a, sae_b)
        live = active_a.nonzero().squeeze(1)
        perm_live, score_live = pick(lambda sl: corr[live[sl]], int(live.numel()), corr.shape[1], one_to_one, 4096)
    perm = torch.full((sae_a.cfg.d_sae,), -1, dtype=torch.long)
    score = torch.full((sae_a.cfg.d_sae,), float("nan"), dtype=torch.float64)
    perm[live], score[live] = perm_live, score_live
    if min_correlation is not None:
        perm = torch.where(score >= min_correlation, perm, -1)
    return scored_matching(
        sae_a, sae_b, perm, score, method="activation_correlation", score_name="Pearson correlation",
        one_to_one=one_to_one, config=MatchConfig.of(config), started=start, fit_tokens=data.fingerprint(),
        info={"min_correlation": min_correlation, "n_positions": data.n_positions(), "n_dead_a": int((~active_a).sum())},
    )
