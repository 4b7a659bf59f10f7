"""Rounds that price kept pairs and skip proven rows: exact on adversarial cases, rigorous pair by pair."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from sae_lens_match.assignment import assign, lap, pricing, sparse
from sae_lens_match.assignment.core import exact_costs
from sae_lens_match.assignment.pricing import Coverage, Pool
from sae_lens_match.assignment.scores import Scorer, _int_mm, has_onednn_int8
from sae_lens_match.assignment.survey import survey
from sae_lens_match.matching import Hardness, feature_rows, make_pair


def _scipy_total(a: torch.Tensor, b: torch.Tensor) -> float:
    """The optimum from scipy on the float64 matrix of exact squared distances."""
    cost = ((a.double()[:, None, :] - b.double()[None, :, :]) ** 2).sum(-1).numpy()
    r, c = linear_sum_assignment(cost)
    return float(cost[r, c].sum())


def _check(a: torch.Tensor, b: torch.Tensor, **options) -> dict:
    result = assign(a, b, solver="sparse", **options)
    assert result.info["proven_optimal"]
    want = _scipy_total(a, b)
    assert result.total == pytest.approx(want, rel=1e-9, abs=1e-9)
    used = result.cols[result.cols >= 0]
    assert len(used) == min(a.shape[0], b.shape[0]) == len(used.unique())
    return result.info


def _near_tie_block(n: int, d: int, unmatched: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Matched rows with small noise, plus a block of unit random rows on both sides whose best
    partners are near-ties (every cost within a few percent of every other)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g)
    a /= a.norm(dim=1, keepdim=True)
    b = a[torch.randperm(n, generator=g)] + 0.05 * torch.randn(n, d, generator=g) / d**0.5
    m = int(n * unmatched)
    b[:m] = torch.randn(m, d, generator=g)
    b[:m] /= b[:m].norm(dim=1, keepdim=True)
    return a, b


def test_near_tie_block_rescores_less_each_pass_and_stays_exact():
    a, b = _near_tie_block(400, 48, 0.5, seed=0)
    # Few survey candidates and a small pool: many passes over the near-tie block.
    info = _check(a, b, k=2, k_weak=4, k_add=2, k_pool=4)
    assert info["rounds"] >= 3
    # Later passes rescore only what the duals' change left unproven: the last proves
    # optimality without rescoring the block again.
    assert info["rescored_pairs"][-1] < max(info["rescored_pairs"]) // 10, info


def test_ties_everywhere():
    # Integer points on a tiny lattice: thousands of exactly equal costs and many optima.
    g = torch.Generator().manual_seed(3)
    a = torch.randint(0, 3, (150, 4), generator=g).float()
    b = torch.randint(0, 3, (150, 4), generator=g).float()
    _check(a, b, k=2, k_weak=3, k_add=1, k_pool=2)


def test_identical_norms_random_directions():
    # The pure near-tie block: no counterparts at all, every row at the same norm.
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(250, 32, generator=g), torch.randn(250, 32, generator=g)
    a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    _check(a, b, k=2, k_weak=4, k_add=2, k_pool=3)


@pytest.mark.parametrize("n_a, n_b", [(150, 330), (330, 150)])
def test_rectangular_near_ties(n_a, n_b):
    a, _ = _near_tie_block(n_a, 24, 0.0, seed=7)
    _, b = _near_tie_block(n_b, 24, 0.6, seed=8)
    _check(a, b, k=2, k_weak=4, k_add=2, k_pool=4)


@pytest.mark.parametrize("unmatched", [0.0, 0.5])
def test_planted_pairs_of_every_hardness(unmatched):
    pair = make_pair(24, 300, Hardness(unmatched=unmatched, noise=0.3, threshold_scale=1.2), seed=1)
    a, b = feature_rows(pair.saes[0]), feature_rows(pair.saes[1])
    _check(a, b, k=3, k_weak=6, k_add=2, k_pool=4)


def _setup(seed: int = 0):
    a, b = _near_tie_block(120, 16, 0.5, seed=seed)
    sv = survey(a, b, k=2, k_weak=3, precision="fp32", chunk_size=32)
    edges = sparse._exact_edges(a, b, sv.rows, sv.cols)
    exact = ((a.double()[:, None, :] - b.double()[None, :, :]) ** 2).sum(-1)
    return a, b, sv, edges, exact


def test_pool_bounds_are_lower_bounds_on_cost():
    a, b, sv, edges, exact = _setup()
    g = torch.Generator().manual_seed(1)
    u = sv.sq_a * torch.rand(120, generator=g, dtype=torch.float64)
    v = -sv.sq_b * torch.rand(120, generator=g, dtype=torch.float64)
    rows, cols = torch.arange(120), torch.arange(120)
    *_, pool, tau = sparse.recheck(a, b, sv, rows, cols, u, v, edges, k_add=2, k_pool=5, tol=0.0, chunk_size=32)
    assert len(pool) > 0
    assert (pool.cost_lb <= exact[pool.rows, pool.cols]).all()
    # Every pair in neither the pool, the new pairs nor the graph is bounded by its row's tau.
    reduced = exact - u[:, None] - v[None, :]
    listed = torch.zeros_like(exact, dtype=torch.bool)
    listed[pool.rows, pool.cols] = True
    listed[edges.rows, edges.cols] = True
    found_rows, found_cols, *_ = sparse.recheck(a, b, sv, rows, cols, u, v, edges, k_add=2, k_pool=5, tol=0.0, chunk_size=32)
    listed[found_rows, found_cols] = True
    assert (reduced[~listed] >= tau[:, None].expand_as(reduced)[~listed]).all()


def test_coverage_proves_only_what_holds():
    # Rescore a block at one set of duals, move the duals, and check pair by pair that every
    # row the coverage calls proven has no pair outside the pool and graph below -tol.
    a, b, sv, edges, exact = _setup(seed=2)
    g = torch.Generator().manual_seed(3)
    u0 = sv.sq_a * torch.rand(120, generator=g, dtype=torch.float64) * 0.5
    v0 = -sv.sq_b * torch.rand(120, generator=g, dtype=torch.float64) * 0.5
    rows, cols = torch.arange(0, 120, 2), torch.arange(10, 110)
    found_rows, found_cols, _, pool, tau = sparse.recheck(a, b, sv, rows, cols, u0, v0, edges, k_add=2, k_pool=6, tol=0.0, chunk_size=16)
    coverage = Coverage(120, 120)
    coverage.new_pass(u0, v0)
    coverage.record(rows, cols, tau)
    listed = torch.zeros_like(exact, dtype=torch.bool)
    listed[pool.rows, pool.cols] = True
    listed[edges.rows, edges.cols] = True
    listed[found_rows, found_cols] = True
    tol = 1e-9
    n_proven = 0
    for scale in (0.0, 0.01, 0.1, 1.0):
        u = u0 + scale * torch.randn(120, generator=g, dtype=torch.float64)
        v = v0 + scale * torch.randn(120, generator=g, dtype=torch.float64)
        bad_r, bad_c = coverage.unproven(rows, cols, u, v, tol)
        reduced = exact[rows][:, cols] - u[rows, None] - v[None, cols]
        bad = (reduced < -tol) & ~listed[rows][:, cols]
        assert not (bad & ~(bad_r[:, None] & bad_c[None, :])).any()
        n_proven += int((~bad_r).sum())
        # Columns outside the recorded block, and rows never rescored, are never proven.
        assert coverage.unproven(rows, torch.tensor([0, 5]), u, v, tol)[0].all()
        assert coverage.unproven(torch.tensor([1, 3]), cols, u, v, tol)[0].all()
    assert n_proven > 0  # small moves leave rows proven


@pytest.mark.parametrize("listed", [True, False], ids=["listing", "whole-block"])
def test_coverage_finds_exactly_the_pairs_no_block_proves(listed, monkeypatch):
    # Three overlapping recorded blocks at different duals, some rows with an infinite tau
    # (proven in their block's columns, not elsewhere); the rows and columns reported
    # unproven must be exactly those of the pairs that no block proves, pair by pair, whether
    # the pairs the best block leaves are listed or the blocks are tested whole.
    monkeypatch.setattr(pricing, "_LISTING_COST", 1)
    if not listed:
        monkeypatch.setattr(pricing, "_MAX_LISTED", 0)
    g = torch.Generator().manual_seed(7)
    n_a, n_b = 200, 300
    u_base, v_base = torch.randn(n_a, generator=g, dtype=torch.float64), torch.randn(n_b, generator=g, dtype=torch.float64)
    near = lambda x: x + 0.5 * torch.randn(x.shape, generator=g, dtype=torch.float64)  # noqa: E731
    coverage = Coverage(n_a, n_b)
    for _ in range(3):
        coverage.new_pass(near(u_base), near(v_base))
        rows = torch.randperm(n_a, generator=g)[:170].sort().values
        cols = torch.randperm(n_b, generator=g)[:280]
        tau = near(torch.full((170,), 2.0, dtype=torch.float64))
        tau[:20] = float("inf")  # rows whose whole block went to the pool
        coverage.record(rows, cols, tau)
    u, v = near(u_base), near(v_base)
    rows, cols = torch.randperm(n_a, generator=g)[:150], torch.randperm(n_b, generator=g)[:250]
    proven = torch.zeros(len(rows), len(cols), dtype=torch.bool)
    for block in coverage.blocks:
        held = torch.isin(rows, block.rows)
        tau = torch.full((len(rows),), -float("inf"), dtype=torch.float64)
        tau[held] = block.tau[torch.searchsorted(block.rows, rows[held])]
        bound = tau[:, None] - (u - block.u0)[rows][:, None] - (v - block.v0)[cols][None, :]
        proven |= block.cols[cols][None, :] & (bound >= -1e-9)
    bad_r, bad_c = coverage.unproven(rows, cols, u, v, 1e-9)
    assert 0 < int(bad_r.sum()) < len(rows) and 0 < int(bad_c.sum()) < len(cols)
    assert torch.equal(bad_r, (~proven).any(1)) and torch.equal(bad_c, (~proven).any(0))


def _pass(a, b, sv, edges, u, v, pool, near):
    coverage = Coverage(edges.n_a, edges.n_b)
    return sparse._pricing_pass(a, b, sv, u, v, edges, pool, coverage, k_add=1, k_pool=6, tol=1e-9, near=near, chunk_size=32, last=False)


def test_nearly_tight_pairs_join_only_a_pass_with_violations():
    # At the graph optimum's duals the near-tie block has violations: a pass adds them and,
    # given a margin, exactly the kept pairs whose bound is below it. With every bound raised
    # past the worst violation, nothing is added, however wide the margin.
    a, b, sv, edges, exact = _setup(seed=4)
    match = lap.solve(edges)
    u, v = lap.duals(edges, match, 1e-9, sv.sq_a, sv.sq_b)
    rows0, cols0, worst, pool, _ = _pass(a, b, sv, edges, u, v, Pool.empty(), near=0.0)
    assert len(rows0) and len(pool)
    reduced = pool.reduced_lb(u, v)
    near = float(reduced[reduced > 0].median())
    rows1, cols1, _, pool1, _ = _pass(a, b, sv, edges, u, v, Pool.empty(), near=near)
    close = reduced < near
    assert 0 < int((close & (reduced > 0)).sum()) < len(pool)
    key = lambda r, c: set((r * b.shape[0] + c).tolist())  # noqa: E731
    assert key(rows1, cols1) == key(rows0, cols0) | key(pool.rows[close], pool.cols[close])
    assert (exact[rows0, cols0] - u[rows0] - v[cols0] < 0).all()
    lowered = u - 2 * float(-worst.min())
    rows2, _, worst2, pool2, _ = _pass(a, b, sv, edges, lowered, v, pool1, near=float("inf"))
    assert float(worst2.min()) >= 0 and len(pool2) and len(rows2) == 0


def test_pool_prices_at_new_duals_and_drops_graph_edges():
    a, b, sv, edges, exact = _setup()
    pool = Pool(torch.tensor([0, 1, 2]), torch.tensor([5, 6, 7]), torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    u, v = torch.zeros(120, dtype=torch.float64), torch.zeros(120, dtype=torch.float64)
    u[1], v[7] = 2.5, 1.0
    assert pool.reduced_lb(u, v).tolist() == [1.0, -0.5, 2.0]
    with_edge = edges.add(torch.tensor([1]), torch.tensor([6]), torch.tensor([2.0], dtype=torch.float64))
    assert pool.without(with_edge).rows.tolist() == [0, 2]


# ----- CUDA-only branches, forced on the CPU ------------------------------------------------


@pytest.mark.parametrize("m", [1, 5, 16, 17, 40])
def test_int_mm_under_cuda_rules_equals_plain(m):
    g = torch.Generator().manual_seed(m)
    a = torch.randint(-127, 128, (m, 64), generator=g, dtype=torch.int8)
    b_t = torch.randint(-127, 128, (64, 24), generator=g, dtype=torch.int8)
    assert torch.equal(_int_mm(a, b_t, cuda_rules=True), _int_mm(a, b_t, cuda_rules=False))
    assert torch.equal(_int_mm(a, b_t, cuda_rules=False), a.int() @ b_t.int())


def test_int_mm_under_cuda_rules_refuses_unpadded_widths():
    a = torch.zeros((20, 60), dtype=torch.int8)
    with pytest.raises(ValueError, match="multiples of 8"):
        _int_mm(a, torch.zeros((60, 24), dtype=torch.int8), cuda_rules=True)


def test_scorer_and_survey_under_cuda_rules_equal_the_cpu_path():
    # Odd sizes everywhere: B not a multiple of 8, blocks narrower and ragged, chunks of <= 16 rows.
    g = torch.Generator().manual_seed(9)
    a, b = torch.randn(45, 37, generator=g), torch.randn(203, 37, generator=g)
    cpu, cuda = Scorer(a, b, "int8", cuda_rules=False), Scorer(a, b, "int8", cuda_rules=True)
    for start, stop, width in ((0, 7, 13), (7, 23, 64), (23, 45, None)):
        for (c0, x), (c1, y) in zip(cpu.column_blocks(start, stop, width=width), cuda.column_blocks(start, stop, width=width)):
            assert c0 == c1 and torch.equal(x, y)
    plain = survey(a, b, k=2, k_weak=4, precision="int8", chunk_size=16, cuda_rules=False)
    forced = survey(a, b, k=2, k_weak=4, precision="int8", chunk_size=16, cuda_rules=True)
    assert torch.equal(plain.rows, forced.rows) and torch.equal(plain.cols, forced.cols)
    assert torch.equal(plain.rho_a, forced.rho_a) and torch.equal(plain.rho_b, forced.rho_b)


@pytest.mark.skipif(not has_onednn_int8(), reason="this PyTorch has no oneDNN int8 linear")
def test_onednn_int8_scores_equal_int_mm_bit_for_bit():
    # Ragged blocks, a zero row on each side (scale 0 after the cosine scaling), both scalings.
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(45, 37, generator=g), torch.randn(203, 37, generator=g)
    a[3], b[100] = 0, 0
    onednn, plain = Scorer(a, b, "int8", onednn=True), Scorer(a, b, "int8", onednn=False)
    row, col = torch.rand(45, generator=g), torch.rand(203, generator=g)
    col[100] = 0
    for start, stop, width in ((0, 7, 13), (7, 23, 64), (23, 45, None)):
        blocks = zip(onednn.column_blocks(start, stop, row[start:stop], col, width), plain.column_blocks(start, stop, row[start:stop], col, width))
        for (c0, x), (c1, y) in blocks:
            assert c0 == c1 and torch.equal(x, y)
    assert onednn._packed and not plain._packed
    with pytest.raises(ValueError, match="onednn=True needs"):
        Scorer(a, b, "int8", onednn=True, cuda_rules=True)


def test_exact_costs_batches_agree():
    a, b, *_ = _setup()
    rows, cols = torch.arange(0, 120, 3), torch.arange(1, 121, 3)
    want = ((a[rows].double() - b[cols].double()) ** 2).sum(1)
    np.testing.assert_allclose(exact_costs(a, b, rows, cols, batch=7).numpy(), want.numpy(), rtol=1e-12)
