"""The sparse exact solver against the dense one, on instances where both run."""

import pytest
import torch

from sae_lens_match import match
from sae_lens_match.assignment import assign
from sae_lens_match.assignment.core import pick_solver
from sae_lens_match.assignment.memory import DenseTooLargeError
from sae_lens_match.matching.synthetic import make_stack


def _points(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _assert_same_optimum(a: torch.Tensor, b: torch.Tensor, **options) -> None:
    dense = assign(a, b, solver="dense")
    sparse = assign(a, b, solver="sparse", **options)
    assert sparse.info["proven_optimal"]
    assert sparse.total == pytest.approx(dense.total, rel=1e-9, abs=1e-9)
    # A valid assignment of the smaller side, costs reported exactly.
    used = sparse.cols[sparse.cols >= 0]
    assert len(used) == min(a.shape[0], b.shape[0]) and len(used.unique()) == len(used)
    exact = ((a[sparse.cols >= 0].double() - b[used].double()) ** 2).sum(1)
    torch.testing.assert_close(sparse.sq_dist[sparse.cols >= 0], exact)
    # The reported gap bound covers float64 rounding only.
    assert 0.0 <= sparse.info["gap_bound"] <= 1e-6 * max(dense.total, 1.0)


@pytest.mark.parametrize("precision", ["int8", "fp32"])
@pytest.mark.parametrize("n_a, n_b", [(300, 300), (200, 450), (450, 200)])
def test_random_points(n_a, n_b, precision):
    _assert_same_optimum(_points(n_a, 24, 0), _points(n_b, 24, 1), precision=precision)


def test_planted_sae_rows_through_match():
    stack = make_stack(n_layers=2, d_in=32, d_sae=512, seed=1)
    dense = match(*stack.saes, solver="dense")
    sparse = match(*stack.saes, solver="sparse")
    assert sparse.total_cost == pytest.approx(dense.total_cost, rel=1e-9)
    assert torch.equal(sparse.permutation, dense.permutation)  # no ties in continuous data
    assert sparse.info["solver"] == "sparse"


def test_rectangular_planted_pair():
    stack = make_stack(n_layers=2, d_in=32, d_sae=256, seed=2)
    wide = make_stack(n_layers=1, d_in=32, d_sae=512, seed=3).saes[0]
    for a, b in ((stack.saes[0], wide), (wide, stack.saes[1])):
        assert match(a, b, solver="sparse").total_cost == pytest.approx(match(a, b, solver="dense").total_cost, rel=1e-9)


def test_ties_on_a_lattice():
    # Integer points on a tiny lattice: thousands of exactly equal costs and many optima.
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 3, (160, 3), generator=g).float()
    b = torch.randint(0, 3, (160, 3), generator=g).float()
    _assert_same_optimum(a, b)


def test_identical_point_sets_cost_zero():
    a = _points(200, 16, 4)
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(5))
    result = assign(a, a[perm], solver="sparse")
    assert result.total == 0.0
    assert torch.equal(perm[result.cols], torch.arange(200))


@pytest.mark.parametrize("options", [{}, {"k_pool": 2}], ids=["default", "small-pool"])
def test_candidate_graph_without_a_full_matching(options):
    # 99 rows of A point along e1, where B has only 3 columns; a hub row leans on all the other
    # columns, so with k = 1 every other column nominates the hub. The candidate graph then
    # matches at most 4 rows: spare columns must be added before the sparse assignment runs.
    g = torch.Generator().manual_seed(6)
    a = torch.zeros(100, 8)
    a[:99, 0] = 1 + 0.1 * torch.rand(99, generator=g)
    a[:99, 1] = 0.01 * torch.randn(99, generator=g)
    a[99, 2:] = 1.0
    b = torch.zeros(100, 8)
    b[:3, 0] = torch.tensor([1.0, 1.5, 2.0])
    b[3:, 2:] = torch.rand(97, 6, generator=g)
    sparse = assign(a, b, solver="sparse", k=1, k_weak=1, **options)
    assert sparse.info["completion_edges"] > 0
    _assert_same_optimum(a, b, k=1, k_weak=1, **options)


def test_sparse_is_deterministic():
    a, b = _points(300, 16, 7), _points(300, 16, 8)
    first, second = assign(a, b, solver="sparse"), assign(a, b, solver="sparse")
    assert torch.equal(first.cols, second.cols)


def test_dense_that_cannot_fit_is_refused_before_allocating():
    # 2M x 2M float64 is 32 TB: refused with a message, not an out-of-memory kill.
    a = torch.zeros(2_000_000, 1)
    with pytest.raises(DenseTooLargeError, match="solver='sparse'"):
        assign(a, a, solver="dense")


def test_auto_picks_dense_where_it_fits():
    assert pick_solver(500, 500) == "dense"
    assert pick_solver(2_000_000, 2_000_000) == "sparse"
    assert pick_solver(8192, 8192) == "sparse"  # fits, but sparse is faster there
    assert assign(_points(50, 4, 9), _points(60, 4, 10)).info["solver"] == "dense"


def test_bad_sparse_options_are_refused():
    a, b = _points(5, 2, 0), _points(5, 2, 1)
    with pytest.raises(ValueError, match="precision must be one of"):
        assign(a, b, solver="sparse", precision="bf16")
    with pytest.raises(ValueError, match="k, k_add, k_pool and max_rounds must be at least 1"):
        assign(a, b, solver="sparse", k=0)


def test_unknown_solver_is_refused():
    with pytest.raises(ValueError, match="Unknown assignment solver 'hungarian'"):
        assign(_points(5, 2, 0), _points(5, 2, 1), solver="hungarian")
