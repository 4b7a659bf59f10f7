"""Feature flow (Laptev, Balagansky, Aksenov, Gavrilov, ICML 2025) on SAE Match's machinery.

Where does a residual feature come from? For each feature of the residual SAE of layer ``L``:
its best predecessors among the residual SAE of ``L-1`` and the attention- and MLP-output SAEs
of ``L``, scored by decoder cosine or SAE Match's folded-parameter MSE; its class (translated,
made by attention, made by the MLP, a mix, or born) against a data-free threshold from a
random-rotation null (``null.py``); all layers chained into a :class:`FlowGraph`; the graph checked on data
by deactivating predecessors; and steering along a feature's flow.

- ``stack.py``: :class:`FlowStack`, the SAEs by layer and module (any module may be missing);
- ``config.py``: :class:`FlowConfig`;
- ``similarity.py``: scores and top-k in bounded blocks, on the SAEs' device;
- ``null.py``: the random-rotation null and the default threshold;
- ``predecessors.py``: :func:`layer_predecessors`, the classes;
- ``graph.py``: :class:`FlowGraph` (walks, splits and merges, JSON, NetworkX), :func:`build_flow_graph`;
- ``causal.py``: :func:`causal_check` (deactivation of a source feature, its SAE spliced in with its error term; batched);
- ``steering.py``: single-layer and flow steering, against random features;
- ``synthetic.py``: :func:`make_flow_stack`, stacks with planted classes;
- ``connections.py``: :func:`stack_connections`, :func:`fit_connections`: sparse linear maps from
  one SAE's features to another's, fitted on data (the seed posts' connections), and their
  agreement with SAE Match and the flow graph.
"""

from sae_lens_match.flow.causal import CausalConfig, EdgeEffect, causal_check, causal_summary, effect_rows, sample_edges
from sae_lens_match.flow.config import NULLS, SIMILARITIES, FlowConfig
from sae_lens_match.flow.connections import (
    SPARSITIES,
    Agreement,
    ConnectionKey,
    Connections,
    ConnectionsConfig,
    ConnectionStatistics,
    StackStatistics,
    connection_rows,
    connection_tables,
    fit_connections,
    graph_partners,
    matching_partners,
    sae_connections,
    stack_agreement,
    stack_connections,
    stack_pairs,
    stack_statistics,
)
from sae_lens_match.flow.graph import Branching, Edge, FlowGraph, FlowGraphFileError, LayerInfo, Node, build_flow_graph
from sae_lens_match.flow.null import null_scores, null_threshold
from sae_lens_match.flow.predecessors import CLASSES, FlowClass, ModulePredecessors, Predecessors, all_predecessors, layer_predecessors
from sae_lens_match.flow.similarity import TopK, feature_vectors, rotated, top_k
from sae_lens_match.flow.stack import MODULES, FlowStack, Module
from sae_lens_match.flow.steering import (
    MODES,
    SteeringConfig,
    activation_change,
    median_norm,
    random_nodes,
    steered_completions,
    steering_hooks,
    steering_nodes,
    steering_runs,
    steering_summary,
    steering_vectors,
)
from sae_lens_match.flow.synthetic import PlantedFlow, make_flow_stack

__all__ = [
    "CLASSES",
    "MODES",
    "MODULES",
    "NULLS",
    "SIMILARITIES",
    "SPARSITIES",
    "Agreement",
    "Branching",
    "CausalConfig",
    "ConnectionKey",
    "ConnectionStatistics",
    "Connections",
    "ConnectionsConfig",
    "Edge",
    "EdgeEffect",
    "FlowClass",
    "FlowConfig",
    "FlowGraph",
    "FlowGraphFileError",
    "FlowStack",
    "LayerInfo",
    "Module",
    "ModulePredecessors",
    "Node",
    "PlantedFlow",
    "Predecessors",
    "StackStatistics",
    "SteeringConfig",
    "TopK",
    "activation_change",
    "all_predecessors",
    "build_flow_graph",
    "causal_check",
    "causal_summary",
    "connection_rows",
    "connection_tables",
    "effect_rows",
    "feature_vectors",
    "fit_connections",
    "graph_partners",
    "layer_predecessors",
    "make_flow_stack",
    "matching_partners",
    "median_norm",
    "null_scores",
    "null_threshold",
    "random_nodes",
    "rotated",
    "sae_connections",
    "sample_edges",
    "stack_agreement",
    "stack_connections",
    "stack_pairs",
    "stack_statistics",
    "steered_completions",
    "steering_hooks",
    "steering_nodes",
    "steering_runs",
    "steering_summary",
    "steering_vectors",
    "top_k",
]
