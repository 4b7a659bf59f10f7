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
        # Per recorded block holding some of the rows: where they are in it, each row's bound
        # and each column's shift (+inf for columns it does not hold: nothing is proven there).
        found = []
        for block in self.blocks:
            at = torch.searchsorted(block.rows, rows).clamp_max(len(block.rows) - 1)
            held = block.rows[at] == rows
            if held.any():
                row_bound = torch.where(held, block.tau[at] - (u[rows] - block.u0[rows]), -float("inf"))
                col_shift = torch.where(block.cols[cols], v[cols] - block.v0[cols], float("inf"))
                found.append((row_bound, col_shift))
        step = max(1, _TEST_ELEMENTS // max(len(cols), 1))
        for start in range(0, len(rows), step):
            ok = torch.zeros((min(step, len(rows) - start), len(cols)), dtype=torch.bool)
            for row_bound, col_shift in found:
                ok |= row_bound[start : start + step, None] - col_shift[None, :] >= -tol
            fail = ~ok
            bad_r[start : start + step] = fail.any(1)
            bad_c |= fail.any(0)
        return bad_r, bad_c
