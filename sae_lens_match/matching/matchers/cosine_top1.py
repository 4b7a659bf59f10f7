"""``cosine_top1``: Feature Flow's matcher (Laptev et al. 2025), data-free and many-to-one."""

from __future__ import annotations

import time

import torch
from sae_lens import SAE

from sae_lens_match.matching.config import MatchConfig
from sae_lens_match.matching.matchers.base import pick, scored_matching
from sae_lens_match.matching.matching import Matching
from sae_lens_match.matching.parameters import check_same_d_in
from sae_lens_match.sources.tokens import TokenSet


def cosine_top1(
    sae_a: SAE,
    sae_b: SAE,
    *,
    data: TokenSet | None = None,
    config: MatchConfig | None = None,
    one_to_one: bool = False,
    min_similarity: float | None = None,
    chunk_size: int = 4096,
) -> Matching:
    """Match each A feature to the B feature with the most similar decoder direction.

    Similarity is the cosine of unit-norm decoder rows (scale-free, so folding does not
    change it). Top-1 per A feature: many-to-one (``one_to_one=False`` in the result).

    Args:
        config: how ``cost`` (the parameter MSE) is computed.
        one_to_one: instead solve the assignment maximising total cosine (a bijection).
        min_similarity: A features whose best cosine is below this are unmatched (``-1``).
        chunk_size: A rows per similarity block (memory ``chunk_size * d_sae_b``).
    """
    check_same_d_in(sae_a, sae_b)
    start = time.perf_counter()
    with torch.no_grad():
        wa = torch.nn.functional.normalize(sae_a.W_dec.detach().float(), dim=1)
        wb = torch.nn.functional.normalize(sae_b.W_dec.detach().float(), dim=1).to(wa.device)
        perm, score = pick(lambda sl: wa[sl] @ wb.T, wa.shape[0], wb.shape[0], one_to_one, chunk_size)
    if min_similarity is not None:
        perm = torch.where(score >= min_similarity, perm, -1)
    return scored_matching(
        sae_a, sae_b, perm, score, method="cosine_top1", score_name="decoder cosine", one_to_one=one_to_one,
        config=MatchConfig.of(config), started=start, info={"min_similarity": min_similarity},
    )
