"""Exact assignment without the dense cost matrix (GitHub issue #3).

Rounds of *solve on a sparse graph, then prove nothing outside it helps*:

1. **Candidates**: column offsets ``v0`` (each column's cheapest cost, estimated through a
   random projection) and one chunked pass over all pairs keep, per row, the ``k`` columns of
   smallest ``c_ij - v0_j``. Every edge of the graph carries its exact float64 cost.
2. **Assignment**: scipy's sparse LAPJVsp (``min_weight_full_bipartite_matching``) on the
   graph; rows the graph cannot match all at once are first given spare columns (a graph
   edge is only a candidate: it is in the answer only if it is optimal).
3. **Optimality check**: LP duals ``(u, v)`` of the graph optimum (:func:`.lap.duals`), then
   one more chunked pass over all pairs computes a rigorous lower bound on every reduced cost
   ``c_ij - u_i - v_j`` (:mod:`.scores`). If none outside the graph is negative, the duals are
   feasible for the full problem and the matching is optimal for it. Otherwise each row's
   ``k`` most negative pairs join the graph and 2-3 repeat; the duals of the last round are
   the offsets of the next pass, so the candidates are ranked by near-optimal reduced costs.

``info["gap_bound"]`` is ``primal - dual`` of the final certificate (float64 rounding only
when ``proven_optimal``); if ``max_rounds`` runs out first, it is a rigorous bound on how far
the returned matching can be from the optimum.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.sparse.csgraph import maximum_bipartite_matching
from tqdm.auto import tqdm

from sae_lens_match.assignment import lap
from sae_lens_match.assignment.core import Assignment, exact_costs, register_solver
from sae_lens_match.assignment.scores import PRECISIONS, Scorer

# Relative tolerance of the optimality check: float64 shortest-path sums over long
# alternating paths stay far below it.
_TOL = 1e-9
# Relative allowance for the float32 operations that turn a score into a reduced cost.
_SLOP = 2.0**-20


def sparse_assign(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    k: int = 64,
    precision: str = "fp32",
    chunk_size: int | None = None,
    max_rounds: int = 50,
    offset_dim: int = 32,
    progress: bool | None = None,
) -> Assignment:
    """Exact minimum-cost assignment of every row of ``a`` (``n_a <= n_b``) to a row of ``b``.

    Args:
        a, b: ``[n_a, D]``, ``[n_b, D]`` float points on one device (CUDA runs the passes there).
        k: pairs added per row and pass.
        precision: matmul of the passes: ``"fp32"`` or ``"int8"`` (exact int32 accumulation of
            rounded inputs, faster on CPUs with VNNI). Either way the bounds are rigorous, but
            int8's are wide: where many pairs have nearly equal reduced costs (features without
            a counterpart) it needs many more rounds to prove optimality.
        chunk_size: rows of A scored at once; default keeps a score block near 256 MiB.
        max_rounds: passes of the optimality check before giving up on a proof.
        offset_dim: dimensions of the projection that sets the first column offsets.
        progress: show progress bars (default: for problems above 10^8 pairs).
    """
    if k < 1 or max_rounds < 1:
        raise ValueError(f"k and max_rounds must be at least 1, got k={k}, max_rounds={max_rounds}.")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    n_a, n_b = a.shape[0], b.shape[0]
    if progress is None:
        progress = n_a * n_b > 10**8
    if chunk_size is None:
        chunk_size = max(64, min(n_a, (1 << 26) // n_b))
    seconds = dict.fromkeys(("offsets", "scores", "assignment", "optimality_check"), 0.0)
    clock = time.perf_counter()

    def tick(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[phase] += now - clock
        clock = now

    v0, nominee_rows, nominee_cols = column_offsets(a, b, dim=offset_dim, chunk_size=chunk_size, progress=progress)
    tick("offsets")
    rows, cols, _, _ = row_pass(a, b, v0, None, None, k=k, precision=precision, chunk_size=chunk_size, progress=progress, desc="candidates")
    rows, cols = torch.cat([rows, nominee_rows]), torch.cat([cols, nominee_cols])
    edges = _exact_edges(a, b, rows, cols)
    tick("scores")
    stats = {"candidate_edges": len(edges), "rounds": 0, "completion_edges": 0}
    proven = False
    while True:
        edges, added = _complete(edges, a, b)
        stats["completion_edges"] += added
        match = lap.solve(edges)
        # The match is optimal for the costs on LAPJVsp's grid; duals for those are feasible
        # for the exact costs within delta / 2 on every edge.
        gridded, delta = edges.on_grid()
        tol = _TOL * (1.0 + float(edges.cost.abs().max())) + delta / 2
        u, v = lap.duals(gridded, match, tol)
        tick("assignment")
        stats["rounds"] += 1
        rows, cols, vals, worst = row_pass(
            a, b, v, u, edges, k=k, precision=precision, chunk_size=chunk_size, progress=progress,
            desc=f"optimality check {stats['rounds']}",
        )
        # Rows with a violation take all their kept pairs: the next duals move towards them.
        keep = (worst < -tol)[rows] & torch.isfinite(vals)
        tick("optimality_check")
        if not keep.any():
            proven = True
            break
        if stats["rounds"] >= max_rounds:
            break
        edges = edges.add(rows[keep], cols[keep], exact_costs(a, b, rows[keep], cols[keep]))
        tick("scores")
    sq_dist = edges.cost[edges.find(torch.arange(n_a), match)]
    # Weak duality: lowering each u_i by its worst violation makes (u, v) feasible everywhere.
    dual = float(u.sum() + v.sum()) - n_a * tol + float(worst.clamp(max=0.0).sum())
    info = {
        "solver": "sparse",
        "precision": precision,
        "k": k,
        **stats,
        "final_edges": len(edges),
        "proven_optimal": proven,
        "gap_bound": max(0.0, float(sq_dist.sum()) - dual),
        **{f"seconds_{name}": t for name, t in seconds.items()},
    }
    return Assignment(cols=match, sq_dist=sq_dist, info=info)


def column_offsets(
    a: torch.Tensor, b: torch.Tensor, *, dim: int = 32, per_col: int = 4, chunk_size: int = 1024, seed: int = 0,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Estimate each column's cheapest cost ``min_i c_ij`` cheaply.

    A random projection to ``dim`` dimensions nominates ``per_col`` rows per column; the
    exact cost of the best nominee is the estimate (an upper bound on the true minimum).
    Offsets only steer which candidates the first pass keeps, never what is proven.

    Returns:
        ``(v0 [n_b] float64, rows [n_b * per_col], cols [n_b * per_col])`` (CPU): the
        offsets and the nominated pairs.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    proj = (torch.randn(a.shape[1], dim, generator=g, dtype=torch.float32) / dim**0.5).to(a.device)
    ap, bp = a.float() @ proj, b.float() @ proj
    # ap . bp - |ap|^2 / 2 = -(|ap - bp|^2 - |bp|^2) / 2: per column, larger is closer.
    ap_aug = torch.cat([ap, -(ap * ap).sum(1, keepdim=True) / 2], 1)
    bp_aug = torch.cat([bp, torch.ones((bp.shape[0], 1), device=bp.device)], 1)
    per_col = min(per_col, a.shape[0])
    nominees = torch.empty((b.shape[0], per_col), dtype=torch.long, device=a.device)
    for s in tqdm(range(0, b.shape[0], chunk_size), desc="column offsets", disable=not progress, leave=False):
        nominees[s : s + chunk_size] = (bp_aug[s : s + chunk_size] @ ap_aug.T).topk(per_col, dim=1).indices
    rows = nominees.reshape(-1).cpu()
    cols = torch.arange(b.shape[0]).repeat_interleave(per_col)
    v0 = exact_costs(a, b, rows, cols).view(-1, per_col).min(1).values
    return v0, rows, cols


def row_pass(
    a: torch.Tensor,
    b: torch.Tensor,
    v: torch.Tensor,
    u: torch.Tensor | None,
    skip: lap.Edges | None,
    *,
    k: int,
    precision: str,
    chunk_size: int,
    progress: bool = False,
    desc: str = "scoring pairs",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One chunked pass over all pairs keeping each row's ``k`` smallest reduced costs.

    Without ``u`` the ranking is by the estimate of ``c_ij - v_j``. With ``u`` it is by a
    rigorous lower bound on ``c_ij - u_i - v_j``, and pairs that are edges of ``skip`` are
    left out.

    Returns:
        ``(rows [n_a k], cols [n_a k], values [n_a k], worst [n_a])`` (CPU): the kept pairs,
        their values (``inf`` where a row has fewer than ``k`` pairs outside ``skip``) and each
        row's smallest value (with ``u``: the bound on everything the row has outside ``skip``).
    """
    n_a, n_b = a.shape[0], b.shape[0]
    k = min(k, n_b)
    dev = a.device
    scorer = Scorer(a, b, v, precision)
    if u is None:
        shift = scorer.a_sq
    else:
        # z + |a|^2 - u - e, less an allowance for the float32 operations on the way.
        u = u.double().to(scorer.a_sq.device)
        shift = scorer.a_sq - u - _SLOP * (scorer.a_sq + u.abs())
        p1, p2, alpha, q1, q2, beta = (
            getattr(scorer.bound, f).float().to(dev) for f in ("p1", "p2", "alpha", "q1", "q2", "beta")
        )
    shift = shift.float().to(dev)
    if skip is not None:
        indptr = skip.csr_torch()[0]
    cols = torch.empty((n_a, k), dtype=torch.long)
    vals = torch.empty((n_a, k), dtype=torch.float64)
    for s in tqdm(range(0, n_a, chunk_size), desc=desc, disable=not progress, leave=False):
        e = min(s + chunk_size, n_a)
        z = scorer.chunk(s, e).add_(shift[s:e, None])
        if u is not None:
            z.sub_(torch.outer(p1[s:e], q1)).sub_(torch.outer(p2[s:e], q2)).sub_(alpha[s:e, None]).sub_(beta[None, :])
            if skip is not None:
                lo, hi = int(indptr[s]), int(indptr[e])
                z[(skip.rows[lo:hi] - s).to(dev), skip.cols[lo:hi].to(dev)] = float("inf")
        val, idx = z.topk(k, dim=1, largest=False)
        cols[s:e] = idx.cpu()
        vals[s:e] = val.double().cpu()
    return torch.arange(n_a).repeat_interleave(k), cols.reshape(-1), vals.reshape(-1), vals[:, 0]


def _exact_edges(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> lap.Edges:
    """The pairs as graph edges with their exact costs (duplicates removed)."""
    key = torch.unique(rows * b.shape[0] + cols)
    rows, cols = key // b.shape[0], key % b.shape[0]
    return lap.Edges(a.shape[0], b.shape[0], rows, cols, exact_costs(a, b, rows, cols))


def _complete(edges: lap.Edges, a: torch.Tensor, b: torch.Tensor) -> tuple[lap.Edges, int]:
    """Make sure the graph has a matching covering every row: rows a maximum matching
    leaves out get edges to columns it leaves free. Returns the graph and edges added."""
    match = torch.from_numpy(maximum_bipartite_matching(edges.csr(), perm_type="column").astype(np.int64))
    free_rows = (match < 0).nonzero().squeeze(1)
    if not len(free_rows):
        return edges, 0
    used = torch.zeros(edges.n_b, dtype=torch.bool)
    used[match[match >= 0]] = True
    free_cols = (~used).nonzero().squeeze(1)[: len(free_rows)]
    exact = exact_costs(a, b, free_rows, free_cols)
    return edges.add(free_rows, free_cols, exact), len(free_rows)


register_solver("sparse", sparse_assign)
