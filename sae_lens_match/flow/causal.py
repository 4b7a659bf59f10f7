"""The causal check of a flow graph's edges on data (Feature Flow's deactivation experiment).

For an edge ``u -> v``: run the model with ``u``'s SAE spliced in at its hook with its error
term (as SAELens's ``HookedSAETransformer`` does with ``use_error_term=True``: the SAE then
passes the model's own activation on, so the forward pass is the clean one), set ``u``'s
activation to 0 there (only ``u``'s decoder contribution leaves the stream), and read ``v``'s
activation (its SAE's encoding of the stream at its hook). The effect is the mean drop of
``v``'s activation over the positions where ``v`` fires in the clean run. The control
deactivates a random feature of ``u``'s SAE instead, drawn (seeded) among that SAE's features
that fire somewhere in the batch: a feature that never fires would change nothing and make the
control trivially weak. An edge is *validated* when its effect exceeds its control's.

The ablations are batched and run only where they can change something: one forward pass
holds many (copy, row) pairs, each zeroing its own feature and reading its own target; a pair
is run only if the target fires in that row and the zeroed feature is active somewhere in it,
the spliced SAE is evaluated only at the positions where that feature is active (elsewhere the
SAE with its error term passes the activation on), and the pass starts at the source's block
from the clean stream (nothing before the source's hook changes). Results equal the
straightforward one-ablation-per-pass computation up to float rounding.
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

_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_STREAM = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")  # the residual stream between blocks


@dataclass(frozen=True)
class CausalConfig:
    """How many edges are checked and how.

    Attributes:
        n_edges: edges sampled (seeded, uniformly over the graph's edges); all if fewer.
        rank0_only: check only each module's best predecessor (rank 0).
        seed: seed of the edge sample and of the random controls.
        ablation_tokens: positions (rows x sequence length) per batched forward pass of
            ablated rows (at least one row per pass); bounds memory, the results do not
            depend on it beyond float rounding.
    """

    n_edges: int = 200
    rank0_only: bool = True
    seed: int = 0
    ablation_tokens: int = 8192

    def __post_init__(self) -> None:
        if self.n_edges < 1:
            raise ValueError(f"n_edges must be >= 1, got {self.n_edges}.")
        if self.ablation_tokens < 1:
            raise ValueError(f"ablation_tokens must be >= 1, got {self.ablation_tokens}.")


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
    in groups of one (source SAE, target SAE) pair; each forward pass stops after the target's
    block. Edges whose target never fires on ``data`` are left out (logged).
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
            pair = _Pair(model, stack.hook(module, source_layer), stack.sae(module, source_layer),
                         stack.hook("residual", target_layer), stack.sae("residual", target_layer))
            for tokens in data.batches():
                mask = data.position_mask(tokens)
                clean = pair.clean(tokens)
                fired: list[tuple[Edge, torch.Tensor]] = []
                for edge in group:
                    fires = (clean.target_acts[..., edge.target.feature] > 0) & mask
                    if not fires.any():
                        continue
                    if edge not in controls:
                        controls[edge] = _random_feature(clean.source_acts, mask, edge.source.feature, g)
                    fired.append((edge, fires))
                if not fired:
                    continue
                # two copies per edge: one zeroes its source feature, the other its control
                features = torch.tensor([f for e, _ in fired for f in (e.source.feature, controls[e])], device=tokens.device)
                targets = torch.tensor([e.target.feature for e, _ in fired for _ in range(2)], device=tokens.device)
                fires = torch.stack([f for _, f in fired]).repeat_interleave(2, dim=0)
                drops = pair.drops(clean, features, targets, fires, config.ablation_tokens)
                for i, (edge, edge_fires) in enumerate(fired):
                    s = sums[edge]
                    s[0] += clean.target_acts[..., edge.target.feature][edge_fires].sum().item()
                    s[1] += drops[2 * i]
                    s[2] += drops[2 * i + 1]
                    s[3] += int(edge_fires.sum())
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


@dataclass
class _Clean:
    """One batch's clean run: SAE activations ``[batch, seq, d_sae]`` and the forward-pass arguments
    that resume it where the ablated passes start."""

    source_acts: torch.Tensor
    target_acts: torch.Tensor
    resume: dict[str, Any]


@dataclass
class _Pair:
    """A (source SAE, target SAE) pair on the model: clean runs and batched ablations."""

    model: Any
    source_hook: str
    source_sae: Any
    target_hook: str
    target_sae: Any

    def __post_init__(self) -> None:
        start, stop = _block(self.source_hook), _block(self.target_hook)
        # a pass resumes at the source's block (nothing before its hook changes), or, for a source
        # on the stream between blocks, at the block it enters, with the source spliced into its
        # input; it stops after the target's block (nothing after it matters); hooks outside
        # blocks run the whole model
        stream = _STREAM.match(self.source_hook)
        self.on_stream = stream is not None and start is not None and stop is not None
        if self.on_stream:
            start += stream.group(2) == "post"
        self.start, self.stop = (None, None) if start is None or stop is None else (start, stop + 1)

    def clean(self, tokens: torch.Tensor) -> _Clean:
        resume_name = self.source_hook if self.on_stream else f"blocks.{self.start}.hook_resid_pre"
        names = [self.source_hook, self.target_hook] + ([resume_name] if self.start is not None else [])
        _, cache = self.model.run_with_cache(tokens, names_filter=names, stop_at_layer=self.stop)
        if self.start is None:
            resume = {"input": tokens}
        else:
            _, _, pos_embed, attention_mask = self.model.input_to_embed(tokens)  # what blocks need besides the stream
            resume = {"input": cache[resume_name], "start_at_layer": self.start, "shortformer_pos_embed": pos_embed, "attention_mask": attention_mask}
        return _Clean(self.source_sae.encode(cache[self.source_hook]), self.target_sae.encode(cache[self.target_hook]), resume)

    def drops(self, clean: _Clean, features: torch.Tensor, targets: torch.Tensor, fires: torch.Tensor, max_tokens: int) -> list[float]:
        """Per copy ``k``: the drop of target feature ``targets[k]``, summed over ``fires[k]`` (``[batch, seq]``),
        when source feature ``features[k]`` is set to 0."""
        # only (copy, row) pairs where the target fires and the zeroed feature is active somewhere
        # in the row can change: every other drop is exactly 0
        active = (clean.source_acts[..., features] != 0).any(1).T  # [copies, batch]
        copy, row = (active & fires.any(-1)).nonzero(as_tuple=True)
        drops = torch.zeros(len(features), device=features.device)
        per_pass = max(1, max_tokens // fires.shape[-1])
        for begin in range(0, len(copy), per_pass):  # in chunks bounded by max_tokens
            c, r = copy[begin : begin + per_pass], row[begin : begin + per_pass]
            stream = self._ablated_stream(clean, r, features[c])
            i, pos = fires[c, r].nonzero(as_tuple=True)  # the target is read only where it fires
            ablated = self.target_sae.encode(stream[i, pos])[torch.arange(len(i)), targets[c][i]]
            drops.index_add_(0, c[i], clean.target_acts[r[i], pos, targets[c][i]] - ablated)
        return drops.tolist()

    def _ablated_stream(self, clean: _Clean, rows: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``[n, seq, ...]`` at the target's hook: clean row ``rows[j]`` with ``features[j]`` set to 0."""
        seen: dict[str, torch.Tensor] = {}

        def splice(x: torch.Tensor, hook: Any) -> torch.Tensor:
            # the spliced SAE changes x only where the zeroed feature is active
            j, pos = (clean.source_acts[rows, :, features] != 0).nonzero(as_tuple=True)
            x = x.clone()
            x[j, pos] = _spliced(self.source_sae, x[j, pos], features[j])
            return x

        def read(x: torch.Tensor, hook: Any) -> None:
            seen["x"] = x

        inputs = {k: v[rows] if torch.is_tensor(v) else v for k, v in clean.resume.items()}
        hooks = [(self.target_hook, read)]
        if self.on_stream:
            inputs["input"] = splice(inputs["input"], None)
        else:
            hooks.append((self.source_hook, splice))
        self.model.run_with_hooks(**inputs, fwd_hooks=hooks, return_type=None, stop_at_layer=self.stop)
        return seen["x"]


def _spliced(sae: Any, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The output of ``sae`` spliced in with its error term (as ``SAE.forward`` computes it) on
    activations ``x`` (``[n, ...]``), with feature ``features[j]`` of row ``j`` set to 0."""
    acts = sae.encode(x)
    acts[torch.arange(len(x)), features] = 0.0
    return sae.decode(acts) + (x - sae.decode(sae.encode(x)))


def _block(hook: str) -> int | None:
    """The index of the block ``hook`` lies in, if any."""
    match = _BLOCK.match(hook)
    return int(match.group(1)) if match else None


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
