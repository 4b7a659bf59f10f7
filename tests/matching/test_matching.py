import pytest
import torch

from sae_lens_match import Matching, agreement, compose_all, feature_paths, match, match_layers
from sae_lens_match.matching.synthetic import make_stack


def m(perm, cost=None, d_b=None):
    perm = torch.tensor(perm)
    cost = torch.tensor(cost if cost is not None else [0.1 * (i + 1) for i in range(len(perm))], dtype=torch.float64)
    cost = torch.where(perm >= 0, cost, float("nan"))
    return Matching(perm, cost, d_b or len(perm))


def test_compose_and_inverse():
    ab = m([2, 0, 1], [1.0, 2.0, 3.0])
    bc = m([1, 2, 0], [10.0, 20.0, 30.0])
    ac = ab.compose(bc)
    assert ac.permutation.tolist() == [0, 1, 2]
    assert ac.cost.tolist() == [31.0, 12.0, 23.0]
    assert ac.steps == 2
    back = ab.inverse()
    assert back.permutation.tolist() == [1, 2, 0]
    assert back.cost.tolist() == [2.0, 3.0, 1.0]
    assert back.inverse().permutation.tolist() == ab.permutation.tolist()
    assert ab.compose(ab.inverse()).permutation.tolist() == [0, 1, 2]


def test_compose_propagates_unmatched():
    ab = m([1, -1, 0], d_b=2)
    bc = m([-1, 0], d_b=1)
    ac = ab.compose(bc)
    assert ac.permutation.tolist() == [0, -1, -1]
    assert torch.isnan(ac.cost[1:]).all()
    with pytest.raises(ValueError, match="Cannot compose"):
        bc.compose(ab)


def test_invalid_matchings_are_refused():
    with pytest.raises(ValueError, match="same B feature"):
        m([0, 0, 1])
    with pytest.raises(ValueError, match=r"\[-1, 3\)"):
        m([0, 3, 1])


def test_with_unmatched():
    ab = m([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0])
    assert ab.with_unmatched(max_cost=2.5).permutation.tolist() == [0, 1, -1, -1]
    assert ab.with_unmatched(quantile=0.5).permutation.tolist() == [0, 1, -1, -1]
    assert ab.with_unmatched(quantile=1.0).permutation.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="exactly one"):
        ab.with_unmatched()


def test_save_load_round_trip(tmp_path):
    stack = make_stack(n_layers=2, d_in=16, d_sae=32)
    original = match(*stack.saes, source={"release": "r", "sae_id": "x"})
    path = tmp_path / "ab.safetensors"
    original.save(path)
    loaded = Matching.load(path)
    assert torch.equal(loaded.permutation, original.permutation)
    assert torch.equal(loaded.cost, original.cost)
    assert loaded.source == original.source and loaded.source["release"] == "r"
    assert loaded.target["hook_name"] == "blocks.1.hook_resid_post"
    assert loaded.info["config"] == original.info["config"]
    assert (loaded.method, loaded.random_pair_cost, loaded.steps) == ("sae_match", original.random_pair_cost, 1)
    assert original.random_pair_cost > float(original.cost.median())  # real pairs are far closer than random ones
    torch.save({"x": 1}, tmp_path / "other")
    with pytest.raises(Exception):
        Matching.load(tmp_path / "other")


def test_composition_follows_planted_paths_and_agrees_with_direct_match():
    stack = make_stack(n_layers=4, d_in=32, d_sae=128, persist=1.0, twin_fraction=0.0, seed=2)
    steps = match_layers(stack.saes, progress=False)
    composed = compose_all(steps)
    truth = stack.truth[0]
    for t in stack.truth[1:]:
        truth = t[truth]
    assert (composed.permutation == truth).double().mean() > 0.98
    direct = match(stack.saes[0], stack.saes[-1])
    assert agreement(composed, direct) > 0.95
    paths = feature_paths(steps)
    assert torch.equal(paths.indices[-1], composed.permutation)
    assert torch.equal(paths.indices[1], steps[0].permutation)
    path = paths.path(5)
    assert [layer for layer, _, _ in path] == [0, 1, 2, 3]
    assert path[-1][2] == pytest.approx(float(composed.cost[5]))
    # costs accumulate: non-decreasing along every path
    assert (paths.cumulative_cost.diff(dim=0) >= 0).all()


def test_match_layers_resumes_and_notices_changed_inputs(tmp_path):
    stack = make_stack(n_layers=3, d_in=16, d_sae=32, seed=0)
    first = match_layers(stack.saes, out_dir=tmp_path, progress=False)
    stamps = [p.stat().st_mtime_ns for p in sorted(tmp_path.glob("pair_*.safetensors"))]
    again = match_layers(stack.saes, out_dir=tmp_path, progress=False)
    assert [p.stat().st_mtime_ns for p in sorted(tmp_path.glob("pair_*.safetensors"))] == stamps
    assert all(torch.equal(a.permutation, b.permutation) for a, b in zip(first, again))
    other = make_stack(n_layers=3, d_in=16, d_sae=32, seed=1)
    changed = match_layers(other.saes, out_dir=tmp_path, progress=False)
    assert torch.equal(changed[0].permutation, match(*other.saes[:2]).permutation)
