"""The causal check of a flow graph's edges on data (Feature Flow's deactivation experiment).

For an edge ``u -> v``: run the model with the stack's SAEs spliced in through SAELens's
``HookedSAETransformer`` with ``use_error_term=True`` (each SAE then passes the model's own
activation on, so the forward pass is the clean one), set ``u``'s activation to 0 at its hook
(only ``u``'s decoder contribution leaves the stream), and read ``v``'s activation. The effect
is the mean drop of ``v``'s activation over the positions where ``v`` fires in the clean run.
The control deactivates a random feature of ``u``'s SAE instead, drawn (seeded) among that
SAE's features that fire somewhere in the batch: a feature that never fires would change
nothing and make the control trivially weak. An edge is *validated* when its effect exceeds
its control's.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from sae_lens_match.flow.graph import Edge, FlowGraph
from sae_lens_match.flow.stack import FlowStack
from sae_lens_match.sources.hooks import check_hooks
from sae_lens_match.sources.tokens import TokenSet

logger = logging.getLogger(__name__)

ACTS = "hook_sae_acts_post"
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


@dataclass(frozen=True)
class CausalConfig:
    """How many edges are checked and how.

    Attributes:
        n_edges: edges sampled (seeded, uniformly over the graph's edges); all if fewer.
        rank0_only: check only each module's best predecessor (rank 0).
        seed: seed of the edge sample and of the random controls.
    """

    n_edges: int = 200
    rank0_only: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_edges < 1:
            raise ValueError(f"n_edges must be >= 1, got {self.n_edges}.")


@dataclass(frozen=True)
class EdgeEffect:
    """One checked edge: ``effect`` and ``random_effect`` are mean drops of the target's
    activation over ``n_positions`` positions where it fires; ``clean`` is its mean activation there."""

    layer: int
    target_class: str
    source_module: str
    source_feature: int
    target_feature: int
    score: float
    clean: float
    effect: float
    random_feature: int
    random_effect: float
    n_positions: int

    @property
    def validated(self) -> bool:
        return self.effect > self.random_effect


def sample_edges(graph: FlowGraph, config: CausalConfig) -> list[Edge]:
    """The edges :func:`causal_check` checks (seeded)."""
    edges = [e for e in graph.edges if e.rank == 0 or not config.rank0_only]
    if len(edges) <= config.n_edges:
        return edges
    g = torch.Generator().manual_seed(config.seed)
    return [edges[i] for i in sorted(torch.randperm(len(edges), generator=g)[: config.n_edges].tolist())]


def causal_check(data: TokenSet, stack: FlowStack, graph: FlowGraph, config: CausalConfig | None = None) -> list[EdgeEffect]:
    """Deactivate each sampled edge's source feature and a random control; see the module docstring.

    ``data.model`` must be a ``HookedSAETransformer`` without SAEs attached. Edges are checked
    in groups of one (source SAE, target SAE) pair, with only those two SAEs attached; each
    forward pass stops after the target's block. Edges whose target never fires on ``data``
    are left out (logged).
    """
    config = config or CausalConfig()
    model = data.model
    if not hasattr(model, "saes"):
        raise TypeError(f"The causal check needs a sae_lens.HookedSAETransformer, got {type(model).__name__}.")
    check_hooks(model, [sae.cfg.metadata.hook_name for _, _, sae in stack.items()], "SAE hook")
    edges = sample_edges(graph, config)
    groups: dict[tuple[str, int, int], list[Edge]] = defaultdict(list)
    for edge in edges:
        groups[(edge.source.module, edge.source.layer, edge.target.layer)].append(edge)
    g = torch.Generator().manual_seed(config.seed)
    sums: dict[Edge, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    controls: dict[Edge, int] = {}
    with torch.no_grad():
        for (module, source_layer, target_layer), group in tqdm(groups.items(), desc="causal check", disable=not data.progress):
            source_name = f"{stack.hook(module, source_layer)}.{ACTS}"
            target_name = f"{stack.hook('residual', target_layer)}.{ACTS}"
            block = _BLOCK.match(target_name)  # nothing after the target's block matters
            stop = int(block.group(1)) + 1 if block else None
            with model.saes(saes=[stack.sae(module, source_layer), stack.sae("residual", target_layer)], use_error_term=True):
                for tokens in data.batches():
                    mask = data.position_mask(tokens)
                    _, cache = model.run_with_cache(tokens, names_filter=[source_name, target_name], stop_at_layer=stop)
                    for edge in group:
                        clean = cache[target_name][..., edge.target.feature]
                        fires = (clean > 0) & mask
                        if not fires.any():
                            continue
                        if edge not in controls:
                            controls[edge] = _random_feature(cache[source_name], mask, edge.source.feature, g)
                        drops = [
                            (clean - _ablated(model, tokens, source_name, feature, target_name, edge.target.feature, stop))[fires].sum().item()
                            for feature in (edge.source.feature, controls[edge])
                        ]
                        s = sums[edge]
                        s[0] += clean[fires].sum().item()
                        s[1] += drops[0]
                        s[2] += drops[1]
                        s[3] += int(fires.sum())
    skipped = len(edges) - len(sums)
    if skipped:
        logger.info("causal check: %d of %d edges left out (their target never fires on the data)", skipped, len(edges))
    return [
        EdgeEffect(e.target.layer, graph.class_of(e.target), e.source.module, e.source.feature, e.target.feature, e.score,
                   s[0] / s[3], s[1] / s[3], controls[e], s[2] / s[3], s[3])
        for e, s in ((e, sums[e]) for e in edges if e in sums)
    ]


def _random_feature(acts: torch.Tensor, mask: torch.Tensor, exclude: int, g: torch.Generator) -> int:
    """A random feature among those firing somewhere on the evaluated positions, other than ``exclude``."""
    live = (acts[mask] > 0).any(0)
    live[exclude] = False
    candidates = live.nonzero().squeeze(1).cpu()
    if len(candidates) == 0:  # nothing else fires: any other feature (its effect is then 0)
        candidates = torch.tensor([f for f in range(acts.shape[-1]) if f != exclude] or [exclude])
    return int(candidates[torch.randint(len(candidates), (1,), generator=g)])


def _ablated(model: Any, tokens: torch.Tensor, source_name: str, feature: int, target_name: str, target_feature: int, stop: int | None) -> torch.Tensor:
    """``[batch, seq]`` activation of ``target_feature`` with ``feature`` set to 0 at ``source_name``."""
    seen: dict[str, torch.Tensor] = {}

    def deactivate(acts: torch.Tensor, hook: Any) -> torch.Tensor:
        acts = acts.clone()
        acts[..., feature] = 0.0
        return acts

    def read(acts: torch.Tensor, hook: Any) -> None:
        seen["acts"] = acts[..., target_feature].clone()

    model.run_with_hooks(tokens, fwd_hooks=[(source_name, deactivate), (target_name, read)], return_type=None, stop_at_layer=stop)
    return seen["acts"]


def causal_summary(effects: list[EdgeEffect]) -> list[dict[str, Any]]:
    """Per (layer, target class), then per class over all layers: edges checked, fraction
    validated, mean effect and mean random-control effect (absolute and relative to the
    target's clean activation)."""
    groups: dict[tuple[Any, str], list[EdgeEffect]] = defaultdict(list)
    for e in effects:
        groups[(e.layer, e.target_class)].append(e)
        groups[("all", e.target_class)].append(e)
        groups[("all", "all")].append(e)
    rows = []
    for (layer, cls), group in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        n = len(group)
        rows.append({
            "layer": layer, "target_class": cls, "n_edges": n,
            "fraction_validated": sum(e.validated for e in group) / n,
            "mean_effect": sum(e.effect for e in group) / n,
            "mean_random_effect": sum(e.random_effect for e in group) / n,
            "mean_relative_effect": sum(e.effect / e.clean for e in group) / n,
            "mean_relative_random_effect": sum(e.random_effect / e.clean for e in group) / n,
        })
    return rows


def effect_rows(effects: list[EdgeEffect]) -> list[dict[str, Any]]:
    """One row per checked edge (for tables)."""
    return [{**asdict(e), "validated": e.validated} for e in effects]
