"""Solver registry and the :func:`assign` entry point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from sae_lens_match.assignment.memory import available_bytes, dense_bytes
from sae_lens_match.registry import Registry


@dataclass(frozen=True)
class Assignment:
    """The result of an assignment.

    Attributes:
        cols: ``[n_a]`` int64, the row of B assigned to each row of A; ``-1`` where A has
            more rows than B and this row is left unassigned.
        sq_dist: ``[n_a]`` float64, ``||a_i - b_cols[i]||^2``; ``nan`` where unassigned.
            Solvers may return approximate values; :func:`assign` recomputes them exactly.
        info: solver facts worth reporting (phase timings, gap bound, ...).
    """

    cols: torch.Tensor
    sq_dist: torch.Tensor
    info: dict

    @property
    def total(self) -> float:
        return float(self.sq_dist.nansum())


# A solver takes (a [n_a, D], b [n_b, D]) with n_a <= n_b, both float on one device, and
# returns an Assignment in which every row of A is assigned.
Solver = Callable[..., Assignment]
SOLVERS: Registry[str, Solver] = Registry("assignment solver")


def register_solver(name: str, solver: Solver) -> None:
    """Register an assignment solver under ``name``."""
    SOLVERS.register(name, solver)


def _check_points(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"assign expects 2-D point sets, got shapes {tuple(a.shape)} and {tuple(b.shape)}.")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"Point dimensions differ: A has {a.shape[1]}, B has {b.shape[1]}.")
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError("Cannot assign an empty point set.")
    for name, t in (("A", a), ("B", b)):
        # In row chunks: torch.isfinite on the whole set would briefly hold a copy of it.
        for start in range(0, t.shape[0], 4096):
            if not torch.isfinite(t[start : start + 4096]).all():
                raise ValueError(f"Point set {name} contains NaN or inf values.")


def assign(a: torch.Tensor, b: torch.Tensor, *, solver: str = "auto", **options) -> Assignment:
    """Pair the rows of ``a`` with rows of ``b`` minimising the summed squared distance.

    Args:
        a: ``[n_a, D]`` points.
        b: ``[n_b, D]`` points.
        solver: a name in :data:`SOLVERS` (``"dense"``, ``"sparse"``); ``"auto"`` picks one
            by size and available memory (:func:`pick_solver`).
        options: passed to the solver.

    Returns:
        An :class:`Assignment` indexed by the rows of ``a``. When ``n_a > n_b`` every row of
        ``b`` is used and the remaining rows of ``a`` get ``-1`` (the smaller side is fully
        matched).
    """
    _check_points(a, b)
    if solver == "auto":
        solver = pick_solver(a.shape[0], b.shape[0])
    solve = SOLVERS.get(solver)
    if a.shape[0] <= b.shape[0]:
        result = solve(a, b, **options)
        cols = result.cols.cpu()
    else:
        # Solve the transposed problem so the solver always sees n_a <= n_b, then invert.
        result = solve(b, a, **options)
        cols = torch.full((a.shape[0],), -1, dtype=torch.long)
        cols[result.cols.cpu()] = torch.arange(b.shape[0])
    return Assignment(cols=cols, sq_dist=pair_sq_dist(a, b, cols), info=result.info)


def pair_sq_dist(a: torch.Tensor, b: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``[n_a]`` float64 ``||a_i - b_cols[i]||^2`` computed directly (no cancellation), nan where cols is -1.

    Summed in float64 from the differences, a few hundred rows at a time so that a 1M-row
    problem does not need its points again in float64.
    """
    out = torch.full((a.shape[0],), float("nan"), dtype=torch.float64)
    rows = (cols >= 0).nonzero().squeeze(1)
    if len(rows):
        out[rows] = exact_costs(a, b, rows, cols[rows])
    return out


def exact_costs(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """``[E]`` float64 (CPU) ``||a_rows - b_cols||^2``, summed in float64 from the differences.

    Small batches keep the float64 differences in cache (about twice as fast as large ones);
    both sides are converted before subtracting (a mixed float64 - float32 operation takes a
    slow path on CPU)."""
    out = torch.empty(len(rows), dtype=torch.float64)
    for s in range(0, len(rows), batch):
        diff = a.index_select(0, rows[s : s + batch].to(a.device)).double()
        diff.sub_(b.index_select(0, cols[s : s + batch].to(b.device)).double())
        out[s : s + batch] = torch.linalg.vecdot(diff, diff).cpu()
    return out


# Below this many pairs scipy's dense solver takes a second or less, and the sparse solver's
# fixed costs (survey, rounds) would not pay off.
DENSE_MAX_PAIRS = 1 << 22


def pick_solver(n_a: int, n_b: int) -> str:
    """The solver ``solver="auto"`` uses for an ``n_a x n_b`` problem: dense up to
    :data:`DENSE_MAX_PAIRS` pairs (about 2048 x 2048) if its matrix fits in available memory,
    sparse otherwise. Both are exact; on SAE-like data the sparse one is already faster at
    4096 x 4096 (see ``benchmarks/bench_scale.py``).
    """
    if n_a * n_b <= DENSE_MAX_PAIRS and dense_bytes(n_a, n_b) <= available_bytes():
        return "dense"
    return "sparse"
