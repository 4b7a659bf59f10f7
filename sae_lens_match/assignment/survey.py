"""One pass over all pairs: each feature's nearest candidates, and a bound on everything else.

Ranking is by cosine similarity, computed with :class:`.scores.Scorer` (int8 by default). Every
row keeps its ``k`` best columns and every column its ``k`` best rows. What is left out is
bounded: a pair that is in neither list has

    a_i . b_j <= |a_i| |b_j| min(rho_i, rho'_j),

with ``rho_i`` the ``(k+1)``-th best estimated cosine of row ``i`` plus the largest error bound
of that row's estimates (and ``rho'_j`` likewise per column). The sparse solver uses this to
certify most pairs without scoring them again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from sae_lens_match.assignment.scores import Scorer, sq_norms

# Columns scored at once, and rows at most: a 16 MiB block stays in cache for the passes
# that rank it (on 2 CPU cores 15 % faster at 16k features than 4096-row chunks).
_BLOCK = 8192
_ROWS = 512
# Ranking goes through the maxima of groups of this many scores: the best scores of a row
# (column) lie in its groups with the largest maxima, so only those are ranked in full.
_GROUP = 16


@dataclass(frozen=True)
class Survey:
    """Candidate pairs and cosine bounds for every pair left out (all CPU).

    Attributes:
        rows, cols: ``[E]`` int64 candidate pairs (may repeat).
        rho_a: ``[n_a]`` float64, bound on the cosine of row ``i`` with any column outside its list.
        rho_b: ``[n_b]`` float64, the same per column.
        sq_a, sq_b: ``[n_a]``, ``[n_b]`` float64 squared row norms.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    rho_a: torch.Tensor
    rho_b: torch.Tensor
    sq_a: torch.Tensor
    sq_b: torch.Tensor


def survey(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    k: int,
    k_weak: int,
    precision: str,
    chunk_size: int,
    seed: int = 0,
    progress: bool = False,
    cuda_rules: bool | None = None,
) -> Survey:
    """Score all ``n_a x n_b`` pairs once, in row chunks; see the module docstring.

    Args:
        a, b: ``[n_a, D]``, ``[n_b, D]`` float points on one device.
        k: candidates kept per row and per column.
        k_weak: candidates kept for a row (column) whose best cosine is less than twice its
            bound at ``k``: one without a clear counterpart, whose optimal partner is decided
            among many near-ties.
        precision: :data:`.scores.PRECISIONS`.
        chunk_size: rows of A scored at once (at most ``_ROWS``).
        seed: seed of the int8 mixing map.
        cuda_rules: :class:`.scores.Scorer`'s (default: where ``a`` lives on CUDA).
    """
    n_a, n_b = a.shape[0], b.shape[0]
    chunk_size = min(chunk_size, _ROWS)
    dev = a.device
    sq_a, sq_b = sq_norms(a), sq_norms(b)
    scorer = Scorer(a, b, precision, seed=seed, sq_a=sq_a, sq_b=sq_b, cuda_rules=cuda_rules)
    norm_a, norm_b = sq_a.sqrt(), sq_b.sqrt()
    inv_a = torch.where(norm_a > 0, 1 / norm_a, torch.zeros_like(norm_a)).float()
    inv_b = torch.where(norm_b > 0, 1 / norm_b, torch.zeros_like(norm_b)).float()
    k_weak = max(k, k_weak)
    kr, kc = min(k_weak + 1, n_b), min(k_weak + 1, n_a)
    row_cols = torch.empty((n_a, kr), dtype=torch.long)
    row_vals = torch.empty((n_a, kr), dtype=torch.float64)
    col_vals = torch.full((kc, n_b), -float("inf"), device=dev)
    col_rows = torch.zeros((kc, n_b), dtype=torch.long, device=dev)
    for s in tqdm(range(0, n_a, chunk_size), desc="survey", disable=not progress, leave=False):
        e = min(s + chunk_size, n_a)
        vals, idxs = [], []
        for c0, cos in scorer.column_blocks(s, e, row_scale=inv_a[s:e], col_scale=inv_b, width=_BLOCK):
            c1 = c0 + cos.shape[1]
            val, idx = _top_k_rows(cos, kr)
            vals.append(val)
            idxs.append(idx + c0)
            col_vals[:, c0:c1], col_rows[:, c0:c1] = _merge_columns(col_vals[:, c0:c1], col_rows[:, c0:c1], cos, s)
        val, pick = torch.cat(vals, 1).topk(kr, dim=1)
        row_cols[s:e], row_vals[s:e] = torch.cat(idxs, 1).gather(1, pick).cpu(), val.double().cpu()
    # Largest error on the cosine scale over each row's (column's) pairs: e_ij / (|a_i||b_j|).
    bound = scorer.bound
    na, nb = norm_a.double().cpu(), norm_b.double().cpu()
    safe_a, safe_b = na.clamp_min(1e-300), nb.clamp_min(1e-300)
    pa1, pa2, qb1, qb2 = bound.p1 / safe_a, bound.p2 / safe_a, bound.q1 / safe_b, bound.q2 / safe_b
    err_a = pa1 * qb1.max() + pa2 * qb2.max()
    err_b = qb1 * pa1.max() + qb2 * pa2.max()
    # The float32 cosine scaling adds a few roundings of a number at most ~1 in size.
    slack = 2.0**-20
    row_vals, col_vals = row_vals + err_a[:, None] + slack, col_vals.T.double().cpu() + err_b[:, None] + slack
    rows_a, cols_a, rho_a = _keep(row_vals, row_cols, k, k_weak, n_b)
    cols_b, rows_b, rho_b = _keep(col_vals, col_rows.T.cpu(), k, k_weak, n_a)
    rows, cols = torch.cat([rows_a, rows_b]), torch.cat([cols_a, cols_b])
    return Survey(rows, cols, rho_a, rho_b, sq_a.cpu(), sq_b.cpu())


def _top_k_rows(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The values of ``x.topk(k, dim=1)`` for ``x [m, w]``, with their columns (ties may pick
    other columns).

    Row ``i``'s columns ``t, t + w/g, t + 2w/g, ...`` form group ``t`` (``g`` = ``_GROUP``). The
    ``k`` groups with the largest maxima hold every score above the row's ``k``-th best and at
    least ``k`` scores no smaller than it, so ranking them alone gives the same values; their
    maxima come from one vectorised pass.
    """
    m, w = x.shape
    n_groups = w // _GROUP
    if w % _GROUP or n_groups <= k:
        return x.topk(min(k, w), dim=1)
    best = x.view(m, _GROUP, n_groups).amax(1).topk(k, dim=1).indices
    cols = (best[:, :, None] + torch.arange(0, w, n_groups, device=x.device)).reshape(m, k * _GROUP)
    val, pick = x.gather(1, cols).topk(k, dim=1)
    return val, cols.gather(1, pick)


def _merge_columns(
    vals: torch.Tensor, rows: torch.Tensor, cos: torch.Tensor, offset: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge a chunk ``cos [m, n_b]`` (rows ``offset:offset + m``) into each column's running
    best ``vals, rows [kc, n_b]`` (descending).

    Only entries above a column's current worst kept value can enter, and after the first
    chunks those are few. They are found through the maxima of groups of ``_GROUP`` rows (one
    vectorised pass) and merged column by column, instead of ranking the whole chunk along its
    strided dimension (several times slower on CPU).
    """
    kc, n_b = vals.shape
    m = cos.shape[0]
    floor = vals[-1]
    whole = m - m % _GROUP
    peaks = cos[:whole].view(whole // _GROUP, _GROUP, n_b).amax(1)
    if whole < m:
        peaks = torch.cat([peaks, cos[whole:].amax(0, keepdim=True)])
    hit_g, hit_c = (peaks > floor[None, :]).nonzero(as_tuple=True)
    if len(hit_g) == 0:
        return vals, rows
    if len(hit_g) * 4 > peaks.numel():  # early chunks: rank them whole
        val, idx = cos.topk(min(kc, m), dim=0)
        vals, pick = torch.cat([vals, val]).topk(kc, dim=0)
        return vals, torch.cat([rows, idx + offset]).gather(0, pick)
    hit_r = (hit_g[:, None] * _GROUP + torch.arange(_GROUP, device=cos.device)).reshape(-1)
    hit_c = hit_c.repeat_interleave(_GROUP)
    inside = hit_r < m
    hit_r, hit_c = hit_r[inside], hit_c[inside]
    hit_v = cos[hit_r, hit_c]
    above = hit_v > floor[hit_c]
    hit_r, hit_c, hit_v = hit_r[above], hit_c[above], hit_v[above]
    order = torch.argsort(hit_c, stable=True)
    hit_r, hit_c, hit_v = hit_r[order], hit_c[order], hit_v[order]
    cols, count = torch.unique_consecutive(hit_c, return_counts=True)
    slot = torch.arange(len(hit_c), device=cos.device) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
    where = torch.searchsorted(cols, hit_c)
    depth = int(count.max())
    new_vals = torch.full((depth, len(cols)), -float("inf"), device=cos.device)
    new_rows = torch.zeros((depth, len(cols)), dtype=torch.long, device=cos.device)
    new_vals[slot, where] = hit_v
    new_rows[slot, where] = hit_r + offset
    merged, pick = torch.cat([vals[:, cols], new_vals]).topk(kc, dim=0)
    vals[:, cols] = merged
    rows[:, cols] = torch.cat([rows[:, cols], new_rows]).gather(0, pick)
    return vals, rows


def _keep(bounds: torch.Tensor, idx: torch.Tensor, k: int, k_weak: int, n_other: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per point (row of ``bounds``, best first): ``k`` candidates, or ``k_weak`` for weak ones.

    ``bounds [n, m]`` are upper bounds on the cosines of the ``m`` best of ``n_other``
    partners, ``idx``. Returns ``(points, partners, rho [n])``; where nothing is left out,
    ``rho`` is -1 (cosines lie in [-1, 1], so clamping keeps every bound valid).
    """
    n, m = bounds.shape
    keep = torch.full((n,), min(k, m), dtype=torch.long)
    if m > k:
        keep[bounds[:, 0] < 2 * bounds[:, k]] = min(k_weak, m)
    rho = torch.full((n,), -1.0, dtype=torch.float64)
    some_left = keep < n_other
    rho[some_left] = bounds[some_left].gather(1, keep[some_left, None]).squeeze(1).clamp(-1, 1)
    take = torch.arange(m)[None, :] < keep[:, None]
    return torch.arange(n)[:, None].expand(n, m)[take], idx[take], rho
