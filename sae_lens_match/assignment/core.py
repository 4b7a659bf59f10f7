"""Solver registry and the :func:`assign` entry point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


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
SOLVERS: dict[str, Solver] = {}


def register_solver(name: str, solver: Solver) -> None:
    """Register an assignment solver under ``name`` (SAELens registry style)."""
    if name in SOLVERS and SOLVERS[name] is not solver:
        raise ValueError(f"An assignment solver named {name!r} is already registered.")
    SOLVERS[name] = solver


def _check_points(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"assign expects 2-D point sets, got shapes {tuple(a.shape)} and {tuple(b.shape)}.")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"Point dimensions differ: A has {a.shape[1]}, B has {b.shape[1]}.")
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError("Cannot assign an empty point set.")
    for name, t in (("A", a), ("B", b)):
        if not torch.isfinite(t).all():
            raise ValueError(f"Point set {name} contains NaN or inf values.")


def assign(a: torch.Tensor, b: torch.Tensor, *, solver: str = "auto", **options) -> Assignment:
    """Pair the rows of ``a`` with rows of ``b`` minimising the summed squared distance.

    Args:
        a: ``[n_a, D]`` points.
        b: ``[n_b, D]`` points.
        solver: a name in :data:`SOLVERS` (``"dense"``; ``"auto"`` picks one by size).
        options: passed to the solver.

    Returns:
        An :class:`Assignment` indexed by the rows of ``a``. When ``n_a > n_b`` every row of
        ``b`` is used and the remaining rows of ``a`` get ``-1`` (the smaller side is fully
        matched).
    """
    _check_points(a, b)
    if solver == "auto":
        solver = _pick_solver(a, b)
    if solver not in SOLVERS:
        raise ValueError(f"Unknown assignment solver {solver!r}; registered: {sorted(SOLVERS)}.")
    if a.shape[0] <= b.shape[0]:
        result = SOLVERS[solver](a, b, **options)
        cols = result.cols.cpu()
    else:
        # Solve the transposed problem so the solver always sees n_a <= n_b, then invert.
        result = SOLVERS[solver](b, a, **options)
        cols = torch.full((a.shape[0],), -1, dtype=torch.long)
        cols[result.cols.cpu()] = torch.arange(b.shape[0])
    return Assignment(cols=cols, sq_dist=pair_sq_dist(a, b, cols), info=result.info)


def pair_sq_dist(a: torch.Tensor, b: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``[n_a]`` float64 ``||a_i - b_cols[i]||^2`` computed directly (no cancellation), nan where cols is -1."""
    out = torch.full((a.shape[0],), float("nan"), dtype=torch.float64)
    rows = (cols >= 0).nonzero().squeeze(1)
    if len(rows):
        diff = a[rows.to(a.device)].double() - b[cols[rows].to(b.device)].double()
        out[rows] = (diff**2).sum(1).cpu()
    return out


def _pick_solver(a: torch.Tensor, b: torch.Tensor) -> str:
    return "dense"
