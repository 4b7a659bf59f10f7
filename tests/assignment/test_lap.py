"""LP duals of a sparse assignment: a certificate, and the same one however they are started."""

import pytest
import torch

from sae_lens_match.assignment import lap


def _problem(n_a: int, n_b: int, seed: int, per_row: int = 6) -> tuple[lap.Edges, torch.Tensor]:
    """Integer costs (every sum exact in float64) on a random graph that holds a full
    matching, and its optimal matching."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(n_a).repeat_interleave(per_row)
    cols = torch.randint(0, n_b, (n_a * per_row,), generator=g)
    rows, cols = torch.cat([rows, torch.arange(n_a)]), torch.cat([cols, torch.randperm(n_b, generator=g)[:n_a]])
    cost = torch.randint(0, 50, (len(rows),), generator=g).double()
    edges = lap.Edges.build(n_a, n_b, rows, cols, cost)
    return edges, lap.solve(edges)


def _caps(edges: lap.Edges) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((edges.n_a,), 100.0, dtype=torch.float64), torch.full((edges.n_b,), 100.0, dtype=torch.float64)


def _check_certificate(edges: lap.Edges, match: torch.Tensor, u: torch.Tensor, v: torch.Tensor, tol: float) -> None:
    reduced = edges.cost - u[edges.rows] - v[edges.cols]
    assert float(reduced.min()) >= -tol
    matched = edges.find(torch.arange(edges.n_a), match)
    assert float(reduced[matched].abs().max()) <= tol
    free = torch.ones(edges.n_b, dtype=torch.bool)
    free[match] = False
    if edges.n_a < edges.n_b:
        assert float(v.max()) <= tol and float(v[free].abs().max()) <= tol
    # Strong duality: the dual objective is the matching's cost.
    assert float(u.sum() + v.sum()) == pytest.approx(float(edges.cost[matched].sum()), abs=tol * (edges.n_a + edges.n_b))


@pytest.mark.parametrize(("n_a", "n_b"), [(40, 40), (30, 45)])
def test_duals_certify_the_optimum(n_a, n_b):
    edges, match = _problem(n_a, n_b, seed=n_b)
    u, v = lap.duals(edges, match, 1e-9, *_caps(edges))
    _check_certificate(edges, match, u, v, 1e-9)


@pytest.mark.parametrize(("n_a", "n_b"), [(40, 40), (30, 45)])
def test_a_hint_changes_nothing_but_the_start(n_a, n_b):
    # Label-correcting from any upper bound on the answer ends at the answer: warm starts
    # from the answer itself, from noise and from another problem's duals all give the cold
    # start's duals (integer costs: only the hint's own rounding can differ).
    edges, match = _problem(n_a, n_b, seed=n_b)
    cold = lap.duals(edges, match, 1e-9, *_caps(edges))
    other_edges, other_match = _problem(n_a, n_b, seed=n_b + 1)
    g = torch.Generator().manual_seed(0)
    hints = {
        "answer": cold,
        "noise": (100 * torch.randn(n_a, generator=g, dtype=torch.float64), 100 * torch.randn(n_b, generator=g, dtype=torch.float64)),
        "other problem": lap.duals(other_edges, other_match, 1e-9, *_caps(other_edges)),
    }
    for name, hint in hints.items():
        u, v = lap.duals(edges, match, 1e-9, *_caps(edges), hint=hint)
        _check_certificate(edges, match, u, v, 1e-9)
        torch.testing.assert_close((u, v), cold, rtol=0, atol=1e-9, msg=name)


def test_a_matching_that_is_not_optimal_is_refused_with_or_without_a_hint():
    edges, match = _problem(40, 40, seed=3)
    # Swap two rows' columns where both swapped pairs are edges and the swap costs more.
    pos = edges.find(torch.arange(40), match)
    for i in range(40):
        for j in range(i + 1, 40):
            swapped = edges.find(torch.tensor([i, j]), torch.stack([match[j], match[i]]))
            if (swapped >= 0).all() and edges.cost[swapped].sum() > edges.cost[pos[[i, j]]].sum():
                worse = match.clone()
                worse[[i, j]] = worse[[j, i]]
                cold = lap.duals(edges, match, 1e-9, *_caps(edges))
                for hint in (None, cold):
                    with pytest.raises(lap.NotOptimal):
                        lap.duals(edges, worse, 1e-9, *_caps(edges), hint=hint)
                return
    pytest.fail("no costlier swap in the test problem")
