"""The flow graph: walks agree, JSON round trip, splits and merges, class counts, NetworkX view."""

import json

import pytest
import torch

from sae_lens_match.flow import CLASSES, FlowConfig, FlowGraph, FlowGraphFileError, FlowStack, Node, build_flow_graph, make_flow_stack
from tests.helpers import random_sae


@pytest.fixture(scope="module")
def planted_graph():
    planted = make_flow_stack(n_layers=4, d_in=32, d_sae=96, noise=0.2, seed=0)
    return planted, build_flow_graph(planted.stack, FlowConfig(top_k=2), progress=False)


def test_forward_and_backward_walks_agree(planted_graph):
    _, graph = planted_graph
    assert graph.edges
    for edge in graph.edges:
        assert edge in graph.out_edges(edge.source) and edge in graph.in_edges(edge.target)
    nodes = sorted({e.source for e in graph.edges} | {e.target for e in graph.edges})
    reach_fwd = {u: {e.target for e in graph.forward(u)} for u in nodes}
    reach_bwd = {v: {e.source for e in graph.backward(v)} for v in nodes}
    for u in nodes:
        for v in nodes:
            assert (v in reach_fwd[u]) == (u in reach_bwd[v])
    # one step forward is exactly the out-edges
    u = graph.edges[0].source
    assert set(graph.forward(u, max_steps=1)) == set(graph.out_edges(u))


def test_edges_follow_the_planted_chain(planted_graph):
    planted, graph = planted_graph
    translated = [(i, int(planted.sources[2][i])) for i, c in enumerate(planted.classes[2]) if c == "translated"]
    hits = sum(any(e.source == Node(1, "residual", j) for e in graph.in_edges(Node(2, "residual", i))) for i, j in translated)
    assert hits / len(translated) > 0.95
    for edge in graph.edges:
        assert edge.target.module == "residual" and edge.score >= graph.layers[edge.target.layer].thresholds[edge.source.module]
        assert edge.source.layer == edge.target.layer - (edge.source.module == "residual")


def test_json_round_trip_is_exact(planted_graph, tmp_path):
    _, graph = planted_graph
    path = graph.save(tmp_path / "graph.json")
    again = FlowGraph.load(path)
    assert again == graph
    assert again.forward(graph.edges[0].source) == graph.forward(graph.edges[0].source)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_bad_files_are_refused(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(FlowGraphFileError, match="Not a flow graph"):
        FlowGraph.load(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{")
    with pytest.raises(FlowGraphFileError, match="not JSON"):
        FlowGraph.load(tmp_path / "y.json")


def test_class_counts_add_up(planted_graph):
    planted, graph = planted_graph
    rows = graph.class_counts()
    assert [r["layer"] for r in rows] == [0, 1, 2, 3]
    for row, info, truth in zip(rows, graph.layers, planted.classes):
        assert sum(row[c] for c in CLASSES) == row["n_features"] == len(truth)
        assert row["translated"] == list(info.classes).count("translated")
    assert rows[0]["translated"] == 0 and rows[0]["sources"] == "attention,mlp"


def test_networkx_view(planted_graph):
    nx = pytest.importorskip("networkx")
    _, graph = planted_graph
    g = graph.to_networkx()
    assert isinstance(g, nx.DiGraph) and g.number_of_edges() == len({(e.source, e.target) for e in graph.edges})
    edge = graph.edges[0]
    assert g.edges[(edge.source.layer, edge.source.module, edge.source.feature), (edge.target.layer, edge.target.module, edge.target.feature)]["score"] == edge.score


def test_planted_split_and_merge_are_marked():
    a, b = random_sae("jumprelu", d_in=32, d_sae=40, seed=0), random_sae("jumprelu", d_in=32, d_sae=40, seed=1)
    g = torch.Generator().manual_seed(0)

    def near(v):  # about 0.999 cosine to v
        return v + 0.05 * v.norm() * torch.nn.functional.normalize(torch.randn(32, generator=g), dim=0)

    with torch.no_grad():
        # layer-1 features 5 and 6 both continue layer-0 feature 3 (a split) ...
        b.W_dec[5], b.W_dec[6] = near(a.W_dec[3]), near(a.W_dec[3])
        # ... and layer-0 features 7 and 8, nearly the same direction, both continue into layer-1 feature 9 (a merge)
        a.W_dec[8] = near(a.W_dec[7])
        b.W_dec[9] = a.W_dec[7]
    for i, sae in enumerate((a, b)):
        sae.cfg.metadata.hook_name = f"blocks.{i}.hook_resid_post"
    # a fixed threshold: random pairs (cosine < 0.7 at d_in=32) never pass it, planted ones always do
    graph = build_flow_graph(FlowStack([a, b]), FlowConfig(threshold=0.9), progress=False)
    splits = {(x.node, x.partners) for x in graph.branchings if x.kind == "split"}
    merges = {(x.node, x.partners) for x in graph.branchings if x.kind == "merge"}
    assert (Node(0, "residual", 3), (Node(1, "residual", 5), Node(1, "residual", 6))) in splits
    assert (Node(1, "residual", 9), (Node(0, "residual", 7), Node(0, "residual", 8))) in merges
    assert len(splits) == len(merges) == 1


def test_flow_of_a_node_is_its_chain(planted_graph):
    _, graph = planted_graph
    node = next(e.target for e in graph.edges if e.target.layer == 3 and e.source.module == "residual")
    flow = graph.flow(node)
    assert node in flow and any(n.layer == 2 and n.module == "residual" for n in flow)
    assert all(n.module == "residual" or n.layer >= 0 for n in flow)
