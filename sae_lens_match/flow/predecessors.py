"""Predecessors of residual features among the previous residual, attention and MLP SAEs, and
the class each feature gets from them (Feature Flow, Laptev et al. 2025)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from sae_lens_match.flow.config import FlowConfig
from sae_lens_match.flow.null import null_threshold
from sae_lens_match.flow.similarity import TopK, feature_vectors, top_k
from sae_lens_match.flow.stack import MODULES, FlowStack, Module

logger = logging.getLogger(__name__)

FlowClass = Literal["translated", "attention", "mlp", "mix", "born"]
CLASSES: tuple[FlowClass, ...] = ("translated", "attention", "mlp", "mix", "born")
CLASS_OF_MODULE: dict[Module, FlowClass] = {"residual": "translated", "attention": "attention", "mlp": "mlp"}


@dataclass(frozen=True)
class ModulePredecessors:
    """The best features of one source module for every target feature.

    Attributes:
        layer: the source SAE's layer.
        best: top-k indices and scores (:class:`~sae_lens_match.flow.similarity.TopK`).
        threshold: scores ``>= threshold`` count as predecessors.
    """

    layer: int
    best: TopK
    threshold: float

    @property
    def above(self) -> torch.Tensor:
        """``[n_target, k]`` bool: which of the kept predecessors pass the threshold."""
        return self.best.scores >= self.threshold


@dataclass(frozen=True)
class Predecessors:
    """Predecessors of the residual features of one layer, by source module (missing modules absent)."""

    layer: int
    n_features: int
    sources: dict[Module, ModulePredecessors]

    def classes(self) -> list[FlowClass]:
        """Each feature's class: the module whose best feature passes its threshold
        (``translated`` for the previous residual), ``mix`` when several do, ``born`` when none does."""
        passing = torch.zeros(self.n_features, len(MODULES), dtype=torch.bool)
        for m, module in enumerate(MODULES):
            if module in self.sources:
                passing[:, m] = self.sources[module].above[:, 0]
        out: list[FlowClass] = []
        for row, count in zip(passing.tolist(), passing.sum(1).tolist()):
            out.append("born" if count == 0 else "mix" if count > 1 else CLASS_OF_MODULE[MODULES[row.index(True)]])
        return out


def layer_predecessors(stack: FlowStack, layer: int, config: FlowConfig | None = None) -> Predecessors:
    """Predecessors of every feature of the residual SAE of ``layer`` (see :class:`FlowStack`).

    Returns:
        :class:`Predecessors`; each source's ``best`` is ``[d_sae, top_k]``.
    """
    config = config or FlowConfig()
    target_sae = stack.sae("residual", layer)
    if target_sae is None:
        raise ValueError(f"The stack has no residual SAE at layer {layer} (it has {stack.n_layers} layers).")
    target = feature_vectors(target_sae, config)
    sources: dict[Module, ModulePredecessors] = {}
    for module, (at, sae) in stack.sources(layer).items():
        best = top_k(target, feature_vectors(sae, config), config)
        # one seed per (layer, module): the nulls of different pairs are independent
        threshold = config.threshold if config.threshold is not None else null_threshold(target, sae, config, config.seed + 1000 * layer + MODULES.index(module))
        sources[module] = ModulePredecessors(at, best, threshold)
        logger.debug("layer %d <- %s %d: threshold %.4g", layer, module, at, threshold)
    return Predecessors(layer, target_sae.cfg.d_sae, sources)


def all_predecessors(stack: FlowStack, config: FlowConfig | None = None, progress: bool = True) -> list[Predecessors]:
    """:func:`layer_predecessors` of every layer, shallowest first."""
    return [layer_predecessors(stack, layer, config) for layer in tqdm(range(stack.n_layers), desc="predecessors", disable=not progress)]
