"""Exact assignment on a sparse edge set, and LP duals that certify it.

The primal comes from scipy's LAPJVsp (``min_weight_full_bipartite_matching``). It returns no
duals, so they are rebuilt from the residual graph by label-correcting shortest paths: an
optimal matching has no negative alternating cycle (and, when ``n_a < n_b``, no negative
alternating path to a free column), which is exactly what makes these potentials finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra, min_weight_full_bipartite_matching


@dataclass(frozen=True)
class Edges:
    """A bipartite edge set between ``n_a`` rows and ``n_b`` columns, with exact costs.

    Attributes:
        rows, cols: ``[E]`` int64, unique pairs sorted row-major.
        cost: ``[E]`` float64.
    """

    n_a: int
    n_b: int
    rows: torch.Tensor
    cols: torch.Tensor
    cost: torch.Tensor

    @staticmethod
    def build(n_a: int, n_b: int, rows: torch.Tensor, cols: torch.Tensor, cost: torch.Tensor) -> "Edges":
        """Sort row-major and drop repeated pairs."""
        key, first = _unique_first(rows * n_b + cols)
        return Edges(n_a, n_b, key // n_b, key % n_b, cost[first])

    def add(self, rows: torch.Tensor, cols: torch.Tensor, cost: torch.Tensor) -> "Edges":
        return Edges.build(
            self.n_a, self.n_b, torch.cat([self.rows, rows]), torch.cat([self.cols, cols]), torch.cat([self.cost, cost])
        )

    def __len__(self) -> int:
        return len(self.rows)

    def find(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Position of each pair among the edges, ``-1`` where absent."""
        key = self.rows * self.n_b + self.cols
        want = rows * self.n_b + cols
        pos = torch.searchsorted(key, want).clamp_max(max(len(key) - 1, 0))
        hit = key[pos] == want if len(key) else torch.zeros_like(want, dtype=torch.bool)
        return torch.where(hit, pos, torch.full_like(pos, -1))

    def grid(self) -> tuple[torch.Tensor, float, float]:
        """Costs as integer steps on a grid: ``(steps [E], lo, delta)``, ``cost ~ lo + steps * delta``.

        scipy's LAPJVsp can take minutes where float rounding makes almost-equal path lengths
        compare unequal; on the grid every path length it forms is an exact float64 integer
        (the step leaves ``n_a x`` headroom below 2^52). Rounding moves each cost by at most
        ``delta / 2``, so an optimum on the grid is within ``n_a delta`` of the true one.
        """
        lo = float(self.cost.min()) if len(self.cost) else 0.0
        span = float(self.cost.max()) - lo if len(self.cost) else 0.0
        delta = max(span, 1e-300) * (self.n_a + 2) / 2.0**52
        return torch.round((self.cost - lo) / delta), lo, delta

    def on_grid(self) -> tuple["Edges", float]:
        """The same edges with costs rounded to the grid of :meth:`grid`: ``(edges, delta)``."""
        steps, lo, delta = self.grid()
        return Edges(self.n_a, self.n_b, self.rows, self.cols, lo + steps * delta), delta

    def csr(self) -> csr_matrix:
        """Grid steps plus one as weights (LAPJVsp may read stored zeros as missing edges; a
        constant shift changes every full matching's total by the same amount)."""
        steps, _, _ = self.grid()
        return csr_matrix(((steps + 1).numpy(), self.cols.numpy(), self._indptr().numpy()), shape=(self.n_a, self.n_b))

    def csr_torch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(indptr [n_a + 1], cols [E], cost [E])``."""
        return self._indptr(), self.cols, self.cost

    def transpose(self) -> "Edges":
        order = torch.argsort(self.cols * self.n_a + self.rows)
        return Edges(self.n_b, self.n_a, self.cols[order], self.rows[order], self.cost[order])

    def _indptr(self) -> torch.Tensor:
        indptr = torch.zeros(self.n_a + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(torch.bincount(self.rows, minlength=self.n_a), 0)
        return indptr


def _unique_first(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique values of ``key`` and the position of each one's first occurrence."""
    order = torch.argsort(key, stable=True)
    sorted_key = key[order]
    first = torch.ones(len(key), dtype=torch.bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    return sorted_key[first], order[first]


def solve(edges: Edges) -> torch.Tensor:
    """Minimum-cost matching that covers every row (``n_a <= n_b``).

    Returns:
        ``[n_a]`` int64, the column of each row.

    Raises:
        ValueError: the edges admit no such matching (scipy's error).
    """
    r, c = min_weight_full_bipartite_matching(edges.csr())
    cols = np.empty(edges.n_a, dtype=np.int64)
    cols[r] = c
    return torch.from_numpy(cols)


def segment_positions(start: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``[count.sum()]`` the positions ``start[k], ..., start[k] + count[k] - 1`` of every segment
    ``k``, concatenated in order."""
    return torch.repeat_interleave(start - torch.cumsum(count, 0) + count, count) + torch.arange(int(count.sum()))


def _out_edges(indptr: torch.Tensor, indices: torch.Tensor, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and heads of the CSR edges leaving ``nodes``."""
    pos = segment_positions(indptr[nodes], indptr[nodes + 1] - indptr[nodes])
    return pos, indices[pos]


class NotOptimal(RuntimeError):
    """The matching given to :func:`duals` is not optimal on its edge set."""


def _max_potentials(
    indptr: torch.Tensor,
    heads: torch.Tensor,
    cost: torch.Tensor,
    left_match: torch.Tensor,
    match_cost: torch.Tensor,
    start: torch.Tensor,
    tol: float,
    hint: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest right potentials ``q <= start`` with ``p_l + q_r <= c_lr`` on every edge.

    A matched left node ``l`` has ``p_l = match_cost_l - q[left_match_l]`` (tight on its
    matched edge); an unmatched one has ``p_l = 0``. Label-correcting (Bellman-Ford) over
    the left nodes whose potential changed, from ``start``, or, given a ``hint``, from the
    upper bound :func:`_upper_bound` computes with it: label-correcting from any point above
    the answer ends at the answer, and from a close one in a few passes instead of hundreds.

    Args:
        indptr, heads, cost: CSR of the edges from left to right nodes.
        left_match: ``[n_left]`` right node matched to each left node, ``-1`` if none.
        match_cost: ``[n_left]`` cost of that matched edge (ignored where unmatched).
        start: ``[n_right]`` upper bounds on ``q``.
        hint: ``[n_right]`` potentials close to the answer (feasible or not), e.g. the
            duals of the previous round.

    Returns:
        ``(p, q)``.

    Raises:
        NotOptimal: a right node without a left partner had to go below its start value,
            or potentials keep falling (a negative alternating cycle).
    """
    n_left = len(left_match)
    matched = left_match >= 0
    right_to_left = torch.full((len(start),), -1, dtype=torch.long)
    right_to_left[left_match[matched]] = matched.nonzero().squeeze(1)
    q = start.clone() if hint is None else _upper_bound(indptr, heads, cost, left_match, match_cost, start, hint)
    if (q[right_to_left < 0] < start[right_to_left < 0] - tol).any():
        raise NotOptimal("a cheaper alternating path ends at an unmatched column")
    p = torch.where(matched, match_cost - q[left_match.clamp_min(0)], torch.zeros_like(match_cost))
    frontier = torch.arange(n_left)
    for _ in range(n_left + 2):
        if not len(frontier):
            return p, q
        pos, nbr = _out_edges(indptr, heads, frontier)
        offer = cost[pos] - p[torch.repeat_interleave(frontier, indptr[frontier + 1] - indptr[frontier])]
        lowered = q.clone().scatter_reduce_(0, nbr, offer, "amin")
        changed = (lowered < q - tol).nonzero().squeeze(1)
        q[changed] = lowered[changed]
        owner = right_to_left[changed]
        if (owner < 0).any():
            raise NotOptimal("a cheaper alternating path ends at an unmatched column")
        p[owner] = match_cost[owner] - q[left_match[owner]]
        frontier = owner
    raise NotOptimal("negative alternating cycle")


def _upper_bound(
    indptr: torch.Tensor,
    heads: torch.Tensor,
    cost: torch.Tensor,
    left_match: torch.Tensor,
    match_cost: torch.Tensor,
    start: torch.Tensor,
    hint: torch.Tensor,
) -> torch.Tensor:
    """``[n_right]`` upper bound on :func:`_max_potentials`'s answer, by one Dijkstra.

    The answer is a shortest-path distance: from a source to every right node ``r`` with
    weight ``start_r`` (or ``c_lr`` through an unmatched left node), and from
    ``left_match_l`` to ``r`` with weight ``c_lr - match_cost_l``. Weights reduced by the
    ``hint`` potentials and clamped at zero (Dijkstra needs no negative weight) are never
    below the reduced true ones, so the distances they give are never below the answer; with
    a hint near the answer, only the few edges it violates were clamped.
    """
    n_left, n_right = len(left_match), len(start)
    tails = torch.repeat_interleave(torch.arange(n_left), indptr[1:] - indptr[:-1])
    free = left_match[tails] < 0
    first = start.clone().scatter_reduce_(0, heads[free], cost[free], "amin")
    own = ~free & (heads != left_match[tails])
    src = torch.cat([left_match[tails[own]], torch.full((n_right,), n_right)])
    dst = torch.cat([heads[own], torch.arange(n_right)])
    weight = torch.cat([cost[own] - match_cost[tails[own]], first])
    phi = torch.cat([hint, (hint - first).max().reshape(1)])
    reduced = (weight + phi[src] - phi[dst]).clamp_(min=0.0)
    order = torch.argsort(src, stable=True)
    indptr_g = torch.zeros(n_right + 2, dtype=torch.long)
    indptr_g[1:] = torch.cumsum(torch.bincount(src, minlength=n_right + 1), 0)
    # Explicitly stored zeros are edges to scipy's csgraph.
    graph = csr_matrix((reduced[order].numpy(), dst[order].numpy(), indptr_g.numpy()), shape=(n_right + 1, n_right + 1))
    dist = torch.from_numpy(dijkstra(graph, indices=n_right))[:n_right]
    return torch.minimum(start, dist - phi[-1] + hint)


def duals(
    edges: Edges,
    match: torch.Tensor,
    tol: float,
    cap_u: torch.Tensor,
    cap_v: torch.Tensor,
    hint: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual potentials certifying that ``match`` is optimal on ``edges``.

    Returns ``(u [n_a], v [n_b])`` float64 with ``u_i + v_j <= c_ij + tol`` on every edge,
    equality on matched edges, and, when ``n_a < n_b``, ``v <= 0`` with ``v = 0`` on free
    columns (the LP dual of "every row matched, every column at most once").

    The dual optimum is a polytope; pairs outside the edge set are easiest to certify from a
    point inside it, so this is the mean of two vertices: the largest ``v <= cap_v`` and the
    largest ``u <= cap_u`` (``cap_*`` say how high a potential may go before pairs left out
    can no longer be certified cheaply). Where columns are free and the second vertex breaks
    ``v <= 0``, the first alone is returned. (Either vertex alone leaves several times more
    to recheck on SAE-like data.)

    ``hint`` (e.g. the previous round's duals) changes how fast, not what: the first vertex
    starts near it, the second near the first (see :func:`_max_potentials`).
    """
    n_a, n_b = edges.n_a, edges.n_b
    match_cost = _matched_costs(edges, match)
    col_match = torch.full((n_b,), -1, dtype=torch.long)
    col_match[match] = torch.arange(n_a)
    if n_a < n_b:
        cap_v = torch.where(col_match >= 0, cap_v.clamp(max=0.0), torch.zeros_like(cap_v))
    u_a, v_a = _max_potentials(*edges.csr_torch(), match, match_cost, cap_v, tol, None if hint is None else hint[1])
    col_cost = torch.zeros(n_b, dtype=torch.float64)
    col_cost[match] = match_cost
    v_b, u_b = _max_potentials(*edges.transpose().csr_torch(), col_match, col_cost, cap_u, tol, u_a)
    if n_a < n_b and bool((v_b > tol).any()):
        return u_a, v_a
    return (u_a + u_b) / 2, (v_a + v_b) / 2


def _matched_costs(edges: Edges, match: torch.Tensor) -> torch.Tensor:
    """``[n_a]`` cost of each row's matched edge."""
    pos = edges.find(torch.arange(edges.n_a), match)
    if (pos < 0).any():
        raise ValueError("the matching uses a pair that is not an edge")
    return edges.cost[pos]
