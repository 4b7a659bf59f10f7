"""Flow stacks with planted ground truth: every residual feature is translated, made by attention,
made by the MLP, or born, by construction.

Built from the same feature model as :func:`sae_lens_match.matching.make_stack` (directions,
threshold scales, encoder gains and biases growing with depth). At each layer ``L`` the
attention and MLP SAEs hold fresh random features; the residual SAE's features are noisy
copies (``noise``: how far the direction moves) of residual ``L-1`` features (translated),
of attention ``L`` or MLP ``L`` features, or fresh random directions (born), shuffled. Layer 0
has no previous residual: its translated share is born instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sae_lens import JumpReLUSAE

from sae_lens_match.flow.predecessors import FlowClass
from sae_lens_match.flow.stack import FlowStack
from sae_lens_match.matching.synthetic import drifted, PlantedFeatures, new_features, to_jumprelu_sae


@dataclass(frozen=True)
class PlantedFlow:
    """A :class:`FlowStack` and its truth.

    Attributes:
        stack: residual, attention and MLP JumpReLU SAEs of every layer.
        classes: ``classes[L][i]``: the planted class of residual feature ``i`` of layer ``L``.
        sources: ``sources[L]`` is ``[d_sae]`` int64: the index of the planted predecessor in
            its module (``-1`` for born features).
    """

    stack: FlowStack
    classes: list[list[FlowClass]]
    sources: list[torch.Tensor]

    def accuracy(self, classes: list[list[FlowClass]]) -> float:
        """Fraction of residual features (all layers) whose class is the planted one."""
        pairs = [(a, b) for got, want in zip(classes, self.classes) for a, b in zip(got, want)]
        return sum(a == b for a, b in pairs) / len(pairs)


def make_flow_stack(
    n_layers: int = 4,
    d_in: int = 64,
    d_sae: int = 256,
    *,
    fractions: tuple[float, float, float, float] = (0.6, 0.15, 0.15, 0.1),
    noise: float = 0.1,
    encoder_noise: float = 0.1,
    norm_growth: float = 1.05,
    seed: int = 0,
) -> PlantedFlow:
    """Planted residual, attention and MLP SAEs for ``n_layers`` layers.

    Args:
        fractions: shares of translated, attention, MLP and born features per layer.
        noise: direction drift of every copied feature (0: exact copies of the decoder direction).
        encoder_noise, norm_growth: as in :func:`sae_lens_match.matching.make_stack`.
        seed: the only source of randomness.
    """
    if len(fractions) != 4 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions are 4 shares (translated, attention, mlp, born) >= 0 summing to 1, got {fractions}.")
    g = torch.Generator().manual_seed(seed)
    residual: list[JumpReLUSAE] = []
    attention: list[JumpReLUSAE] = []
    mlp: list[JumpReLUSAE] = []
    classes: list[list[FlowClass]] = []
    sources: list[torch.Tensor] = []
    previous: PlantedFeatures | None = None
    for layer in range(n_layers):
        norm = norm_growth**layer
        side = {}
        for name, saes, hook in (("attention", attention, "attn_out"), ("mlp", mlp, "mlp_out")):
            side[name] = new_features(d_sae, d_in, 0.0, 0.0, g)
            sae = to_jumprelu_sae(side[name], layer, norm, encoder_noise, g)
            sae.cfg.metadata.hook_name = f"blocks.{layer}.hook_{hook}"
            saes.append(sae)
        counts = [int(round(f * d_sae)) for f in fractions[:3]]
        if previous is None:  # nothing to translate from
            counts[0] = 0
        counts.append(d_sae - sum(counts))
        parts, labels, picked = [], [], []
        for cls, origin, n in (("translated", previous, counts[0]), ("attention", side["attention"], counts[1]), ("mlp", side["mlp"], counts[2])):
            if n:
                chosen = torch.randperm(len(origin), generator=g)[:n]
                parts.append(drifted(origin.take(chosen), noise, g))
                labels += [cls] * n
                picked.append(chosen)
        parts.append(new_features(counts[3], d_in, 0.0, 0.0, g))
        labels += ["born"] * counts[3]
        picked.append(torch.full((counts[3],), -1, dtype=torch.long))
        order = torch.randperm(d_sae, generator=g)  # residual feature k is the k-th of the shuffled parts
        features = PlantedFeatures.cat(parts).take(order)
        residual.append(to_jumprelu_sae(features, layer, norm, encoder_noise, g))
        classes.append([labels[i] for i in order.tolist()])
        sources.append(torch.cat(picked)[order])
        previous = features
    return PlantedFlow(FlowStack(residual, attention, mlp), classes, sources)
