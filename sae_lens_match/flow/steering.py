"""Steering along a flow: add a feature's decoder direction at one node, or split over every node of its flow.

A steering vector is ``coefficient * W_dec[f] / |W_dec[f]|`` added at every position of the
hook the feature's SAE reads (a TransformerLens forward hook). Flow steering spreads the same
total norm over the ``n`` nodes of the feature's flow (:meth:`FlowGraph.flow`): each adds
``coefficient / n`` of its own unit direction, so single-layer and flow steering inject equal
total norm. The control steers random features of the same SAEs (seeded), with equal norm.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import mean
from typing import Any, Callable, Literal, Sequence

import torch
from tqdm.auto import tqdm

from sae_lens_match.flow.graph import FlowGraph, Node
from sae_lens_match.flow.stack import FlowStack
from sae_lens_match.sources.hooks import check_hooks
from sae_lens_match.sources.tokens import TokenSet
from sae_lens_match.sources.training import seeded

TextScorer = Callable[[Sequence[str]], list[float]]
"""Texts in, one score per text out (e.g. the VADER reward of :mod:`sae_lens_match.lfp.reward`)."""
Hooks = list[tuple[str, Callable[..., torch.Tensor]]]
Mode = Literal["none", "layer", "flow", "random_layer", "random_flow"]
MODES: tuple[Mode, ...] = ("none", "layer", "flow", "random_layer", "random_flow")


@dataclass(frozen=True)
class SteeringConfig:
    """A steering experiment.

    Attributes:
        coefficient: total norm added per position (negative: subtract the feature).
        max_new_tokens, temperature: sampling of completions (plain sampling, no top-k/top-p).
        seeds: one sampling seed (and random-control draw) per run.
    """

    coefficient: float = 8.0
    max_new_tokens: int = 20
    temperature: float = 1.0
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.temperature <= 0 or not self.seeds:
            raise ValueError(f"need max_new_tokens >= 1, temperature > 0 and at least one seed, got {self.max_new_tokens}, {self.temperature}, {self.seeds}.")


def steering_vectors(stack: FlowStack, nodes: Sequence[Node], coefficient: float) -> dict[str, torch.Tensor]:
    """hook name -> ``[d_in]`` vector: ``coefficient / len(nodes)`` times each node's unit decoder
    row, summed per hook."""
    if not nodes:
        raise ValueError("No nodes to steer.")
    out: dict[str, torch.Tensor] = {}
    for node in nodes:
        sae = stack.sae(node.module, node.layer)
        if sae is None or not 0 <= node.feature < sae.cfg.d_sae:
            raise ValueError(f"{node} is not a feature of the stack.")
        direction = torch.nn.functional.normalize(sae.W_dec[node.feature].detach().float(), dim=0) * (coefficient / len(nodes))
        name = stack.hook(node.module, node.layer)
        out[name] = out[name] + direction if name in out else direction
    return out


def steering_hooks(vectors: dict[str, torch.Tensor]) -> Hooks:
    """Forward hooks adding each vector at every position of its hook."""

    def add(vector: torch.Tensor) -> Callable[..., torch.Tensor]:
        def hook(acts: torch.Tensor, hook: Any) -> torch.Tensor:
            return acts + vector.to(acts.device, acts.dtype)

        return hook

    return [(name, add(v)) for name, v in vectors.items()]


def random_nodes(stack: FlowStack, nodes: Sequence[Node], seed: int) -> list[Node]:
    """For each node, a random other feature of the same SAE (seeded)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for node in nodes:
        width = stack.sae(node.module, node.layer).cfg.d_sae
        pick = int(torch.randint(width - 1, (1,), generator=g)) if width > 1 else 0
        out.append(Node(node.layer, node.module, pick + (pick >= node.feature and width > 1)))
    return out


def activation_change(data: TokenSet, stack: FlowStack, vectors: dict[str, torch.Tensor], target: Node) -> float:
    """Mean change of ``target``'s activation over ``data``'s evaluated positions when ``vectors`` are added."""
    name = stack.hook(target.module, target.layer)
    sae = stack.sae(target.module, target.layer)
    check_hooks(data.model, [name, *vectors])
    total, n = 0.0, 0
    with torch.no_grad():
        for tokens in data.batches():
            runs = []
            for hooks in ([], steering_hooks(vectors)):
                seen: dict[str, torch.Tensor] = {}
                read = lambda acts, hook: seen.__setitem__("x", acts)  # noqa: E731  (after the steering hook on the same point)
                data.model.run_with_hooks(tokens, fwd_hooks=[*hooks, (name, read)], return_type=None)
                runs.append(sae.encode(seen["x"].to(sae.W_dec.dtype))[..., target.feature])
            mask = data.position_mask(tokens)
            total += (runs[1] - runs[0])[mask].sum().item()
            n += int(mask.sum())
    return total / max(n, 1)


def steered_completions(model: Any, prefixes: Sequence[str], vectors: dict[str, torch.Tensor], config: SteeringConfig, seed: int) -> list[str]:
    """One sampled completion per prefix (one prefix at a time, no padding) with ``vectors`` added,
    under a forked RNG seeded with ``seed``; the text after each prefix."""
    out = []
    hooks = steering_hooks(vectors)
    with torch.no_grad(), seeded(seed), model.hooks(fwd_hooks=hooks):
        for prefix in prefixes:
            tokens = model.to_tokens(prefix)
            room = model.cfg.n_ctx - tokens.shape[1]
            generated = model.generate(
                tokens, max_new_tokens=max(1, min(config.max_new_tokens, room)), temperature=config.temperature,
                do_sample=True, stop_at_eos=False, verbose=False,
            )
            out.append(model.tokenizer.decode(generated[0, tokens.shape[1]:], skip_special_tokens=True))
    return out


def steering_nodes(graph: FlowGraph, node: Node, mode: Mode, stack: FlowStack, seed: int) -> list[Node]:
    """The nodes a mode steers: ``layer``: the feature alone; ``flow``: its flow; ``random_*``: random
    features at the same places; ``none``: nothing."""
    if mode == "none":
        return []
    nodes = [node] if mode.endswith("layer") else graph.flow(node)
    return random_nodes(stack, nodes, seed) if mode.startswith("random") else nodes


def steering_runs(
    data: TokenSet,
    stack: FlowStack,
    graph: FlowGraph,
    node: Node,
    prefixes: Sequence[str],
    scorer: TextScorer,
    config: SteeringConfig | None = None,
    target: Node | None = None,
) -> list[dict[str, Any]]:
    """Every mode of :data:`MODES` for every seed: the change of ``target``'s activation on
    ``data`` (default target: the deepest residual node of the flow) and the mean score of
    completions to ``prefixes``.

    Returns:
        one row per (mode, seed): ``mode``, ``seed``, ``n_nodes``, ``target``, ``target_change``,
        ``mean_score``.
    """
    config = config or SteeringConfig()
    flow = graph.flow(node)
    target = target or max((n for n in flow if n.module == "residual"), key=lambda n: n.layer)
    rows = []
    for seed in tqdm(config.seeds, desc="steering seeds", disable=not data.progress):
        for mode in MODES:
            nodes = steering_nodes(graph, node, mode, stack, seed)
            vectors = steering_vectors(stack, nodes, config.coefficient) if nodes else {}
            change = activation_change(data, stack, vectors, target) if vectors else 0.0
            texts = steered_completions(data.model, prefixes, vectors, config, seed)
            rows.append({"mode": mode, "seed": seed, "n_nodes": len(nodes), "target": f"{target.layer}/{target.module}/{target.feature}",
                         "target_change": change, "mean_score": mean(scorer(texts))})
    return rows


@torch.no_grad()
def median_norm(data: TokenSet, hook: str, *, rows: int = 16) -> float:
    """The median norm of the activations at ``hook`` over the evaluated positions of the first
    ``rows`` rows of ``data``: the scale a steering coefficient is read against."""
    tokens = data.tokens[:rows]
    _, cache = data.model.run_with_cache(tokens.to(next(data.model.parameters()).device), names_filter=hook)
    return float(cache[hook][data.position_mask(tokens)].norm(dim=-1).median())


def steering_summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per mode: mean over seeds of the target change and of the score, with a 95 % normal
    confidence half-width over seeds (nan for one seed)."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["mode"]].append(r)
    out = []
    for mode, group in by.items():
        out.append({"mode": mode, "n_seeds": len(group), "n_nodes": group[0]["n_nodes"],
                    **_mean_ci(group, "target_change"), **_mean_ci(group, "mean_score")})
    return out


def _mean_ci(group: Sequence[dict[str, Any]], key: str) -> dict[str, float]:
    values = torch.tensor([float(r[key]) for r in group], dtype=torch.float64)
    half = 1.96 * float(values.std()) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return {key: float(values.mean()), f"{key}_ci95": half}
