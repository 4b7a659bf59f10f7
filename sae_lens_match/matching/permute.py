"""Reordering and selecting an SAE's features."""

from __future__ import annotations

import copy

import torch
from sae_lens import SAE

from sae_lens_match.matching.matching import Matching
from sae_lens_match.sources.saes import require_sae

# Which axis of a parameter indexes features. Parameters not named here are per-feature
# when they are 1-D of length d_sae (b_enc, threshold, b_gate, b_mag, r_mag, ...).
FEATURE_AXIS: dict[str, int | None] = {"W_enc": 1, "W_dec": 0, "b_dec": None}


def permute(sae: SAE, permutation: torch.Tensor) -> SAE:
    """Return a copy of ``sae`` whose feature ``k`` is feature ``permutation[k]`` of ``sae``.

    Every per-feature parameter moves (encoder columns, decoder rows, biases, thresholds),
    so the copy's reconstruction equals the original's and its feature activations are
    ``original_acts[..., permutation]``.

    Args:
        sae: any SAELens SAE.
        permutation: ``[d_sae]`` integer tensor holding each of ``0..d_sae-1`` once. A
            :class:`~sae_lens_match.Matching` with unmatched (``-1``) entries is not one.
    """
    require_sae(sae, "permute's sae")
    if isinstance(permutation, Matching):
        raise TypeError(
            "permute takes a permutation tensor, not a Matching; pass matching.permutation "
            "(a full permutation only when every feature is matched), or use select_features."
        )
    d_sae = sae.cfg.d_sae
    permutation = torch.as_tensor(permutation)
    if permutation.shape != (d_sae,):
        raise ValueError(f"permutation must have shape [{d_sae}], got {tuple(permutation.shape)}.")
    return select_features(sae, permutation)


def select_features(sae: SAE, indices: torch.Tensor) -> SAE:
    """Return a copy of ``sae`` keeping only features ``indices``, in that order.

    Args:
        sae: any SAELens SAE.
        indices: ``[k]`` integer tensor of distinct feature indices in ``0..d_sae-1``.

    Returns:
        An SAE of the same class with ``d_sae = k``: feature ``j`` is feature ``indices[j]``.
    """
    require_sae(sae, "select_features' sae")
    if isinstance(indices, Matching):
        raise TypeError("select_features takes a tensor of feature indices, not a Matching.")
    d_sae = sae.cfg.d_sae
    indices = torch.as_tensor(indices)
    if indices.ndim != 1 or indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise ValueError(f"indices must be a 1-D integer tensor, got {indices.dtype} {tuple(indices.shape)}.")
    if len(indices) == 0 or indices.unique().numel() != len(indices) or indices.min() < 0 or indices.max() >= d_sae:
        raise ValueError(
            f"indices must be distinct feature indices in [0, {d_sae}) "
            "(a rectangular or thresholded matching has -1 entries and is no permutation)."
        )
    selected = copy.deepcopy(sae)
    with torch.no_grad():
        for name, param in selected.named_parameters():
            axis = _feature_axis(name, param, d_sae)
            if axis is not None:
                param.data = param.data.index_select(axis, indices.to(param.device)).contiguous()
    selected.cfg.d_sae = len(indices)
    return selected


def _feature_axis(name: str, param: torch.Tensor, d_sae: int) -> int | None:
    if name in FEATURE_AXIS:
        return FEATURE_AXIS[name]
    if param.ndim == 1 and param.shape[0] == d_sae:
        return 0
    if d_sae in param.shape:
        raise ValueError(
            f"Don't know which axis of parameter {name!r} {tuple(param.shape)} indexes "
            "features; add it to sae_lens_match.matching.permute.FEATURE_AXIS."
        )
    return None
