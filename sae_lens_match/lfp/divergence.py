"""Which layers did fine-tuning change most? Per-layer L2 parameter divergence (LFP step 2)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal, Sequence

from torch import nn

from sae_lens_match.report.plots import Line, Panel, write_figure

# Layer index in Hugging Face (layers.N, h.N, layer.N) and TransformerLens (blocks.N) names.
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)\.")
logger = logging.getLogger(__name__)


Aggregate = Literal["l2", "sum_of_norms"]


def layer_divergence(
    base: nn.Module, tuned: nn.Module, *, part: Literal["mlp", "block"] = "mlp", aggregate: Aggregate = "l2"
) -> dict[int, float]:
    """How far each layer's parameters moved, in float64.

    Args:
        base, tuned: two models with the same parameter names (e.g. an HF model before and
            after TRL fine-tuning). Weights must be floating point: quantised (integer)
            weights are refused, since their differences are not the model's.
        part: ``"mlp"`` counts parameters whose name contains ``.mlp.``; ``"block"`` all of
            the layer's parameters.
        aggregate: ``"l2"``: ``sqrt(sum ||theta_tuned - theta_base||^2)`` over the layer's
            parameters, one L2 norm of everything (the default); ``"sum_of_norms"``: the sum
            of each tensor's L2 norm, the LFP reference code's aggregation (with
            ``part="block"``, attention included), which weighs small tensors (biases)
            relatively more.

    Returns:
        ``{layer: divergence}`` for every layer found.
    """
    if part not in ("mlp", "block"):
        raise ValueError(f"part must be 'mlp' or 'block', got {part!r}.")
    if aggregate not in ("l2", "sum_of_norms"):
        raise ValueError(f"aggregate must be 'l2' or 'sum_of_norms', got {aggregate!r}.")
    base_params = dict(base.named_parameters())
    tuned_params = dict(tuned.named_parameters())
    if base_params.keys() != tuned_params.keys():
        missing = sorted(base_params.keys() ^ tuned_params.keys())[:5]
        raise ValueError(f"The models have different parameters (e.g. {missing}); compare a model with its own fine-tune.")
    total: dict[int, float] = {}
    for name, p in base_params.items():
        found = _LAYER.search(name)
        if found is None or (part == "mlp" and ".mlp." not in name):
            continue
        q = tuned_params[name]
        if not (p.dtype.is_floating_point and q.dtype.is_floating_point):
            raise ValueError(f"Parameter {name!r} is {p.dtype}/{q.dtype}: divergence needs full-precision weights.")
        if p.shape != q.shape:
            raise ValueError(f"Parameter {name!r} has shape {tuple(p.shape)} vs {tuple(q.shape)}.")
        layer = int(found.group(1))
        squared = float(((q.detach().double() - p.detach().double().to(q.device)) ** 2).sum())
        total[layer] = total.get(layer, 0.0) + (squared if aggregate == "l2" else squared**0.5)
    if not total:
        raise ValueError(f"No {part} parameters with a layer index were found (names like 'layers.3.mlp.*').")
    return {layer: value**0.5 if aggregate == "l2" else value for layer, value in sorted(total.items())}


def top_layers(divergence: dict[int, float], k: int = 5) -> list[int]:
    """The ``k`` most-changed layers, most changed first (ties: the shallower layer first).

    Raises:
        ValueError: ``k`` outside ``1..len(divergence)``, or no layer changed at all (the
            fine-tuning did nothing: zero steps or learning rate, or frozen weights).
    """
    if not 1 <= k <= len(divergence):
        raise ValueError(f"Cannot pick the top {k} of {len(divergence)} layers; choose 1 <= k <= {len(divergence)}.")
    if not any(v > 0 for v in divergence.values()):
        raise ValueError("Fine-tuning changed no layer (every divergence is 0): check its steps and learning rate.")
    ranked = sorted(divergence, key=lambda layer: (-divergence[layer], layer))
    if k < len(ranked) and divergence[ranked[k - 1]] == divergence[ranked[k]]:
        logger.warning(
            "Layers %s and %s tie in divergence (%g); the top %d is decided by layer order, not by the data.",
            ranked[k - 1], ranked[k], divergence[ranked[k]], k,
        )
    return ranked[:k]


def plot_divergence(divergence: dict[int, float], path: str | Path, *, top: Sequence[int]) -> list[Path]:
    """A bar chart of the divergence per layer (the ``top`` layers in red), as an HTML page at
    ``path`` and a PNG beside it with the same stem."""
    k, top = len(top), set(top)
    layers = list(divergence)
    colors = ["crimson" if layer in top else "steelblue" for layer in layers]
    bars = Line("divergence", layers, [divergence[layer] for layer in layers], color=colors, bars=True, legend=False)
    title = f"Parameter divergence per layer (top {k} in red)"
    return write_figure(path, [Panel("", [bars], xlabel="layer", ylabel="L2 divergence")], title=title)
