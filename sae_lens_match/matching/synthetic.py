"""Synthetic SAE stacks with planted ground truth, to measure matching quality against truth.

Each layer holds a JumpReLU SAE whose features are (direction, threshold scale, encoder
gain, bias). Between consecutive layers a fraction of features persist (their parameters
drift a little), the rest vanish and new ones appear, and the feature order is shuffled.
As in real models, thresholds, pre-activations and biases grow with depth like the
hidden-state norm. Some features come as "twins": nearly the same direction with a
different threshold, the case where folding the threshold into the weights is what tells
them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.sae import SAEMetadata

from sae_lens_match.matching.matching import Matching


@dataclass(frozen=True)
class SyntheticStack:
    """SAEs for consecutive layers and the planted correspondence between them.

    Attributes:
        saes: one JumpReLU SAE per layer.
        truth: ``truth[l]`` is ``[d_sae]`` int64: the layer ``l+1`` feature that continues
            feature ``i`` of layer ``l``, or ``-1`` if feature ``i`` vanishes.
    """

    saes: list[JumpReLUSAE]
    truth: list[torch.Tensor]

    def accuracy(self, matching: Matching, layer: int) -> float:
        """Fraction of layer ``layer``'s persisting features that ``matching`` sends to truth."""
        truth = self.truth[layer]
        persists = truth >= 0
        return float((matching.permutation[persists] == truth[persists]).double().mean())


@dataclass
class PlantedFeatures:
    """The planted truth of ``n`` features, from which SAEs of any layer are made (also used by
    :mod:`sae_lens_match.flow.synthetic`)."""

    direction: torch.Tensor  # [n, d_in], unit rows
    threshold_scale: torch.Tensor  # [n]
    encoder_gain: torch.Tensor  # [n]
    bias: torch.Tensor  # [n], in units of the threshold at scale 1

    def __len__(self) -> int:
        return self.direction.shape[0]

    def take(self, idx: torch.Tensor) -> "PlantedFeatures":
        return PlantedFeatures(self.direction[idx], self.threshold_scale[idx], self.encoder_gain[idx], self.bias[idx])

    @staticmethod
    def cat(parts: list["PlantedFeatures"]) -> "PlantedFeatures":
        return PlantedFeatures(*(torch.cat([getattr(p, f) for p in parts]) for f in ("direction", "threshold_scale", "encoder_gain", "bias")))


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def new_features(n: int, d_in: int, twin_fraction: float, twin_spread: float, g: torch.Generator) -> PlantedFeatures:
    """``n`` fresh random features; the last ``twin_fraction`` are twins of earlier ones (close
    directions, same gain, thresholds 1.8-3x apart)."""
    direction = _unit(torch.randn(n, d_in, generator=g))
    threshold_scale = torch.exp(torch.empty(n).uniform_(-1.0, 1.0, generator=g))
    # Twins: copy an earlier feature's direction (slightly moved) and gain, with a different threshold.
    n_twins = int(n * twin_fraction)
    twin, parent = torch.arange(n - n_twins, n), torch.randint(0, max(n - n_twins, 1), (n_twins,), generator=g)
    direction[twin] = _unit(direction[parent] + twin_spread * _unit(torch.randn(n_twins, d_in, generator=g)))
    encoder_gain = torch.empty(n).uniform_(0.8, 1.2, generator=g)
    encoder_gain[twin] = encoder_gain[parent]
    ratio = torch.empty(n_twins).uniform_(1.8, 3.0, generator=g)
    flip = torch.rand(n_twins, generator=g) < 0.5
    threshold_scale[twin] = threshold_scale[parent] * torch.where(flip, ratio, 1 / ratio)
    bias = -torch.empty(n).uniform_(0.0, 0.5, generator=g)
    bias[twin] = bias[parent]
    return PlantedFeatures(direction, threshold_scale, encoder_gain, bias)


def drifted(f: PlantedFeatures, drift: float, g: torch.Generator) -> PlantedFeatures:
    """The same features one layer on: directions moved by ``drift``, scales jittered a little."""
    n, d_in = f.direction.shape
    return PlantedFeatures(
        _unit(f.direction + drift * _unit(torch.randn(n, d_in, generator=g))),
        f.threshold_scale * torch.exp(0.05 * torch.randn(n, generator=g)),
        f.encoder_gain * torch.exp(0.05 * torch.randn(n, generator=g)),
        f.bias + 0.02 * torch.randn(n, generator=g),
    )


def to_jumprelu_sae(f: PlantedFeatures, layer: int, norm: float, encoder_noise: float, g: torch.Generator) -> JumpReLUSAE:
    """A SAELens JumpReLU SAE with features ``f`` at ``blocks.{layer}.hook_resid_post``, its
    thresholds and biases scaled by the hidden-state ``norm``, its encoder rows noisy copies of
    the decoder's."""
    n, d_in = f.direction.shape
    cfg = JumpReLUSAEConfig(
        d_in=d_in,
        d_sae=n,
        dtype="float32",
        device="cpu",
        metadata=SAEMetadata(hook_name=f"blocks.{layer}.hook_resid_post", model_name="synthetic"),
    )
    sae = JumpReLUSAE(cfg)
    encoder = f.direction + encoder_noise * _unit(torch.randn(n, d_in, generator=g))
    with torch.no_grad():
        sae.W_dec.copy_(f.direction)
        # Pre-activations and thresholds scale with the hidden-state norm; decoders stay unit.
        sae.W_enc.copy_((encoder * f.encoder_gain[:, None]).T)
        sae.threshold.copy_(f.threshold_scale * norm)
        sae.b_enc.copy_(f.bias * f.threshold_scale * norm)
        sae.b_dec.copy_(0.1 * norm * torch.randn(d_in, generator=g))
    return sae


@dataclass(frozen=True)
class Hardness:
    """How hard a planted pair is for an assignment solver (see :func:`make_pair`).

    Attributes:
        unmatched: fraction of B's features that are new directions, without a counterpart in A
            (and as many of A's features vanish). These form a block of near-ties: their
            best matches are barely better than random ones.
        noise: how far each persisting feature's direction moves (as ``drift`` of :func:`make_stack`).
        threshold_scale: ratio of B's thresholds (and biases) to A's.
    """

    unmatched: float = 0.3
    noise: float = 0.3
    threshold_scale: float = 1.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.unmatched <= 1.0 or self.noise < 0 or self.threshold_scale <= 0:
            raise ValueError(f"Hardness needs unmatched in [0, 1], noise >= 0 and threshold_scale > 0, got {self}.")

    @property
    def name(self) -> str:
        return f"u{self.unmatched:g}_n{self.noise:g}_t{self.threshold_scale:g}"


def make_pair(d_in: int, d_sae: int, hardness: Hardness = Hardness(), *, seed: int = 0) -> SyntheticStack:
    """Two JumpReLU SAEs ``[d_sae]`` wide whose planted correspondence is as hard as ``hardness``
    says: :func:`make_stack` with two layers, ``persist = 1 - unmatched``, ``drift = noise``
    and ``norm_growth = threshold_scale``."""
    return make_stack(
        n_layers=2,
        d_in=d_in,
        d_sae=d_sae,
        persist=1.0 - hardness.unmatched,
        drift=hardness.noise,
        norm_growth=hardness.threshold_scale,
        seed=seed,
    )


def make_stack(
    n_layers: int = 6,
    d_in: int = 64,
    d_sae: int = 256,
    *,
    persist: float = 0.85,
    drift: float = 0.1,
    twin_fraction: float = 0.3,
    twin_spread: float = 0.08,
    encoder_noise: float = 0.1,
    norm_growth: float = 1.05,
    seed: int = 0,
) -> SyntheticStack:
    """Generate ``n_layers`` JumpReLU SAEs with planted feature correspondences.

    Args:
        n_layers, d_in, d_sae: stack depth and SAE shapes (all layers share them).
        persist: fraction of features that continue into the next layer.
        drift: how far a persisting feature's direction moves per layer (radians, about).
        twin_fraction: fraction of new features made as near-copies of another feature's
            direction with a 1.8-3x different threshold.
        twin_spread: how far a twin's direction is from its parent's.
        encoder_noise: how far encoder columns deviate from the decoder direction.
        norm_growth: per-layer growth of the hidden-state norm (scales thresholds, biases).
        seed: the only source of randomness; same seed, same stack.
    """
    if not 0.0 <= persist <= 1.0 or not 0.0 <= twin_fraction < 1.0:
        raise ValueError("persist must lie in [0, 1] and twin_fraction in [0, 1).")
    g = torch.Generator().manual_seed(seed)
    features = new_features(d_sae, d_in, twin_fraction, twin_spread, g)
    saes = [to_jumprelu_sae(features, 0, 1.0, encoder_noise, g)]
    truth = []
    for layer in range(1, n_layers):
        n_persist = int(round(persist * d_sae))
        survivors = torch.randperm(d_sae, generator=g)[:n_persist].sort().values
        nxt = PlantedFeatures.cat([drifted(features.take(survivors), drift, g), new_features(d_sae - n_persist, d_in, twin_fraction, twin_spread, g)])
        order = torch.randperm(d_sae, generator=g)  # new feature k is nxt[order[k]]
        position = torch.empty(d_sae, dtype=torch.long)
        position[order] = torch.arange(d_sae)
        t = torch.full((d_sae,), -1, dtype=torch.long)
        t[survivors] = position[:n_persist]
        truth.append(t)
        features = nxt.take(order)
        saes.append(to_jumprelu_sae(features, layer, norm_growth**layer, encoder_noise, g))
    return SyntheticStack(saes, truth)
