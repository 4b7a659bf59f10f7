"""Sparse linear connections between SAE features (flow/connections.py): planted ground truth,
the shuffled control, the streaming sums against a direct computation, the hooks path on the
embedded world, bad inputs and agreement with data-free partners."""

import json
import math

import pytest
import torch

from sae_lens_match import Matching, world
from sae_lens_match.flow import (
    ConnectionKey,
    Connections,
    ConnectionsConfig,
    ConnectionStatistics,
    FlowGraph,
    FlowStack,
    fit_connections,
    graph_partners,
    matching_partners,
    sae_connections,
    stack_agreement,
    stack_connections,
    stack_pairs,
    stack_statistics,
)
from sae_lens_match.flow.connections import held_out_mask
from sae_lens_match.flow.graph import Edge, LayerInfo, Node
from sae_lens_match.sources import TokenSet

NOISE = 0.01


def sparse_codes(n: int, d: int, generator: torch.Generator, density: float = 0.15) -> torch.Tensor:
    """Non-negative codes: each feature fires with probability ``density``, at ``U(0.5, 1.5)``."""
    return (torch.rand(n, d, generator=generator) + 0.5) * (torch.rand(n, d, generator=generator) < density)


def planted(n: int = 10000, d_a: int = 32, d_b: int = 12, per_target: int = 3, seed: int = 0):
    """Upstream codes, downstream = a known sparse linear map of them (signed weights, |w| >= 0.5) + bias + noise."""
    g = torch.Generator().manual_seed(seed)
    x = sparse_codes(n, d_a, g)
    w = torch.zeros(d_a, d_b)
    for j in range(d_b):
        rows = torch.randperm(d_a, generator=g)[:per_target]
        signs = torch.randint(0, 2, (per_target,), generator=g) * 2 - 1
        w[rows, j] = (torch.rand(per_target, generator=g) + 0.5) * signs
    bias = torch.randn(d_b, generator=g) * 0.1
    y = x @ w + bias + NOISE * torch.randn(n, d_b, generator=g)
    return x, y, w, bias


def weight_tolerance(x: torch.Tensor, n_train: int) -> float:
    """Six standard errors of a least-squares weight at the planted noise."""
    return 6 * NOISE / (float(x.std(0).min()) * math.sqrt(n_train))


# --- (a) planted support and weights -------------------------------------------------------------


@pytest.mark.parametrize("config", [ConnectionsConfig(sparsity="l1"), ConnectionsConfig(sparsity="topk", k=3)], ids=["l1", "topk"])
def test_planted_support_and_weights_are_recovered(config):
    x, y, w, bias = planted()
    found = fit_connections(x, y, config)
    assert torch.equal(found.weights != 0, w != 0)  # the support, exactly
    tol = weight_tolerance(x, found.n_train)
    assert (found.weights - w).abs().max() < tol
    assert (found.bias - bias).abs().max() < 10 * tol
    assert torch.equal(found.n_upstream(), (w != 0).sum(0))


def test_lasso_without_refit_is_the_lasso_optimum():
    """The KKT conditions of the standardized lasso, recomputed here from the training tokens."""
    x, y, _, _ = planted(d_b=6)
    config = ConnectionsConfig(refit=False, l1=0.1, tol=1e-8)
    found = fit_connections(x, y, config)
    train = ~held_out_mask(0, x.shape[0], config.test_fraction, config.seed)
    assert int(train.sum()) == found.n_train
    xs, ys = x[train].double(), y[train].double()
    sx, sy = xs.std(0, unbiased=False), ys.std(0, unbiased=False)
    xz, yz = (xs - xs.mean(0)) / sx, (ys - ys.mean(0)) / sy
    R, r = xz.T @ xz / xz.shape[0], xz.T @ yz / xz.shape[0]
    w = found.weights.double() * sx[:, None] / sy  # back to standardized units
    g = r - R @ w
    on = w != 0
    assert on.any() and (~on).any()
    assert (g[on] - config.l1 * w[on].sign()).abs().max() < 1e-4
    assert g[~on].abs().max() <= config.l1 + 1e-4
    refit = fit_connections(x, y, ConnectionsConfig(l1=0.1))
    assert torch.equal(refit.weights != 0, on)  # same support, refitted


def test_top_upstream_ranks_by_contribution_not_by_weight():
    g = torch.Generator().manual_seed(1)
    x = sparse_codes(6000, 4, g)
    x[:, 1] *= 10  # feature 1: a small weight on a large feature contributes most
    y = (1.0 * x[:, 0] + 0.5 * x[:, 1] + NOISE * torch.randn(6000, generator=g))[:, None]
    found = fit_connections(x, y, ConnectionsConfig(sparsity="topk", k=2))
    indices, weights = found.top_upstream(3)
    assert indices[0].tolist() == [1, 0, -1] and weights[0, 2] == 0
    assert weights[0, 0] == pytest.approx(0.5, abs=0.01) and weights[0, 1] == pytest.approx(1.0, abs=0.01)
    assert found.strongest_upstream().tolist() == [1]


def test_dead_features_are_flagged_not_divided_by():
    x, y, _, _ = planted(d_b=4)
    x = torch.cat([x, torch.zeros(x.shape[0], 1)], 1)  # an upstream feature that never fires
    y = torch.cat([y, torch.zeros(y.shape[0], 1)], 1)  # a downstream one
    found = fit_connections(x, y)
    assert found.explained_variance[-1].isnan() and found.control_explained_variance[-1].isnan()
    assert not found.explained_variance[:-1].isnan().any()
    assert (found.weights[-1] == 0).all() and (found.weights[:, -1] == 0).all() and found.upstream_std[-1] == 0
    assert found.summary()["n_alive"] == 4
    assert found.fraction_linear() == 1.0  # over the alive features only


# --- (b) controls ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", ["l1", "topk"])
def test_shuffled_pairs_and_unrelated_targets_explain_nothing(sparsity):
    x, y, _, _ = planted()
    config = ConnectionsConfig(sparsity=sparsity, k=3)
    found = fit_connections(x, y, config)
    expected = 1 - NOISE**2 / y.var(0)
    assert (found.explained_variance > expected - 0.01).all()  # the planted map leaves only the noise
    assert found.control_explained_variance.abs().max() < 0.05
    assert found.fraction_linear() == 1.0 and found.fraction_linear(control=True) == 0.0
    unrelated = sparse_codes(x.shape[0], y.shape[1], torch.Generator().manual_seed(7))
    null = fit_connections(x, unrelated, config)
    assert null.explained_variance.abs().max() < 0.05 and null.fraction_linear() == 0.0


# --- (c) streaming sums ----------------------------------------------------------------------------


def test_streaming_equals_one_fit_and_explained_variance_is_exact():
    x, y, _, _ = planted(n=5000)
    config = ConnectionsConfig(seed=3)
    whole = fit_connections(x, y, config)
    stats = ConnectionStatistics([x.shape[1], y.shape[1]], [(0, 1)], config)
    start = 0
    for size in [1, 2, 997, 13, 3000, 10_000]:  # uneven batches, the last one short
        stats.update([x[start : start + size], y[start : start + size]])
        start += size
    streamed = stats.fit()
    assert (streamed.n_train, streamed.n_test) == (whole.n_train, whole.n_test)  # the split does not depend on batching
    for name in ("weights", "bias", "explained_variance", "upstream_std"):
        assert torch.allclose(getattr(streamed, name), getattr(whole, name), rtol=1e-5, atol=1e-6), name
    # the held-out EV from sums equals the EV of the predictions on the held-out rows; with
    # strong noise, so that the held-out mean error (the intercept's) counts too
    noisy = y + torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
    fitted = fit_connections(x, noisy, config)
    test = held_out_mask(0, x.shape[0], config.test_fraction, config.seed)
    assert int(test.sum()) == fitted.n_test
    yt = noisy[test].double()
    residual = yt - (x[test].double() @ fitted.weights.double() + fitted.bias.double())
    direct = 1 - residual.square().sum(0) / (yt - yt.mean(0)).square().sum(0)
    assert torch.allclose(fitted.explained_variance.double(), direct, atol=1e-5)


def test_seed_decides_the_split_and_results_repeat():
    x, y, _, _ = planted(n=3000, d_b=4)
    a, b = fit_connections(x, y, ConnectionsConfig(seed=0)), fit_connections(x, y, ConnectionsConfig(seed=0))
    assert torch.equal(a.weights, b.weights) and torch.equal(a.control_explained_variance, b.control_explained_variance)
    assert not torch.equal(held_out_mask(0, 3000, 0.2, 0), held_out_mask(0, 3000, 0.2, 1))
    assert abs(held_out_mask(0, 100_000, 0.2, 0).double().mean() - 0.2) < 0.01


def test_save_and_load_round_trip(tmp_path):
    x, y, _, _ = planted(n=3000, d_b=4)
    found = fit_connections(x, y)
    path = found.save(tmp_path / "pair.safetensors")
    back = Connections.load(path)
    for name in ("weights", "bias", "explained_variance", "control_explained_variance", "upstream_std"):
        assert torch.equal(getattr(back, name), getattr(found, name))
    assert back.config == found.config and back.summary() == pytest.approx(found.summary(), nan_ok=True)
    summary = json.loads(path.with_suffix(".json").read_text())
    assert summary["fraction_linear"] == found.fraction_linear() and summary["config"]["sparsity"] == "l1"
    damaged = bytearray(path.read_bytes())
    damaged[-4:] = b"\x00\x00\x80\x7f"
    (tmp_path / "bad.safetensors").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="damaged|readable"):
        Connections.load(tmp_path / "bad.safetensors")


# --- (d) through hooks on the embedded world --------------------------------------------------------


@pytest.fixture(scope="module")
def world_setup(world_root):
    model = world.load_model("hooked_sae")
    stack = FlowStack(world.load_saes("resid_post", layers=[0, 1]), mlp=[None, world.load_saes("mlp_out", layers=[1])[0]])
    data = TokenSet(model, world.tokens("test", 48), batch_size=8, progress=False)
    return model, stack, data


@torch.no_grad()
def test_stack_connections_on_the_world_match_codes_read_by_hand(world_setup):
    model, stack, data = world_setup
    pairs = stack_pairs(stack)
    assert pairs == [ConnectionKey("residual", 0, "residual", 1), ConnectionKey("mlp", 1, "residual", 1), ConnectionKey("residual", 0, "mlp", 1)]
    config = ConnectionsConfig(sparsity="topk", k=4)  # matching pursuit: quick at the world's 512 features
    found = stack_connections(stack, data, config)
    # the same codes by hand: one cached forward, BOS positions dropped
    _, cache = model.run_with_cache(data.tokens)
    keep = data.tokens != model.tokenizer.bos_token_id
    codes = {(m, at): stack.sae(m, at).encode(cache[stack.hook(m, at)][keep]) for m, at in [("residual", 0), ("residual", 1), ("mlp", 1)]}
    for key in pairs:
        by_hand = fit_connections(codes[key.source_module, key.source_layer], codes[key.target_module, key.target_layer], config)
        got = found[key]
        assert got.source["hook_name"] == stack.hook(key.source_module, key.source_layer)
        assert (got.n_train, got.n_test) == (by_hand.n_train, by_hand.n_test)
        assert torch.allclose(got.weights, by_hand.weights, atol=1e-5) and torch.allclose(got.bias, by_hand.bias, atol=1e-5)
        # real connections explain far more than shuffled pairs
        s = got.summary()
        assert s["median_explained_variance"] > s["control_median_explained_variance"] + 0.2
        assert s["fraction_linear"] > s["control_fraction_linear"]
    single = sae_connections(stack.sae("residual", 0), stack.sae("mlp", 1), data, config)
    assert torch.equal(single.weights, found[pairs[2]].weights)


def test_stack_statistics_refit_with_another_config(world_setup):
    _, stack, data = world_setup
    key = ConnectionKey("residual", 0, "residual", 1)
    stats = stack_statistics(stack, data, pairs=[key])
    one, two = (stats.fit(ConnectionsConfig(sparsity="topk", k=k))[key] for k in (1, 2))
    assert (one.n_upstream() <= 1).all() and (two.n_upstream() <= 2).all() and (two.n_upstream() == 2).any()
    assert ((one.weights != 0) <= (two.weights != 0)).all()  # matching pursuit is greedy: k=2 extends k=1's choice
    with pytest.raises(ValueError, match="split"):
        stats.fit(ConnectionsConfig(seed=1))
    with pytest.raises(ValueError, match="no attention SAE"):
        stack_statistics(stack, data, pairs=[ConnectionKey("attention", 1, "residual", 1)])


# --- (e) bad inputs -------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    x, y, _, _ = planted(n=500, d_a=8, d_b=3)
    with pytest.raises(ValueError, match="same tokens"):
        fit_connections(x, y[:-1])
    with pytest.raises(ValueError, match="sparsity"):
        ConnectionsConfig(sparsity="l2")
    with pytest.raises(ValueError, match="k=9"):
        fit_connections(x, y, ConnectionsConfig(sparsity="topk", k=9))
    for bad in ({"l1": 0.0}, {"l1": 1.5}, {"k": 0}, {"test_fraction": 1.0}, {"threshold": 2.0}, {"seed": -1}, {"tol": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ConnectionsConfig(**bad)
    with pytest.raises(ValueError, match="Too few tokens"):
        fit_connections(x[:2], y[:2])
    stats = ConnectionStatistics([8, 3], [(0, 1)])
    with pytest.raises(ValueError, match=r"\[n_tokens, 3\]"):
        stats.update([x, y[:, :2]])
    found = fit_connections(x, y)
    with pytest.raises(ValueError, match="shape"):
        found.agreement(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="lie in"):
        found.agreement(torch.full((3,), 8))


# --- (f) agreement with data-free partners ---------------------------------------------------------------


def permuted_pair(d: int = 16, n: int = 6000, seed: int = 0):
    """Downstream feature ``perm[i]`` copies upstream feature ``i`` (plus a weaker mix of others)."""
    g = torch.Generator().manual_seed(seed)
    x = sparse_codes(n, d, g)
    perm = torch.randperm(d, generator=g)
    y = torch.empty_like(x)
    y[:, perm] = x + 0.2 * x.roll(1, dims=1)
    return x, y + NOISE * torch.randn(n, d, generator=g), perm


def test_agreement_with_a_matching_reads_its_direction_right():
    x, y, perm = permuted_pair()
    found = fit_connections(x, y)
    matching = Matching(perm, torch.zeros(16, dtype=torch.float64), 16)  # A feature i -> B feature perm[i]
    partner = matching_partners(matching)
    assert torch.equal(partner[perm], torch.arange(16))
    a = found.agreement(partner)
    assert (a.fraction, a.n_compared, a.chance) == (1.0, 16, 1 / 16)
    assert found.agreement(perm).fraction < 0.5  # read the wrong way round, it mostly disagrees
    half = partner.clone()
    half[::2] = -1
    assert found.agreement(half).n_compared == 8
    with pytest.raises(ValueError, match="many-to-one"):
        matching_partners(Matching(torch.zeros(16, dtype=torch.long), torch.zeros(16, dtype=torch.float64), 16, one_to_one=False))


def test_graph_partners_and_stack_agreement():
    x, y, perm = permuted_pair()
    found = {ConnectionKey("residual", 0, "residual", 1): fit_connections(x, y), ConnectionKey("mlp", 1, "residual", 1): fit_connections(x, y)}
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(16)
    # a hand-made graph: every residual feature of layer 1 has its true residual predecessor at rank 0 and
    # a wrong one at rank 1; only the first four have an MLP predecessor, a wrong one
    edges = [Edge(Node(0, "residual", int(inverse[f])), Node(1, "residual", f), 0.9, 0) for f in range(16)]
    edges += [Edge(Node(0, "residual", int(inverse[(f + 1) % 16])), Node(1, "residual", f), 0.5, 1) for f in range(16)]
    edges += [Edge(Node(1, "mlp", int(inverse[(f + 3) % 16])), Node(1, "residual", f), 0.5, 0) for f in range(4)]
    layers = (LayerInfo(0, {}, {}, {}, ("born",) * 16), LayerInfo(1, {}, {}, {"residual": 0.3, "mlp": 0.3}, ("translated",) * 16))
    graph = FlowGraph(layers, tuple(edges), (), {})
    assert torch.equal(graph_partners(graph, 1, "residual"), inverse)
    mlp = graph_partners(graph, 1, "mlp")
    assert (mlp[4:] == -1).all() and (mlp[:4] >= 0).all()
    with pytest.raises(ValueError, match="no attention"):
        graph_partners(graph, 1, "attention")
    matching = Matching(perm, torch.zeros(16, dtype=torch.float64), 16)
    rows = {(r["pair"], r["reference"]): r for r in stack_agreement(found, [matching], graph)}
    assert set(rows) == {("residual 0 -> residual 1", "sae_match"), ("residual 0 -> residual 1", "flow_graph"), ("mlp 1 -> residual 1", "flow_graph")}
    assert rows["residual 0 -> residual 1", "sae_match"]["fraction"] == 1.0
    assert rows["residual 0 -> residual 1", "flow_graph"]["fraction"] == 1.0
    assert rows["mlp 1 -> residual 1", "flow_graph"]["n_compared"] == 4 and rows["mlp 1 -> residual 1", "flow_graph"]["fraction"] == 0.0
    with pytest.raises(ValueError, match="features"):
        stack_agreement(found, [Matching(torch.arange(8), torch.zeros(8, dtype=torch.float64), 8)])


# --- the command line ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_flow_command_writes_connections(world_root, tmp_path, capsys):
    from sae_lens_match.cli import main

    out = tmp_path / "flow"
    assert main(["flow", "--world", "--n-texts", "24", "--causal-edges", "0", "--connections", "--connections-sparsity", "topk",
                 "--connections-k", "2", "--out", str(out)]) == 0
    rows = json.loads((out / "connections" / "summary.json").read_text())
    assert [r["pair"] for r in rows][:4] == ["attention 0 -> residual 0", "mlp 0 -> residual 0", "residual 0 -> residual 1", "attention 1 -> residual 1"]
    assert len(rows) == 14 and (out / "connections" / "summary.csv").read_text().startswith("pair,")
    by_pair = {r["pair"]: r for r in rows}
    assert "sae_match_agreement" in by_pair["residual 0 -> residual 1"] and "sae_match_agreement" not in by_pair["mlp 1 -> residual 1"]
    assert "flow_graph_agreement" not in by_pair["residual 0 -> mlp 1"]  # the flow graph has no MLP targets
    saved = Connections.load(out / "connections" / "residual0_to_mlp1.safetensors")
    assert saved.target["hook_name"] == "blocks.1.hook_mlp_out" and (saved.n_upstream() <= 2).all()
    assert "connections/summary.json" in (out / "index.html").read_text()


def test_flow_command_refuses_connections_without_data(tmp_path, capsys):
    from sae_lens_match.cli import main
    from sae_lens_match.flow import make_flow_stack

    planted_stack = make_flow_stack(n_layers=2, d_in=16, d_sae=32, seed=0)
    for layer, sae in enumerate(planted_stack.stack.residual):
        sae.save_model(tmp_path / str(layer))
    assert main(["flow", "--residual", str(tmp_path / "0"), str(tmp_path / "1"), "--connections", "--out", str(tmp_path / "o")]) == 2
    assert "--connections fits on data" in capsys.readouterr().err
