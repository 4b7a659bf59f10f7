"""``sae-lens-match flow``: the feature flow graph of a model's SAEs, its causal check and steering.

SAEs: ``--world`` (the embedded world's ``resid_post``, ``attn_out`` and ``mlp_out`` SAEs), or ``--residual`` SAEs with optional ``--attention`` and
``--mlp`` SAEs, one per layer (``none`` for a missing one). Writes into ``--out``:
``graph.json`` (:class:`~sae_lens_match.flow.FlowGraph`), ``class_counts.{json,csv}``, and with
data (``--world``, or ``--model`` with ``--tokens``) ``causal_edges.{json,csv}`` and
``causal_summary.{json,csv}``; with ``--steer LAYER:FEATURE`` (``--world`` only: it needs review
prefixes and the VADER reward) ``steering.{json,csv}`` and ``steering_summary.{json,csv}``; with
``--connections`` (needs data) ``connections/``: every module pair's
:class:`~sae_lens_match.flow.Connections` (``<pair>.safetensors`` and ``<pair>.json``) and
``summary.{json,csv}``, one row per pair with its agreement with SAE Match and the flow graph.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from sae_lens import SAE

from sae_lens_match import world
from sae_lens_match.cli.options import add_match_options, add_out, bos_token, finite_float, match_config, out_dir, positive_float, positive_int
from sae_lens_match.flow import (
    NULLS,
    SIMILARITIES,
    SPARSITIES,
    CausalConfig,
    ConnectionKey,
    Connections,
    ConnectionsConfig,
    FlowConfig,
    FlowGraph,
    FlowStack,
    Node,
    SteeringConfig,
    build_flow_graph,
    causal_check,
    causal_summary,
    connection_tables,
    effect_rows,
    median_norm,
    stack_connections,
    steering_runs,
    steering_summary,
)
from sae_lens_match.lfp.reward import vader_reward
from sae_lens_match.matching import match
from sae_lens_match.evaluation.explain import TopTokensExplainer
from sae_lens_match.evaluation.feature_cards import feature_cards
from sae_lens_match.report.pages import html_table
from sae_lens_match.report.site import Section, flow_view, sae_id, write_site
from sae_lens_match.report.tables import format_table, write_table
from sae_lens_match.sources.models import load_model, processing_for
from sae_lens_match.sources.saes import load_sae
from sae_lens_match.sources.tokens import TokenSet, load_tokens


def open_fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    value = finite_float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {value:g}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def residual_node(text: str) -> Node:
    """``LAYER:FEATURE`` of a residual feature."""
    try:
        layer, feature = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LAYER:FEATURE (e.g. 2:17), got {text!r}") from None
    if layer < 0 or feature < 0:
        raise argparse.ArgumentTypeError(f"layer and feature are >= 0, got {text!r}")
    return Node(layer, "residual", feature)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    flow, causal, steer, conn = FlowConfig(), CausalConfig(), SteeringConfig(), ConnectionsConfig()
    p = sub.add_parser("flow", help="feature flow: predecessors across residual, attention and MLP SAEs, causal check, steering")
    p.add_argument("--world", action="store_true", help="the embedded world's SAEs, model and reviews (offline)")
    p.add_argument("--residual", nargs="+", default=None, help="residual SAEs (directories or release:sae_id), one per layer, shallowest first")
    p.add_argument("--attention", nargs="+", default=None, help="attention-output SAEs, one per layer ('none' where missing)")
    p.add_argument("--mlp", nargs="+", default=None, help="MLP-output SAEs, one per layer ('none' where missing)")
    p.add_argument("--model", default=None, help="TransformerLens model for the causal check (with --tokens)")
    p.add_argument("--tokens", type=Path, default=None, help="tokens for the causal check: .pt or .safetensors [n_rows, seq_len]")
    p.add_argument("--bos-token-id", type=bos_token, default="auto", help="'auto' (the tokenizer's), an id, or 'none'")
    p.add_argument("--similarity", choices=SIMILARITIES, default=flow.similarity, help=f"predecessor score (default: {flow.similarity})")
    p.add_argument("--top-k", type=positive_int, default=flow.top_k, help=f"predecessors kept per module (default: {flow.top_k})")
    p.add_argument("--threshold", type=finite_float, default=None, help="fixed score threshold (default: the random-rotation null)")
    p.add_argument("--null", choices=NULLS, default=flow.null, help=f"null of the default threshold (default: {flow.null})")
    p.add_argument("--null-quantile", type=open_fraction, default=flow.null_quantile, help=f"quantile of the null used as threshold (default: {flow.null_quantile})")
    p.add_argument("--causal-edges", type=nonnegative_int, default=causal.n_edges, help=f"edges sampled for the causal check; 0 skips it (default: {causal.n_edges})")
    p.add_argument("--n-texts", type=positive_int, default=32, help="--world: test reviews for the causal check and steering")
    p.add_argument("--batch-size", type=positive_int, default=8, help="token rows per forward pass (default: 8)")
    p.add_argument("--steer", type=residual_node, default=None, help="--world: steer this residual feature (LAYER:FEATURE) alone and along its flow")
    p.add_argument("--coefficient", type=finite_float, default=0.5, help="steering: total norm added, in units of the median activation norm at the steered feature's hook (default: 0.5; negative subtracts)")
    p.add_argument("--prefixes", type=positive_int, default=24, help="steering: review prefixes completed per run")
    p.add_argument("--max-new-tokens", type=positive_int, default=steer.max_new_tokens, help=f"steering: tokens sampled per completion (default: {steer.max_new_tokens})")
    p.add_argument("--temperature", type=positive_float, default=steer.temperature, help=f"steering: sampling temperature (default: {steer.temperature})")
    p.add_argument("--seeds", type=positive_int, default=len(steer.seeds), help="steering: seeds 0..N-1")
    p.add_argument("--connections", action="store_true", help="with data: also fit sparse linear connections between the stack's SAEs "
                   "(residual L-1, attention L, MLP L -> residual L; residual L-1 -> MLP L) and write connections/")
    p.add_argument("--connections-sparsity", choices=SPARSITIES, default=conn.sparsity, help=f"connections: lasso (l1) or matching pursuit (topk) (default: {conn.sparsity})")
    p.add_argument("--connections-l1", type=open_fraction, default=conn.l1, help=f"connections: lasso penalty in correlation units (default: {conn.l1})")
    p.add_argument("--connections-k", type=positive_int, default=conn.k, help=f"connections: upstream features per downstream one for topk (default: {conn.k})")
    p.add_argument("--seed", type=int, default=0, help="world, null and sampling seed; also the connections' held-out split and control")
    add_out(p, Path("results/flow"))
    add_match_options(p)
    p.set_defaults(run=run_flow)


@dataclass
class _Inputs:
    stack: FlowStack
    data: TokenSet | None
    prefixes: list[str] | None


def _stack_inputs(args: argparse.Namespace) -> _Inputs:
    """The stack and data: the world's, or the SAEs, model and tokens named."""
    if args.world:
        if args.residual or args.attention or args.mlp or args.model or args.tokens:
            raise ValueError("--world brings its own SAEs, model and tokens; drop --residual/--attention/--mlp/--model/--tokens.")
        stack = FlowStack(*(world.load_saes(kind, seed=args.seed) for kind in ("resid_post", "attn_out", "mlp_out")))
        model = world.load_model("hooked_sae", seed=args.seed)
        data = TokenSet(model, world.tokens("test", args.n_texts, seed=args.seed), args.bos_token_id, args.batch_size)
        return _Inputs(stack, data, world.review_prefixes(args.prefixes, seed=args.seed))
    if not args.residual:
        raise ValueError("Name the residual SAEs (--residual ...) or use --world.")
    if args.steer is not None:
        raise ValueError("--steer needs --world (review prefixes to complete and score).")
    stack = FlowStack([load_sae(s) for s in args.residual], attention=_optional(args.attention), mlp=_optional(args.mlp))
    if (args.model is None) != (args.tokens is None):
        raise ValueError("The causal check needs both --model and --tokens (or --world).")
    if args.model is None:
        return _Inputs(stack, None, None)
    first = stack.residual[0]
    model = load_model(args.model, "hooked_sae", device=str(first.device), processing=processing_for(first))
    return _Inputs(stack, TokenSet(model, load_tokens(args.tokens), args.bos_token_id, args.batch_size), None)


def _optional(specs: list[str] | None) -> list[SAE | None] | None:
    return None if specs is None else [None if s.lower() == "none" else load_sae(s) for s in specs]


def run_flow(args: argparse.Namespace) -> dict[str, list[dict]]:
    """Build and write the graph, then the causal check and steering where asked; return the tables."""
    out_dir(args)
    inputs = _stack_inputs(args)
    steer = args.steer
    if args.connections and inputs.data is None:
        raise ValueError("--connections fits on data: give --model and --tokens (or --world).")
    connections_config = ConnectionsConfig(sparsity=args.connections_sparsity, l1=args.connections_l1, k=args.connections_k,
                                           seed=args.seed) if args.connections else None
    if steer is not None and (steer.layer >= inputs.stack.n_layers or steer.feature >= inputs.stack.residual[steer.layer].cfg.d_sae):
        raise ValueError(f"--steer {steer.layer}:{steer.feature} is not a residual feature of the stack.")
    config = FlowConfig(similarity=args.similarity, top_k=args.top_k, threshold=args.threshold, null=args.null, null_quantile=args.null_quantile,
                        match=match_config(args), seed=args.seed)
    graph = build_flow_graph(inputs.stack, config)
    graph.save(args.out / "graph.json")
    tables = {"class_counts": graph.class_counts()}
    print(format_table(tables["class_counts"], list(tables["class_counts"][0])))
    if inputs.data is not None and args.causal_edges and graph.edges:
        effects = causal_check(inputs.data, inputs.stack, graph, CausalConfig(n_edges=args.causal_edges, seed=args.seed))
        tables["causal_edges"], tables["causal_summary"] = effect_rows(effects), causal_summary(effects)
        if effects:
            print(format_table(tables["causal_summary"], list(tables["causal_summary"][0])))
    found, connections = _connections(args, inputs, graph, connections_config) if connections_config else (None, [])
    if steer is not None:
        scale = median_norm(inputs.data, inputs.stack.hook("residual", steer.layer))
        steering = SteeringConfig(args.coefficient * scale, args.max_new_tokens, args.temperature, tuple(range(args.seeds)))
        rows = steering_runs(inputs.data, inputs.stack, graph, steer, inputs.prefixes, vader_reward, steering)
        tables["steering"], tables["steering_summary"] = rows, steering_summary(rows)
        print(format_table(tables["steering_summary"], list(tables["steering_summary"][0])))
    for name, rows in tables.items():
        if rows:
            write_table(args.out, name, rows)
    cards = {}
    if inputs.data is not None:  # what each feature fires on, for the page's feature cards
        cards = {sae_id(layer, module): feature_cards(inputs.data, sae, explainer=TopTokensExplainer(), label=sae_id(layer, module)).to_dict()
                 for module, layer, sae in inputs.stack.items()}
    sections = [Section(name.replace("_", " ").capitalize(), html_table(rows, list(rows[0])) + f"<p><a href='{name}.json'>{name}.json</a> · <a href='{name}.csv'>{name}.csv</a></p>")
                for name, rows in tables.items() if rows]
    if connections:
        sections.append(Section("Connections", html_table(connections, list(connections[0]))
                                + "<p><a href='connections/summary.json'>connections/summary.json</a> · <a href='connections/summary.csv'>connections/summary.csv</a></p>"))
    index = write_site(args.out, title="Feature flow", view=flow_view(graph, [], connections=found), cards=cards, sections=sections)
    print(f"wrote {index} (open it in a browser), {args.out}/graph.json and {', '.join(f'{n}.json/.csv' for n, r in tables.items() if r)}"
          + (", connections/" if connections else ""))
    return {**tables, "connections": connections} if connections else tables


def _connections(args: argparse.Namespace, inputs: _Inputs, graph: FlowGraph, config: ConnectionsConfig) -> tuple[dict[ConnectionKey, Connections], list[dict]]:
    """Fit the connections of every module pair in one pass, write ``connections/``; return them and the summary rows."""
    found = stack_connections(inputs.stack, inputs.data, config)
    folder = args.out / "connections"
    for key, conn in found.items():
        conn.save(folder / f"{key.stem}.safetensors")
    residual = inputs.stack.residual
    matchings = [match(residual[layer - 1], residual[layer], match_config(args)) for layer in range(1, len(residual))]
    table, _ = connection_tables(found, matchings, graph)
    write_table(folder, "summary", table)
    print(format_table(table, CONNECTION_COLUMNS, digits=3))
    return found, table


CONNECTION_COLUMNS = ["pair", "n_alive", "fraction_linear", "control_fraction_linear", "median_explained_variance", "mean_nonzero",
                      "sae_match_agreement", "flow_graph_agreement", "chance"]
"""The columns of the connections' summary that the terminal and the pages show."""
