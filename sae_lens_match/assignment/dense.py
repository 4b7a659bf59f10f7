"""Exact assignment on the dense cost matrix (scipy's Jonker-Volgenant solver)."""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from sae_lens_match.assignment.core import Assignment, register_solver
from sae_lens_match.assignment.memory import check_dense_fits


def squared_distances(a: torch.Tensor, b: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """``[n_a, n_b]`` float64 squared Euclidean distances, computed in row chunks.

    The matmul runs in the inputs' dtype and device (CUDA when they live there); each chunk
    is moved to float64 on the CPU so the solver sees exact, non-negative costs.
    """
    b_sq = (b.double() ** 2).sum(1)
    out = torch.empty((a.shape[0], b.shape[0]), dtype=torch.float64)
    for start in range(0, a.shape[0], chunk_size):
        a_chunk = a[start : start + chunk_size]
        a_sq = (a_chunk.double() ** 2).sum(1, keepdim=True)
        dots = (a_chunk @ b.T).double()
        out[start : start + chunk_size] = (a_sq + b_sq - 2 * dots).clamp_min(0).cpu()
    return out


def dense_assign(a: torch.Tensor, b: torch.Tensor, *, chunk_size: int = 4096) -> Assignment:
    """Exact minimum-cost assignment of every row of ``a`` (``n_a <= n_b``) to a row of ``b``.

    Raises:
        DenseTooLargeError: the ``n_a x n_b`` float64 matrix would not fit in available memory.
    """
    check_dense_fits(a.shape[0], b.shape[0])
    t0 = time.perf_counter()
    cost = squared_distances(a, b, chunk_size).numpy()
    t1 = time.perf_counter()
    rows, cols = linear_sum_assignment(cost)
    t2 = time.perf_counter()
    full_cols = np.full(a.shape[0], -1, dtype=np.int64)
    full_cols[rows] = cols
    return Assignment(
        cols=torch.from_numpy(full_cols),
        sq_dist=torch.from_numpy(cost[rows, cols]),
        info={"solver": "dense", "seconds_scores": t1 - t0, "seconds_assignment": t2 - t1, "gap_bound": 0.0},
    )


register_solver("dense", dense_assign)
