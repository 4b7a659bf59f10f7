"""Feature flow on the embedded world: classes per layer, the causal check, and steering.

The world has residual (``hook_resid_post``), attention-output (``hook_attn_out``) and
MLP-output (``hook_mlp_out``) SAEs at each of its 4 layers. Printed:

1. class counts per layer, for decoder cosine and for SAE Match's folded-parameter MSE, with
   the null thresholds;
2. the causal check: per class and layer, the fraction of edges whose predecessor's
   deactivation lowers the target more than a random active feature of the same SAE does,
   and the mean effects (absolute and relative to the target's clean activation);
3. steering: a positive-sentiment residual feature (by default the one whose decoder row most
   raises the logits of positive over negative adjectives, among those with a flow of at least
   3 nodes) steered alone or along its flow at equal total norm, against random
   features of the same SAEs; the change of the flow's deepest residual feature and the mean
   VADER reward (``lfp.reward.vader_reward``) of completions to test-review prefixes, mean and
   95 % CI over seeds.

    python benchmarks/flow_world.py
    python benchmarks/flow_world.py --edges 500 --seeds 8 --coefficients 4 8 16
"""

from __future__ import annotations

import argparse
import time

import torch

from sae_lens_match import world
from sae_lens_match.flow import (
    CausalConfig,
    FlowConfig,
    FlowStack,
    Node,
    SteeringConfig,
    build_flow_graph,
    causal_check,
    causal_summary,
    median_norm,
    steering_runs,
    steering_summary,
)
from sae_lens_match.lfp.reward import vader_reward
from sae_lens_match.report import format_table
from sae_lens_match.sources import TokenSet, feature_activations, pack_texts


def world_stack() -> FlowStack:
    return FlowStack(world.load_saes("resid_post"), attention=world.load_saes("attn_out"), mlp=world.load_saes("mlp_out"))


def sentiment_scores(model, stack: FlowStack, layer: int, select: str) -> torch.Tensor:
    """``[d_sae]`` how positive each residual feature of ``layer`` is. ``"logits"``: its decoder row's
    direct effect on the logits (centred over the vocabulary) of the world's positive adjectives
    minus its negative ones, i.e. what the feature writes; ``"activation"``: its mean activation on
    positive minus negative train reviews, i.e. what it reads."""
    sae = stack.residual[layer]
    if select == "logits":
        vocab = world.vocabulary()
        first = lambda words: torch.stack([model.to_tokens(" " + w.word, prepend_bos=False)[0, 0] for w in words]).cpu()  # noqa: E731
        logits = (sae.W_dec @ model.W_U).detach()
        logits = logits - logits.mean(1, keepdim=True)
        return logits[:, first(vocab.adjectives[1])].mean(1) - logits[:, first(vocab.adjectives[-1])].mean(1)
    means = {}
    for label in ("positive", "negative"):
        texts = [r.text for r in world.reviews(600, split="train") if r.label == label]
        data = TokenSet(model, pack_texts(model.tokenizer, texts, model.cfg.n_ctx), batch_size=32, progress=False)
        total, n = torch.zeros(sae.cfg.d_sae), 0
        for (acts,) in feature_activations(data, [sae]):
            total += acts.sum(0)
            n += acts.shape[0]
        means[label] = total / n
    return means["positive"] - means["negative"]


def sentiment_feature(model, stack: FlowStack, graph, layer: int, select: str, min_flow: int) -> tuple[Node, float]:
    """Among the residual features of ``layer`` whose flow has at least ``min_flow`` nodes, the most positive one."""
    scores = sentiment_scores(model, stack, layer, select)
    for f in scores.argsort(descending=True).tolist():
        if len(graph.flow(Node(layer, "residual", f))) >= min_flow:
            return Node(layer, "residual", f), float(scores[f])
    raise ValueError(f"No residual feature of layer {layer} has a flow of {min_flow} nodes.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--edges", type=int, default=150, help="edges sampled for the causal check")
    p.add_argument("--texts", type=int, default=24, help="test reviews for the causal check")
    p.add_argument("--layer", type=int, default=2, help="layer of the steered sentiment feature")
    p.add_argument("--select", choices=["logits", "activation"], default="logits", help="how the positive feature is chosen (see sentiment_scores)")
    p.add_argument("--min-flow", type=int, default=3, help="the steered feature's flow has at least this many nodes")
    p.add_argument("--coefficients", type=float, nargs="+", default=[0.5, 1.0], help="steering norm, in units of the median resid_post norm")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--prefixes", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=12)
    args = p.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    stack = world_stack()
    model = world.load_model("hooked_sae")
    print(f"world: {stack.n_layers} layers; modules: residual, attention, mlp")

    graphs = {}
    for similarity, null in (("cosine", "whitened"), ("cosine", "isotropic"), ("mse", "whitened")):
        graphs[similarity, null] = graph = build_flow_graph(stack, FlowConfig(similarity=similarity, null=null), progress=False)
        rows = graph.class_counts()
        for row, info in zip(rows, graph.layers):
            row.update({f"thr_{m}": t for m, t in info.thresholds.items()})
        n_split = sum(b.kind == "split" for b in graph.branchings)
        n_merge = sum(b.kind == "merge" for b in graph.branchings)
        print(f"\n== classes per layer ({similarity}; threshold: {null} null, quantile 0.99); {len(graph.edges)} edges, {n_split} splits, {n_merge} merges")
        print(format_table(rows, ["layer", "n_features", "translated", "attention", "mlp", "mix", "born", "fraction_translated", "thr_residual", "thr_attention", "thr_mlp"], digits=3))

    graph = graphs["cosine", "whitened"]
    data = TokenSet(model, world.tokens("test", args.texts), batch_size=32, progress=False)
    effects = causal_check(data, stack, graph, CausalConfig(n_edges=args.edges, seed=0))
    print(f"\n== causal check (cosine, whitened null): {len(effects)} edges with an active target, on {data.n_positions()} test positions")
    print(format_table(causal_summary(effects), ["layer", "target_class", "n_edges", "fraction_validated", "mean_effect", "mean_random_effect", "mean_relative_effect", "mean_relative_random_effect"], digits=3))
    by_module = {}
    for e in effects:
        by_module.setdefault(e.source_module, []).append(e)
    for module, group in sorted(by_module.items()):
        print(f"   source {module}: {len(group)} edges, validated {sum(e.validated for e in group) / len(group):.3f}, "
              f"mean relative effect {sum(e.effect / e.clean for e in group) / len(group):.3f} vs random {sum(e.random_effect / e.clean for e in group) / len(group):.4f}")

    strict = {(e.source, e.target) for e in graph.edges}
    lenient = causal_check(data, stack, graphs["cosine", "isotropic"], CausalConfig(n_edges=args.edges, seed=1))
    print("\n== causal check of the isotropic-null graph's edges, split by whether they also pass the whitened null")
    split_rows = []
    for passes in (True, False):
        group = [e for e in lenient if ((Node(e.layer - (e.source_module == "residual"), e.source_module, e.source_feature), Node(e.layer, "residual", e.target_feature)) in strict) == passes]
        if group:
            split_rows.append({"edges": "pass whitened" if passes else "isotropic only", "n_edges": len(group),
                               "fraction_validated": sum(e.validated for e in group) / len(group),
                               "mean_relative_effect": sum(e.effect / e.clean for e in group) / len(group),
                               "mean_relative_random_effect": sum(e.random_effect / e.clean for e in group) / len(group),
                               "mean_score": sum(e.score for e in group) / len(group)})
    print(format_table(split_rows, list(split_rows[0]), digits=3))

    node, margin = sentiment_feature(model, stack, graph, args.layer, args.select, args.min_flow)
    flow = graph.flow(node)
    norm = median_norm(data, stack.hook("residual", args.layer))
    print(f"\n== steering feature {node.layer}:{node.feature} (sentiment score by {args.select}: {margin:.3f}); flow of {len(flow)} nodes: "
          + ", ".join(f"{n.layer}/{n.module}/{n.feature}" for n in flow) + f"; median resid_post norm {norm:.2f}")
    prefixes = world.review_prefixes(args.prefixes, split="test")
    steer_data = TokenSet(model, world.tokens("test", 8), batch_size=32, progress=False)
    for scale in args.coefficients:
        config = SteeringConfig(coefficient=scale * norm, max_new_tokens=args.max_new_tokens, seeds=tuple(range(args.seeds)))
        rows = steering_summary(steering_runs(steer_data, stack, graph, node, prefixes, vader_reward, config))
        print(f"-- coefficient {scale} x norm = {scale * norm:.2f}; {args.seeds} seeds x {args.prefixes} prefixes x {args.max_new_tokens} tokens")
        print(format_table(rows, ["mode", "n_nodes", "target_change", "target_change_ci95", "mean_score", "mean_score_ci95"], digits=3))
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
