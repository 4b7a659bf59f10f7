"""Exact assignment without the dense cost matrix (GitHub issue #3).

With ``s_i = |a_i|^2 - u_i`` and ``t_j = |b_j|^2 - v_j``, the reduced cost of a pair under LP
duals ``(u, v)`` is ``c_ij - u_i - v_j = s_i + t_j - 2 a_i . b_j``: the duals are optimal for
the full problem, and so is the matching, when this is ``>= 0`` for every pair.

1. **Survey** (:mod:`.survey`): one chunked pass (int8 by default) keeps each row's and each
   column's ``k`` nearest candidates by cosine, and bounds ``a_i . b_j`` for every pair in
   neither list by ``|a_i||b_j| min(rho_i, rho'_j)``. The candidates, with their exact float64
   costs, are the first graph.
2. **Assignment**: scipy's sparse LAPJVsp (``min_weight_full_bipartite_matching``) on the
   graph; rows the graph cannot match all at once first get spare columns (a graph edge is
   only a candidate: it is in the answer only if it is optimal). LP duals of the graph
   optimum come from :func:`.lap.duals`, pushed towards ``s_i >= rho_i |a_i|^2`` and
   ``t_j >= rho'_j |b_j|^2``.
3. **Optimality check** (a *pricing pass*): a pair whose row and column both meet those
   inequalities is proven by the survey's bound alone. Every other pair is tested against the
   bound, and the rows and columns of the pairs it cannot prove are scored again in float32
   with rigorous error bounds (:mod:`.scores`). If none has a negative reduced cost, the
   matching is optimal for the full problem. Otherwise each row's ``k_add`` most negative
   pairs join the graph, with the nearly tight pairs the pass kept (``_NEAR``), and 2-3 repeat.
4. **Incremental pricing** (:mod:`.pricing`): on pairs without a clear counterpart (a
   near-tie block) each re-solve exposes a few new violations, so a proof takes several
   passes, and each used to rescore the whole block. Now a rescoring keeps each row's
   ``k_pool`` smallest bounds as lower bounds on their costs (the pool), and a lower bound
   ``tau`` on all the row's other pairs. A later pass prices the pool without scoring and
   rescores only the pairs whose ``tau``, moved by the duals' change since, no longer proves
   them. The proof stays a full one: every pair is covered by the graph's duals, the pool,
   the survey's bound, a recorded ``tau`` or a new float32 bound.

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
from sae_lens_match.assignment.pricing import NO_INDEX, Coverage, Pool, any_along
from sae_lens_match.assignment.scores import PRECISIONS, Scorer
from sae_lens_match.assignment.survey import Survey, survey

# Relative tolerance of the optimality check: float64 shortest-path sums over long
# alternating paths stay far below it.
_TOL = 1e-9
# Relative allowance for the float32 operations that turn a score into a reduced cost.
_SLOP = 2.0**-20
# Once a pass finds violations, kept pairs whose bound is below this share of the mean
# matched cost join the graph too: the re-solve moves the duals, and they would be the next
# pass's violations. On 16k hard pairs this saves 2-4 of 5-11 rounds (each a cold LAPJVsp);
# twice the share adds more edges and saves no more rounds.
_NEAR = 0.005


def sparse_assign(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    k: int = 8,
    k_weak: int = 32,
    k_add: int = 16,
    k_pool: int = 32,
    precision: str = "int8",
    chunk_size: int | None = None,
    max_rounds: int = 100,
    seed: int = 0,
    progress: bool | None = None,
) -> Assignment:
    """Exact minimum-cost assignment of every row of ``a`` (``n_a <= n_b``) to a row of ``b``.

    Args:
        a, b: ``[n_a, D]``, ``[n_b, D]`` float points on one device (CUDA runs the passes there).
        k: candidates per row and per column from the survey.
        k_weak: candidates from the survey for a row or column without a clear counterpart.
        k_add: violated pairs a row adds to the graph per round of the optimality check (more
            join where a pass finds nearly tight ones, see ``_NEAR``).
        k_pool: nearly tight pairs a row keeps from a rescoring (per column piece), priced
            again at later duals without scoring (see :mod:`.pricing`).
        precision: matmul of the survey: ``"int8"`` (exact int32 accumulation of rounded
            inputs, about 2.5x faster than float32 on CPUs with VNNI) or ``"fp32"``. Either way
            its bounds are rigorous; float32's are tighter, so fewer pairs need a second look.
            The optimality check always scores in float32.
        chunk_size: rows of A scored at once; default keeps a score block near 256 MiB.
        max_rounds: rounds of the optimality check before giving up on a proof.
        seed: seed of the int8 survey's random mixing (results do not depend on it).
        progress: show progress bars (default: for problems above 10^8 pairs).
    """
    if min(k, k_add, k_pool, max_rounds) < 1:
        raise ValueError(f"k, k_add, k_pool and max_rounds must be at least 1, got k={k}, k_add={k_add}, k_pool={k_pool}, max_rounds={max_rounds}.")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    n_a, n_b = a.shape[0], b.shape[0]
    if progress is None:
        progress = n_a * n_b > 10**8
    if chunk_size is None:
        chunk_size = max(64, min(n_a, (1 << 26) // n_b))
    seconds = dict.fromkeys(("survey", "assignment", "optimality_check"), 0.0)
    clock = time.perf_counter()

    def tick(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[phase] += now - clock
        clock = now

    sv = survey(a, b, k=k, k_weak=k_weak, precision=precision, chunk_size=chunk_size, seed=seed, progress=progress)
    edges = _exact_edges(a, b, sv.rows, sv.cols)
    # Potentials above these caps would leave pairs the survey could otherwise prove.
    cap_u = sv.sq_a * (1 - sv.rho_a.clamp(min=0))
    cap_v = sv.sq_b * (1 - sv.rho_b.clamp(min=0))
    tick("survey")
    stats = {"candidate_edges": len(edges), "rounds": 0, "completion_edges": 0, "added_edges": [], "rescored_pairs": [], "round_seconds": []}
    proven = False
    # What earlier passes proved, so that a pass rescores only what the duals' change undid.
    pool, coverage = Pool.empty(), Coverage(n_a, n_b)
    duals = None
    bar = tqdm(total=max_rounds, desc="optimality check", disable=not progress, leave=False)
    while True:
        round_start = time.perf_counter()
        edges, added = _complete(edges, a, b)
        stats["completion_edges"] += added
        match = lap.solve(edges)
        # The match is optimal for the costs on LAPJVsp's grid; duals for those are feasible
        # for the exact costs within delta / 2 on every edge.
        gridded, delta = edges.on_grid()
        tol = _TOL * (1.0 + float(edges.cost.abs().max())) + delta / 2
        # The previous round's duals are close to this round's: a warm start (same answer).
        u, v = lap.duals(gridded, match, tol, cap_u, cap_v, hint=duals)
        duals = (u, v)
        sq_dist = edges.cost[edges.find(torch.arange(n_a), match)]
        near = _NEAR * float(sq_dist.mean()) if n_a else 0.0
        tick("assignment")
        stats["rounds"] += 1
        new_rows, new_cols, worst, pool, rescored = _pricing_pass(
            a, b, sv, u, v, edges, pool, coverage, k_add=k_add, k_pool=k_pool, tol=tol, near=near, chunk_size=chunk_size, last=stats["rounds"] >= max_rounds
        )
        stats["rescored_pairs"].append(rescored)
        stats["added_edges"].append(len(new_rows))
        tick("optimality_check")
        bar.update(1)
        bar.set_postfix(added=len(new_rows))
        if not len(new_rows):
            proven = True
        elif stats["rounds"] < max_rounds:
            edges = edges.add(new_rows, new_cols, exact_costs(a, b, new_rows, new_cols))
            tick("optimality_check")
        stats["round_seconds"].append(time.perf_counter() - round_start)
        if proven or stats["rounds"] >= max_rounds:
            break
    bar.close()
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


def _pricing_pass(a, b, sv, u, v, edges, pool, coverage, *, k_add, k_pool, tol, near, chunk_size, last):
    """Bound every pair's reduced cost under ``(u, v)``: graph edges are feasible, pooled pairs
    have their own bounds, the survey's bound settles most others; of the :func:`unproven`
    blocks only rows whose earlier bounds no longer hold (:class:`.pricing.Coverage`) are
    rescored in float32.

    Returns ``(new_rows, new_cols, worst [n_a], pool, rescored)``: the pairs to add (all pairs
    whose bound is below ``-tol`` are among them, or their rows' ``k_add`` smallest; if there
    are any, also every pooled pair whose bound is below ``near``), each row's smallest bound
    where below 0 (0 elsewhere: those are ``>= -tol``), the pool for later rounds and the
    number of pairs rescored.
    """
    pool = pool.without(edges)
    reduced = pool.reduced_lb(u, v)
    worst = torch.zeros(a.shape[0], dtype=torch.float64).scatter_reduce_(0, pool.rows, reduced.clamp(max=0.0), "amin")
    new_rows, new_cols, pools = [NO_INDEX], [NO_INDEX], [pool]
    coverage.new_pass(u, v)
    rescored = 0
    # Smaller strip first. Once it turns up many violations (early rounds, when the graph
    # is still far from optimal), the other waits for better duals, except in the last
    # round, whose gap bound needs every pair.
    for strip in sorted(unproven(sv, u, v, tol, coverage=coverage), key=lambda blocks: sum(len(r) * len(c) for r, c in blocks)):
        if int((worst < -tol).sum()) * 100 >= a.shape[0] and not last:
            break
        for rows, cols in strip:
            bad_r, bad_c = coverage.unproven(rows, cols, u, v, tol)
            rows, cols = rows[bad_r], cols[bad_c]
            if not len(rows):
                continue
            rescored += len(rows) * len(cols)
            found_rows, found_cols, block_worst, block_pool, tau = recheck(
                a, b, sv, rows, cols, u, v, edges, k_add=k_add, k_pool=k_pool, tol=tol, chunk_size=chunk_size
            )
            coverage.record(rows, cols, tau)
            new_rows.append(found_rows)
            new_cols.append(found_cols)
            pools.append(block_pool)
            worst = torch.minimum(worst, block_worst)
    pool = Pool.cat(pools)
    reduced = pool.reduced_lb(u, v)
    new_rows, new_cols = torch.cat(new_rows), torch.cat(new_cols)
    if len(new_rows) or bool((reduced < -tol).any()):
        join = reduced < max(near, -tol)
        new_rows, new_cols = torch.cat([new_rows, pool.rows[join]]), torch.cat([new_cols, pool.cols[join]])
    return new_rows, new_cols, worst, pool, rescored


def unproven(
    sv: Survey, u: torch.Tensor, v: torch.Tensor, tol: float, group: int = 4096, coverage: Coverage | None = None
) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Blocks holding every pair the survey's bound cannot prove has a reduced cost ``>= -tol``.

    A pair is proven if ``s_i + t_j >= 2 |a_i||b_j| min(rho_i, rho'_j)``. That holds for every
    pair whose row has ``s_i >= rho_i+ |a_i|^2`` and whose column has ``t_j >= rho'_j+ |b_j|^2``
    (``x+ = max(x, 0)``; ``2xy <= x^2 + y^2``), so only two strips are tested: the other rows
    against all columns, and all rows against the other columns. Each strip is sorted (rows
    by ``s``, columns by ``t``) and cut into tiles; a tile whose extreme values prove it is
    skipped, the others are tested pair by pair. Candidates are tested too (their bound does
    not hold, so they may be reported; the recheck skips graph edges). Given the ``coverage``
    of earlier passes, only the pairs it leaves unproven are tested (where it can list them).

    Returns:
        Per strip (weak rows, then weak columns; empty where nothing is unproven),
        ``(rows, cols)`` blocks of int64 indices (CPU), one per ``group`` sorted rows: the
        (sorted) rows and the columns of the group's unproven pairs.
    """
    s, t = sv.sq_a - u, sv.sq_b - v
    # Rounding allowance of the float64 tests, relative to the magnitudes involved.
    slop_a, slop_b = 1e-12 * (s.abs() + sv.sq_a), 1e-12 * (t.abs() + sv.sq_b)
    weak_rows = (s < sv.rho_a.clamp(min=0) * sv.sq_a - slop_a).nonzero().squeeze(1)
    weak_cols = (t < sv.rho_b.clamp(min=0) * sv.sq_b - slop_b).nonzero().squeeze(1)
    # The strips are tested in float32, which may only report too much: each side's
    # threshold is raised by 16 float32 roundings of the magnitudes it stands for
    # (2 |a||b| <= |a|^2 + |b|^2 splits the product's share between the sides).
    lift_a = (2.0**-20 * (s.abs() + sv.sq_a) - slop_a - tol / 2).float()
    lift_b = (2.0**-20 * (t.abs() + sv.sq_b) - slop_b - tol / 2).float()
    row = (s.float() - lift_a, sv.sq_a.sqrt().float(), sv.rho_a.float())
    col = (t.float() - lift_b, (2 * sv.sq_b.sqrt()).float(), sv.rho_b.float())
    strips = [(weak_rows, torch.arange(len(t))), (torch.arange(len(s)), weak_cols)]

    def left_by_coverage(r: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None if coverage is None else coverage.failing_pairs(r, c, u, v, tol)

    return [_unproven_strip(_tiles(r, *row), _tiles(c, *col), group, left_by_coverage) if len(r) and len(c) else [] for r, c in strips]


_TILE = 128
# Elements tested at once: a few MiB of float32 stay in cache across the test's passes.
_TEST_ELEMENTS = 1 << 22


def _tiles(idx: torch.Tensor, shift: torch.Tensor, norm: torch.Tensor, rho: torch.Tensor):
    """Points ``idx`` sorted by ``shift``, their per-point ``(shift, norm, rho)`` and, per tile of
    :data:`_TILE`, the values that bound every pair of the tile from either side: least shift,
    largest norm and rho (a pair may fail), then largest shift, least norm and rho (every pair
    fails). Padding makes a partial tile never fail for sure."""
    idx = idx[torch.argsort(shift[idx])]
    pad = -len(idx) % _TILE
    tile = [torch.cat([x[idx], x.new_full((pad,), fill)]).view(-1, _TILE) for x, fill in ((shift, float("inf")), (norm, 0.0), (rho, -1.0))]
    return idx, (shift, norm, rho), (tile[0].amin(1), tile[1].amax(1), tile[2].amax(1)), (tile[0].amax(1), tile[1].amin(1), tile[2].amin(1))


def _failing(r: tuple, c: tuple, pairwise: bool = False) -> torch.Tensor:
    """``s_i + t_j < |a_i| 2|b_j| min(rho_i, rho'_j)`` in float32, rows ``r`` x columns ``c``
    given as ``(shift, norm, rho)``, or pair by pair (same roundings) if ``pairwise``. Rounding
    is monotone, so tile extremes bound their pairs."""
    if not pairwise:
        r, c = tuple(x[:, None] for x in r), tuple(x[None, :] for x in c)
    bound = torch.minimum(r[2], c[2]).clamp_(min=0).mul_(c[1]).mul_(r[1])
    return torch.add(r[0], c[0]).sub_(bound) < 0


def _unproven_strip(rows, cols, group: int, left_by_coverage) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One strip's blocks, a block per ``group`` sorted rows; ``rows`` and ``cols`` come from
    :func:`_tiles`. Column tiles no row tile of the group can fail with are never tested, nor
    pairs ``left_by_coverage(rows, cols)`` does not list (when it lists, else None). Where a
    column tile fails for sure with every row tile of the group, its pairs are not tested one by
    one either: all those rows and columns are in the block."""
    (row_idx, row_vals, row_tiles, row_sure), (col_idx, col_vals, col_tiles, col_sure) = rows, cols
    maybe = _failing(row_tiles, col_tiles)  # [row tiles, column tiles]
    sure = _failing(row_sure, col_sure)
    blocks = []
    per_group = max(1, group // _TILE)

    def columns(tiles: torch.Tensor) -> torch.Tensor:
        return col_idx[(tiles[:, None] * _TILE + torch.arange(_TILE)).flatten().clamp_max(len(col_idx) - 1)].unique()

    for g in range(0, maybe.shape[0], per_group):
        hit = any_along(maybe[g : g + per_group], 0)
        if not hit.any():
            continue
        r = row_idx[g * _TILE : (g + per_group) * _TILE]
        c = columns(hit.nonzero().squeeze(1))
        pairs = left_by_coverage(r, c)
        if pairs is not None:
            i, j = pairs
            fail = _failing(tuple(x[r[i]] for x in row_vals), tuple(x[c[j]] for x in col_vals), pairwise=True)
            if fail.any():
                blocks.append((r[i[fail].unique()].sort().values, c[j[fail].unique()]))
            continue
        all_fail = sure[g : g + per_group].all(0)
        if all_fail.any():
            # Every row of the group fails with these columns; only the others need a test.
            c_sure, c = columns(all_fail.nonzero().squeeze(1)), columns((hit & ~all_fail).nonzero().squeeze(1))
            c = c[~torch.isin(c, c_sure)]
        bad_r, bad_c = torch.zeros(len(r), dtype=torch.bool), torch.zeros(len(c), dtype=torch.bool)
        c_vals = tuple(x[c] for x in col_vals)
        step = max(1, _TEST_ELEMENTS // max(len(c), 1))
        for i in range(0, len(r) if len(c) else 0, step):
            fail = _failing(tuple(x[r[i : i + step]] for x in row_vals), c_vals)
            bad_r[i : i + step] = any_along(fail, 1)
            bad_c |= any_along(fail, 0)
        if all_fail.any():
            blocks.append((r.sort().values, torch.cat([c_sure, c[bad_c]])))
        elif bad_r.any():
            blocks.append((r[bad_r].sort().values, c[bad_c]))
    return blocks


def recheck(
    a: torch.Tensor,
    b: torch.Tensor,
    sv: Survey,
    rows: torch.Tensor,
    cols: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    edges: lap.Edges,
    *,
    k_add: int,
    k_pool: int,
    tol: float,
    chunk_size: int,
    piece_bytes: int = 1 << 28,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Pool, torch.Tensor]:
    """Rigorous lower bounds on ``c_ij - u_i - v_j`` over ``rows x cols`` (float32 scores).

    Columns go in pieces of at most ``piece_bytes`` of float32 points, rows in chunks
    gathered as they are scored, so memory stays bounded however large the block.

    Returns:
        ``(new_rows, new_cols, worst, pool, tau)`` (CPU): per row and piece, up to ``k_add``
        pairs outside the graph whose bound is below ``-tol``; ``worst [n_a]``, each row's
        smallest bound over the block (0 for rows outside it); per row and piece the other
        pairs among its ``max(k_add, k_pool)`` smallest bounds (:class:`.pricing.Pool`); and
        ``tau [len(rows)]``, a lower bound on the bounds of the row's pairs in neither list
        nor the graph.
    """
    worst = torch.zeros(a.shape[0], dtype=torch.float64)
    tau = torch.full((len(rows),), float("inf"), dtype=torch.float64)
    found_rows, found_cols, pools = [NO_INDEX], [NO_INDEX], [Pool.empty()]
    if not len(rows) or not len(cols):
        return NO_INDEX, NO_INDEX, worst, pools[0], tau
    # Graph edges inside the block are skipped: they are feasible by construction.
    block_row = torch.full((a.shape[0],), -1, dtype=torch.long)
    block_row[rows] = torch.arange(len(rows))
    edge_in_rows = block_row[edges.rows] >= 0
    edge_rows, edge_cols = block_row[edges.rows[edge_in_rows]], edges.cols[edge_in_rows]
    per_piece = max(1, piece_bytes // (4 * a.shape[1]))
    for start in range(0, len(cols), per_piece):
        piece = cols[start : start + per_piece]
        in_piece = torch.full((b.shape[0],), -1, dtype=torch.long)
        in_piece[piece] = torch.arange(len(piece))
        keep = in_piece[edge_cols] >= 0
        skip = (edge_rows[keep] * len(piece) + in_piece[edge_cols[keep]]).sort().values  # row-major
        new_r, new_c, piece_worst, piece_pool, piece_tau = _recheck_piece(
            a, b, sv, rows, piece, u, v, skip, k_add, k_pool, tol, chunk_size, piece_bytes
        )
        found_rows.append(new_r)
        found_cols.append(new_c)
        pools.append(piece_pool)
        worst[rows] = torch.minimum(worst[rows], piece_worst)
        tau = torch.minimum(tau, piece_tau)
    return torch.cat(found_rows), torch.cat(found_cols), worst, Pool.cat(pools), tau


def _recheck_piece(a, b, sv, rows, cols, u, v, skip, k_add, k_pool, tol, chunk_size, piece_bytes):
    """:func:`recheck` on one column piece; ``skip`` holds the graph edges as block-local
    ``row * len(cols) + col``. Returns new pairs, ``worst [len(rows)]``, the pool and ``tau [len(rows)]``."""
    dev = a.device
    sq_a, sq_b = sv.sq_a[rows], sv.sq_b[cols]
    scorer = Scorer(a, b[cols.to(dev)], "fp32", sq_a=sq_a, sq_b=sq_b, a_rows=rows)
    bound = scorer.bound
    # float32 factors: rounding them moves the bound by ~2^-24 of itself, far inside the slop term.
    p1, p2, q1, q2 = (x.float().to(dev) for x in (bound.p1, bound.p2, bound.q1, bound.q2))
    na, nb = sq_a.sqrt().float().to(dev), sq_b.sqrt().float().to(dev)
    # LB = s + t - 2 d^ - 2 e - slop (|s| + |t| + 4 |a||b|), in float32 (the slop covers it).
    s, t = sq_a - u[rows], sq_b - v[cols]
    row_shift = (s - _SLOP * s.abs()).float().to(dev)
    col_shift = (t - _SLOP * t.abs()).float().to(dev)
    kk = min(k_add, len(cols))
    kp = min(max(k_add, k_pool), len(cols))
    worst = torch.zeros(len(rows), dtype=torch.float64)
    tau = torch.full((len(rows),), float("inf"), dtype=torch.float64)
    keep_rows, keep_cols, pool_rows, pool_cols, pool_lb = [], [], [], [], []
    # Score blocks near chunk_size x n_b, and gathered rows of A within piece_bytes.
    step = max(1, min((chunk_size * b.shape[0]) // len(cols), piece_bytes // (4 * a.shape[1])))
    for start in range(0, len(rows), step):
        stop = min(start + step, len(rows))
        lb = scorer.chunk(start, stop).mul_(-2)
        lb.add_(row_shift[start:stop, None]).add_(col_shift[None, :])
        err = torch.outer(p1[start:stop], q1).addr_(p2[start:stop], q2).mul_(2)
        lb.sub_(err.addr_(na[start:stop], nb, alpha=4 * _SLOP))
        lo, hi = torch.searchsorted(skip, torch.tensor([start * len(cols), stop * len(cols)]))
        here = skip[lo:hi]
        lb[(here // len(cols) - start).to(dev), (here % len(cols)).to(dev)] = float("inf")
        val, idx = lb.topk(kp, dim=1, largest=False)
        val, idx = val.double().cpu(), idx.cpu()
        worst[start:stop] = val[:, 0].clamp(max=0.0)
        chunk_rows = rows[start:stop, None].expand_as(idx)
        hit = val[:, :kk] < -tol
        keep_rows.append(chunk_rows[:, :kk][hit])
        keep_cols.append(cols[idx[:, :kk][hit]])
        # The rest of the kp smallest go to the pool with a lower bound on their cost; every
        # other pair of the row is bounded by the largest of them.
        near = torch.isfinite(val)
        near[:, :kk] &= ~hit
        pr, pc = chunk_rows[near], cols[idx[near]]
        pool_rows.append(pr)
        pool_cols.append(pc)
        pool_lb.append(val[near] + u[pr] + v[pc])
        if kp < len(cols):
            tau[start:stop] = val[:, kp - 1]
    pool = Pool.cat([Pool(*parts) for parts in zip(pool_rows, pool_cols, pool_lb)])
    return torch.cat(keep_rows), torch.cat(keep_cols), worst, pool, tau


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
