"""The rigorous pieces of the sparse solver: score error bounds and the survey's cosine bounds."""

import pytest
import torch

from sae_lens_match.assignment import sparse
from sae_lens_match.assignment import survey as survey_module
from sae_lens_match.assignment.scores import Mixer, Scorer
from sae_lens_match.assignment.survey import _merge_columns, _top_k_rows, survey


def _sae_like(n: int, d: int, seed: int) -> torch.Tensor:
    """Rows whose two halves differ in scale by a per-row factor, as folded SAE rows do."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.exp(torch.empty(n, 1).uniform_(-1.5, 1.5, generator=g))
    x = torch.randn(n, 2 * d, generator=g)
    return torch.cat([x[:, :d] * theta, x[:, d:] / theta], 1)


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_score_error_bound_holds_for_every_pair(precision):
    a, b = _sae_like(300, 40, 0), _sae_like(200, 40, 1)
    scorer = Scorer(a, b, precision)
    exact = a.double() @ b.double().T
    approx = torch.cat([scorer.chunk(s, min(s + 64, 300)) for s in range(0, 300, 64)]).double()
    # Scaled chunks are the same scores, scaled.
    row, col = torch.rand(64), torch.rand(200)
    torch.testing.assert_close(scorer.chunk(0, 64, row_scale=row, col_scale=col), (approx[:64] * row[:, None] * col).float())
    bound = torch.outer(scorer.bound.p1, scorer.bound.q1) + torch.outer(scorer.bound.p2, scorer.bound.q2)
    assert ((approx - exact).abs() <= bound).all()
    # ... and is not vacuous: well below the dot products' own scale.
    assert float((bound / torch.outer(a.norm(dim=1), b.norm(dim=1)).double()).max()) < (0.1 if precision == "int8" else 1e-3)


@pytest.mark.parametrize("block", [8, 176])
@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_survey_in_column_blocks_equals_one_pass(precision, block, monkeypatch):
    a, b = _sae_like(150, 30, 7), _sae_like(203, 30, 8)
    whole = survey(a, b, k=3, k_weak=9, precision=precision, chunk_size=64)
    # Blocks narrower than a row's candidate list, or ranked through group maxima (176 = 11
    # groups of 16, more than the 10 candidates kept), and a ragged last block.
    monkeypatch.setattr(survey_module, "_BLOCK", block)
    blocked = survey(a, b, k=3, k_weak=9, precision=precision, chunk_size=64)
    pairs = lambda sv: torch.unique(sv.rows * 203 + sv.cols)  # noqa: E731
    assert torch.equal(pairs(whole), pairs(blocked))
    torch.testing.assert_close(whole.rho_a, blocked.rho_a, rtol=0, atol=1e-6 if precision == "fp32" else 0)
    torch.testing.assert_close(whole.rho_b, blocked.rho_b, rtol=0, atol=1e-6 if precision == "fp32" else 0)


def test_mixer_keeps_dot_products():
    a, b = _sae_like(50, 100, 2), _sae_like(60, 100, 3)
    mix = Mixer(a.shape[1], block=32, seed=5)
    mixed = mix(a).double() @ mix(b).double().T
    exact = a.double() @ b.double().T
    scale = torch.outer(a.norm(dim=1), b.norm(dim=1)).double()
    assert ((mixed - exact).abs() <= 3 * mix.delta * scale).all()


def test_row_ranking_through_group_maxima_equals_a_full_ranking():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 6, (40, 16 * 12), generator=g).float()  # many ties
    x[0, :16] = 9.0  # every top score in a few groups (columns 0..15 lie in groups 0..11)
    x[1, ::12] = 9.0  # ... or all in one group (group 0 is columns 0, 12, 24, ...)
    x[2] = torch.randn(16 * 12, generator=g)
    for k in (1, 5, 11):
        vals, cols = _top_k_rows(x, k)
        torch.testing.assert_close(vals, x.topk(k, dim=1).values, rtol=0, atol=0)
        assert torch.equal(x.gather(1, cols), vals)
        assert all(len(set(row.tolist())) == k for row in cols)


@pytest.mark.parametrize("ties", [False, True])
def test_column_merge_equals_a_full_ranking(ties):
    g = torch.Generator().manual_seed(4)
    full = torch.randn(700, 90, generator=g)
    if ties:
        full = full.mul(2).round()
    full[300:310] += 5.0  # a burst of new leaders: the fallback path
    full[698, :45] += 4.0  # late leaders in the last rows of a chunk (100 is not a multiple of 16)
    vals = torch.full((6, 90), -float("inf"))
    rows = torch.zeros((6, 90), dtype=torch.long)
    for s in range(0, 700, 100):
        vals, rows = _merge_columns(vals, rows, full[s : s + 100].clone(), s)
    want = full.topk(6, dim=0).values
    torch.testing.assert_close(vals, want)
    assert torch.equal(full.gather(0, rows), vals)


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_survey_bounds_every_pair_it_leaves_out(precision):
    a, b = _sae_like(250, 30, 5), _sae_like(320, 30, 6)
    sv = survey(a, b, k=3, k_weak=9, precision=precision, chunk_size=64)
    cos = (a.double() @ b.double().T) / torch.outer(a.double().norm(dim=1), b.double().norm(dim=1))
    left_out = torch.ones_like(cos, dtype=torch.bool)
    left_out[sv.rows, sv.cols] = False
    bound = torch.minimum(sv.rho_a[:, None], sv.rho_b[None, :])
    assert (cos[left_out] <= bound[left_out]).all()
    # Rows whose best cosine does not stand out get k_weak candidates, the others k.
    per_row = torch.bincount(sv.rows, minlength=250)
    assert per_row.min() >= 3


@pytest.mark.parametrize("saturated", [False, True], ids=["random", "half-saturated"])
def test_proof_blocks_cover_every_pair_the_bound_cannot_settle(monkeypatch, saturated):
    a, b = _sae_like(300, 20, 9), _sae_like(410, 20, 10)
    sv = survey(a, b, k=2, k_weak=4, precision="fp32", chunk_size=64)
    # Duals that leave many pairs unsettled: potentials at random fractions of the norms. With
    # half the rows and columns saturated, whole tiles fail for sure and skip the pair tests.
    g = torch.Generator().manual_seed(11)
    u = sv.sq_a * torch.rand(300, generator=g, dtype=torch.float64)
    v = sv.sq_b * torch.rand(410, generator=g, dtype=torch.float64) - sv.sq_b / 2
    if saturated:
        u = torch.where(torch.rand(300, generator=g) < 0.5, 0.999 * sv.sq_a, u)
        v = torch.where(torch.rand(410, generator=g) < 0.5, 0.999 * sv.sq_b, v)
    s, t = sv.sq_a - u, sv.sq_b - v
    bound = 2 * torch.outer(sv.sq_a.sqrt(), sv.sq_b.sqrt()) * torch.minimum(sv.rho_a[:, None], sv.rho_b[None, :]).clamp(min=0)
    unsettled = s[:, None] + t[None, :] < bound
    assert 0 < int(unsettled.sum()) < unsettled.numel()
    # Small tiles and groups: many tiles skipped, many groups.
    monkeypatch.setattr(sparse, "_TILE", 8)
    covered = torch.zeros_like(unsettled)
    for strip in sparse.unproven(sv, u, v, tol=0.0, group=32):
        for rows, cols in strip:
            covered[rows[:, None], cols[None, :]] = True
    assert covered[unsettled].all()
    assert covered.sum() < covered.numel()  # and the tiles did leave pairs out
