"""What a pricing pass leaves for later rounds, so that they rescore only what they must.

A pricing pass bounds ``c_ij - u0_i - v0_j`` from below for every pair of a block it rescores.
Two things of that survive a change of duals to ``(u, v)`` (``du = u - u0``, ``dv = v - v0``):

- :class:`Pool`: each rescored row's ``k_pool`` pairs with the smallest bounds, kept with a lower
  bound on their *cost*, ``lb_ij + u0_i + v0_j``: priced again at any later duals for free.
- :class:`Coverage`: for every other pair of the block, ``lb_ij >= tau_i`` (the row's largest
  pooled bound), so ``c_ij - u_i - v_j >= tau_i - du_i - dv_j``. Where that is ``>= -tol`` the
  pair is proven without being scored again.

After a re-solve the duals of most near-tie rows move by less than their ``tau``, so a
later pass rescores only the pairs whose bound no longer holds (and pairs never rescored).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sae_lens_match.assignment import lap

NO_INDEX = torch.empty(0, dtype=torch.long)
# Pairs tested at once (float64): a few MiB stay in cache.
_TEST_ELEMENTS = 1 << 21


def any_along(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """``mask.any(dim)`` for a bool ``mask``: on CPU a bool reduction takes a slow path, and the
    maximum of the same bytes read as uint8 is vectorised (10-20x faster)."""
    return mask.view(torch.uint8).amax(dim).bool() if mask.shape[dim] else mask.any(dim)


@dataclass(frozen=True)
class Pool:
    """Pairs a pricing pass found nearly tight.

    Attributes:
        rows, cols: ``[P]`` int64 pairs (outside the graph when they were pooled).
        cost_lb: ``[P]`` float64 lower bounds on their costs.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    cost_lb: torch.Tensor

    @staticmethod
    def empty() -> "Pool":
        return Pool(NO_INDEX, NO_INDEX, torch.empty(0, dtype=torch.float64))

    @staticmethod
    def cat(pools: list["Pool"]) -> "Pool":
        pools = [Pool.empty(), *pools]
        return Pool(*(torch.cat([getattr(p, f) for p in pools]) for f in ("rows", "cols", "cost_lb")))

    def __len__(self) -> int:
        return len(self.rows)

    def without(self, edges: lap.Edges) -> "Pool":
        """The pairs that are not graph edges (those are feasible by construction)."""
        keep = edges.find(self.rows, self.cols) < 0
        return Pool(self.rows[keep], self.cols[keep], self.cost_lb[keep])

    def reduced_lb(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``[P]`` lower bounds on ``c - u - v``."""
        return self.cost_lb - u[self.rows] - v[self.cols]


@dataclass
class _Block:
    rows: torch.Tensor  # [R] sorted
    cols: torch.Tensor  # [n_b] bool mask
    tau: torch.Tensor  # [R] float64
    u0: torch.Tensor  # [n_a] duals of its pass
    v0: torch.Tensor  # [n_b]


@dataclass
class Coverage:
    """The blocks earlier passes rescored, and the bound each left on its rows' other pairs.

    A pair is covered by any recorded block holding it; blocks of older passes stay valid
    (their bounds are relative to their own pass's duals).
    """

    n_a: int
    n_b: int
    blocks: list[_Block] = field(default_factory=list)
    _duals: tuple[torch.Tensor, torch.Tensor] | None = None

    def new_pass(self, u: torch.Tensor, v: torch.Tensor) -> None:
        """Start recording a pass taken at duals ``(u, v)``."""
        self._duals = (u.clone(), v.clone())

    def record(self, rows: torch.Tensor, cols: torch.Tensor, tau: torch.Tensor) -> None:
        """Sorted ``rows`` were rescored against ``cols`` in the current pass; ``tau [len(rows)]``
        bounds the reduced costs of their pairs outside the pool and graph from below."""
        if self._duals is None:
            raise RuntimeError("Coverage.record before new_pass.")
        mask = torch.zeros(self.n_b, dtype=torch.bool)
        mask[cols] = True
        self.blocks.append(_Block(rows, mask, tau, *self._duals))

    def unproven(
        self, rows: torch.Tensor, cols: torch.Tensor, u: torch.Tensor, v: torch.Tensor, tol: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Which of the pairs ``rows x cols`` (``rows`` sorted) no block proves to have
        ``c - u - v >= -tol``; pooled pairs are priced separately and graph edges need nothing.

        Returns ``([len(rows)] bool, [len(cols)] bool)``: the rows and the columns of those pairs
        (their product holds every one of them).
        """
        bad_r = torch.zeros(len(rows), dtype=torch.bool)
        bad_c = torch.zeros(len(cols), dtype=torch.bool)
        found = self._bounds(rows, cols, u, v)
        pairs = self.failing_pairs(rows, cols, u, v, tol, found)
        if pairs is not None:
            bad_r[pairs[0]], bad_c[pairs[1]] = True, True
            return bad_r, bad_c
        step = max(1, _TEST_ELEMENTS // max(len(cols), 1))
        for start in range(0, len(rows), step):
            ok = torch.zeros((min(step, len(rows) - start), len(cols)), dtype=torch.bool)
            for row_bound, col_shift in found:
                # Only the rows a block holds: older passes' blocks each hold a few.
                held = (row_bound[start : start + step] > -float("inf")).nonzero().squeeze(1)
                if len(held):
                    ok[held] |= row_bound[start + held, None] - col_shift[None, :] >= -tol
            fail = ~ok
            bad_r[start : start + step] = any_along(fail, 1)
            bad_c |= any_along(fail, 0)
        return bad_r, bad_c

    def failing_pairs(
        self, rows: torch.Tensor, cols: torch.Tensor, u: torch.Tensor, v: torch.Tensor, tol: float, found: list | None = None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The pairs of ``rows x cols`` no block proves, as local ``(i, j)`` indices, or None
        when testing them whole (:meth:`unproven`) is cheaper: no block holds the rows, or more
        than :data:`_MAX_LISTED` pairs, or a ``1 / _LISTING_COST`` share of all, may be left.

        A block's test ``tau_i - du_i >= dv_j - tol`` is separable: with the columns sorted by
        ``dv_j``, the pairs it leaves in a row are a prefix of one order, found by a binary
        search. Each row takes the block that leaves it fewest; only those pairs are tested
        against the other blocks.
        """
        found = self._bounds(rows, cols, u, v) if found is None else found
        if not found:
            return None
        # Per block, the columns in descending shift and how many of them each row fails with;
        # each row is listed from the block that leaves it fewest.
        orders, n_fail = [], []
        for row_bound, col_shift in found:
            order = torch.argsort(col_shift, descending=True)
            orders.append(order)
            n_fail.append(len(col_shift) - torch.searchsorted(col_shift[order].flip(0), row_bound + tol / 2, right=True))
        n_fail, best = torch.stack(n_fail).min(0)
        total = int(n_fail.sum())
        # A listed pair costs several times a pair tested in a whole block.
        if total > min(_MAX_LISTED, len(rows) * len(cols) // _LISTING_COST):
            return None
        first = torch.cumsum(n_fail, 0) - n_fail  # each row's first listed pair
        i = torch.repeat_interleave(torch.arange(len(rows)), n_fail)
        rank = torch.arange(total) - first[i]
        j = torch.stack(orders)[best[i], rank]
        fail = torch.ones(total, dtype=torch.bool)
        for row_bound, col_shift in found:
            # Only pairs of rows the block holds: it proves nothing for the others.
            held = (row_bound > -float("inf")).nonzero().squeeze(1)
            if len(held) == len(rows):
                fail &= row_bound[i] - col_shift[j] < -tol
                continue
            at = lap.segment_positions(first[held], n_fail[held])
            fail[at] &= row_bound[i[at]] - col_shift[j[at]] < -tol
        return i[fail], j[fail]

    def _bounds(self, rows: torch.Tensor, cols: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per recorded block holding some of the rows: each row's bound (``-inf`` for rows it
        does not hold; finite) and each column's shift (``+inf`` for columns it does not hold)."""
        found = []
        for block in self.blocks:
            at = torch.searchsorted(block.rows, rows).clamp_max(len(block.rows) - 1)
            held = block.rows[at] == rows
            if held.any():
                row_bound = torch.where(held, block.tau[at] - (u[rows] - block.u0[rows]), -float("inf"))
                # A row whose whole block was pooled has tau = inf; kept finite, it still
                # proves nothing in columns the block does not hold (inf - inf would be nan).
                row_bound = row_bound.clamp(max=torch.finfo(torch.float64).max)
                col_shift = torch.where(block.cols[cols], v[cols] - block.v0[cols], float("inf"))
                found.append((row_bound, col_shift))
        return found


# Pairs listed at most (16 bytes each), and how many pairs of a block tested whole cost as
# much as one listed pair tested (gathers against contiguous passes).
_MAX_LISTED = 1 << 23
_LISTING_COST = 8
