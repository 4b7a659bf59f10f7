""":class:`FlowGraph`: features as nodes, predecessor matches as edges, across all layers.

Nodes are ``(layer, module, feature)``; an edge runs from a predecessor (the residual feature
of layer ``L-1``, or an attention / MLP feature of layer ``L``) to a residual feature of layer
``L``, with its score and rank among that module's top-k. Only predecessors that pass their
threshold become edges. Walking forward from a node follows edges out of it, walking backward
follows edges into it; both read the same edge list, so they agree.

Splits and merges between consecutive residual SAEs are marked (:class:`Branching`): a
*split* is a layer ``L-1`` feature that is the best residual predecessor of several layer
``L`` features; a *merge* is a layer ``L`` feature that is the best successor of several layer
``L-1`` features (best successor: the same score and threshold, looked up from ``L-1``).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from tqdm.auto import tqdm

from sae_lens_match.atomic import write_json
from sae_lens_match.flow.config import FlowConfig
from sae_lens_match.flow.predecessors import CLASSES, FlowClass, Predecessors, layer_predecessors
from sae_lens_match.flow.similarity import feature_vectors, top_k
from sae_lens_match.flow.stack import MODULES, FlowStack, Module

logger = logging.getLogger(__name__)

FORMAT = "sae_lens_match.flow_graph"
VERSION = 1


class FlowGraphFileError(ValueError):
    """A file that is not a flow graph this version can read."""


@dataclass(frozen=True, order=True)
class Node:
    """One feature: the ``feature``-th of the ``module`` SAE of ``layer``."""

    layer: int
    module: Module
    feature: int

    def __post_init__(self) -> None:
        if self.module not in MODULES:
            raise ValueError(f"module must be one of {list(MODULES)}, got {self.module!r}.")


@dataclass(frozen=True)
class Edge:
    """``source`` is a predecessor of ``target`` (always a residual node) with ``score``; ``rank``
    0 is the best of its module."""

    source: Node
    target: Node
    score: float
    rank: int


@dataclass(frozen=True)
class Branching:
    """A split (``node`` at ``L-1`` is the best predecessor of every ``partners`` node at ``L``)
    or a merge (``node`` at ``L`` is the best successor of every ``partners`` node at ``L-1``)."""

    kind: Literal["split", "merge"]
    node: Node
    partners: tuple[Node, ...]


@dataclass(frozen=True)
class LayerInfo:
    """What one layer of the graph was built from.

    Attributes:
        hooks: module -> hook name of each SAE present at this layer.
        widths: module -> ``d_sae``.
        thresholds: source module -> the threshold its predecessors passed.
        classes: ``[d_sae of the residual SAE]``, each residual feature's class.
    """

    layer: int
    hooks: dict[str, str]
    widths: dict[str, int]
    thresholds: dict[str, float]
    classes: tuple[FlowClass, ...]


@dataclass(frozen=True)
class FlowGraph:
    """The flow graph of a :class:`FlowStack` (see the module docstring).

    Attributes:
        layers: one :class:`LayerInfo` per layer.
        edges: every predecessor edge, by layer, target feature, module, rank.
        branchings: splits and merges.
        config: the :class:`FlowConfig` it was built with, as a dict.
    """

    layers: tuple[LayerInfo, ...]
    edges: tuple[Edge, ...]
    branchings: tuple[Branching, ...]
    config: dict[str, Any]
    _out: dict[Node, list[Edge]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _in: dict[Node, list[Edge]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        out, into = defaultdict(list), defaultdict(list)
        for edge in self.edges:
            out[edge.source].append(edge)
            into[edge.target].append(edge)
        self._out.update(out)
        self._in.update(into)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def class_of(self, node: Node) -> FlowClass:
        """The class of a residual node."""
        if node.module != "residual":
            raise ValueError(f"Only residual features have a flow class; {node} is a {node.module} feature.")
        return self.layers[node.layer].classes[node.feature]

    def out_edges(self, node: Node) -> list[Edge]:
        """Edges from ``node`` to its successors."""
        return list(self._out.get(node, ()))

    def in_edges(self, node: Node) -> list[Edge]:
        """Edges from ``node``'s predecessors to it."""
        return list(self._in.get(node, ()))

    def forward(self, node: Node, max_steps: int | None = None) -> list[Edge]:
        """Every edge reachable from ``node`` along edge directions (breadth first, each once)."""
        return _walk(node, self._out, lambda e: e.target, max_steps)

    def backward(self, node: Node, max_steps: int | None = None) -> list[Edge]:
        """Every edge that reaches ``node`` (breadth first against edge directions, each once)."""
        return _walk(node, self._in, lambda e: e.source, max_steps)

    def flow(self, node: Node) -> list[Node]:
        """``node`` and every node of its flow (reachable backward or forward), sorted."""
        nodes = {node}
        for edge in self.forward(node) + self.backward(node):
            nodes.update((edge.source, edge.target))
        return sorted(nodes)

    def class_counts(self) -> list[dict[str, Any]]:
        """Per layer: the number of residual features of each class, and the fraction translated."""
        rows = []
        for info in self.layers:
            counts = {c: 0 for c in CLASSES}
            for c in info.classes:
                counts[c] += 1
            n = len(info.classes)
            rows.append({"layer": info.layer, "n_features": n, **counts, "fraction_translated": counts["translated"] / n if n else float("nan"),
                         "sources": ",".join(m for m in MODULES if m in info.thresholds)})
        return rows

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (nodes as ``[layer, module, feature]``)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config,
            "layers": [{"layer": i.layer, "hooks": i.hooks, "widths": i.widths, "thresholds": i.thresholds, "classes": list(i.classes)} for i in self.layers],
            "edges": [[*_node_list(e.source), *_node_list(e.target), e.score, e.rank] for e in self.edges],
            "branchings": [{"kind": b.kind, "node": _node_list(b.node), "partners": [_node_list(p) for p in b.partners]} for b in self.branchings],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FlowGraph":
        """The inverse of :meth:`to_dict` (``FlowGraphFileError`` for anything else)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise FlowGraphFileError(f"Not a flow graph (format {data.get('format') if isinstance(data, dict) else type(data).__name__!r}, expected {FORMAT!r}).")
        if data.get("version") != VERSION:
            raise FlowGraphFileError(f"Flow graph version {data.get('version')!r} is not readable by this version (reads {VERSION}).")
        try:
            layers = tuple(
                LayerInfo(int(i["layer"]), dict(i["hooks"]), {k: int(v) for k, v in i["widths"].items()},
                          {k: float(v) for k, v in i["thresholds"].items()}, tuple(i["classes"]))
                for i in data["layers"]
            )
            edges = tuple(Edge(Node(int(a), m, int(f)), Node(int(b), n, int(g)), float(s), int(r)) for a, m, f, b, n, g, s, r in data["edges"])
            branchings = tuple(Branching(b["kind"], Node(*b["node"]), tuple(Node(*p) for p in b["partners"])) for b in data["branchings"])
        except (KeyError, TypeError, ValueError) as error:
            raise FlowGraphFileError(f"Malformed flow graph: {error}") from None
        return cls(layers, edges, branchings, dict(data.get("config", {})))

    def save(self, path: str | Path) -> Path:
        """Write the graph as JSON, atomically."""
        write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "FlowGraph":
        """Read a graph written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise FlowGraphFileError(f"{path} is not JSON: {error}") from None
        return cls.from_dict(data)

    def to_networkx(self) -> Any:
        """A ``networkx.DiGraph`` view: nodes ``(layer, module, feature)`` with ``cls`` on residual
        nodes, edges with ``score`` and ``rank``. Needs networkx (not a dependency of the package)."""
        try:
            import networkx as nx
        except ImportError:
            raise ImportError("FlowGraph.to_networkx needs networkx: pip install networkx") from None
        g = nx.DiGraph()
        for info in self.layers:
            g.add_nodes_from(((info.layer, "residual", f), {"cls": c}) for f, c in enumerate(info.classes))
        for e in self.edges:
            g.add_edge(_node_tuple(e.source), _node_tuple(e.target), score=e.score, rank=e.rank)
        return g


def _node_list(node: Node) -> list[Any]:
    return [node.layer, node.module, node.feature]


def _node_tuple(node: Node) -> tuple[int, str, int]:
    return (node.layer, node.module, node.feature)


def _walk(start: Node, adjacency: dict[Node, list[Edge]], step: Any, max_steps: int | None) -> list[Edge]:
    seen_nodes, seen_edges, out = {start}, set(), []
    queue = deque([(start, 0)])
    while queue:
        node, depth = queue.popleft()
        if max_steps is not None and depth >= max_steps:
            continue
        for edge in adjacency.get(node, ()):
            if edge not in seen_edges:
                seen_edges.add(edge)
                out.append(edge)
            nxt = step(edge)
            if nxt not in seen_nodes:
                seen_nodes.add(nxt)
                queue.append((nxt, depth + 1))
    return out


def build_flow_graph(stack: FlowStack, config: FlowConfig | None = None, progress: bool = True) -> FlowGraph:
    """Predecessors, classes, edges, splits and merges of every layer of ``stack``."""
    config = config or FlowConfig()
    layers, edges, branchings = [], [], []
    for layer in tqdm(range(stack.n_layers), desc="flow graph", disable=not progress):
        preds = layer_predecessors(stack, layer, config)
        classes = tuple(preds.classes())
        hooks = {m: stack.hook(m, layer) for m in MODULES if stack.sae(m, layer) is not None}
        widths = {m: stack.sae(m, layer).cfg.d_sae for m in hooks}
        layers.append(LayerInfo(layer, hooks, widths, {m: p.threshold for m, p in preds.sources.items()}, classes))
        edges.extend(_edges(preds))
        if "residual" in preds.sources:
            branchings.extend(_branchings(stack, preds, config))
    logger.info("flow graph: %d layers, %d edges, %d splits and merges", len(layers), len(edges), len(branchings))
    return FlowGraph(tuple(layers), tuple(edges), tuple(branchings), config.to_dict())


def _edges(preds: Predecessors) -> Iterable[Edge]:
    modules = [m for m in MODULES if m in preds.sources]
    tables = {m: (preds.sources[m].best.indices.tolist(), preds.sources[m].best.scores.tolist(), preds.sources[m].above.tolist()) for m in modules}
    for feature in range(preds.n_features):
        target = Node(preds.layer, "residual", feature)
        for m in modules:
            indices, scores, above = (t[feature] for t in tables[m])
            for rank, (j, s, ok) in enumerate(zip(indices, scores, above)):
                if ok:
                    yield Edge(Node(preds.sources[m].layer, m, j), target, s, rank)


def _branchings(stack: FlowStack, preds: Predecessors, config: FlowConfig) -> list[Branching]:
    residual = preds.sources["residual"]
    prev, layer = residual.layer, preds.layer
    out = []
    best_back = residual.best.indices[:, 0].tolist()
    passes = residual.above[:, 0].tolist()
    children = defaultdict(list)
    for f, (p, ok) in enumerate(zip(best_back, passes)):
        if ok:
            children[p].append(Node(layer, "residual", f))
    out += [Branching("split", Node(prev, "residual", p), tuple(c)) for p, c in sorted(children.items()) if len(c) > 1]
    # best successors, looked up from the previous layer with the same score and threshold
    forward = top_k(feature_vectors(stack.sae("residual", prev), config), feature_vectors(stack.sae("residual", layer), config), config, k=1)
    parents = defaultdict(list)
    for f, (s, score) in enumerate(zip(forward.indices[:, 0].tolist(), forward.scores[:, 0].tolist())):
        if score >= residual.threshold:
            parents[s].append(Node(prev, "residual", f))
    out += [Branching("merge", Node(layer, "residual", s), tuple(p)) for s, p in sorted(parents.items()) if len(p) > 1]
    return out
