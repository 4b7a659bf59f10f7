"""Scores between the features of two SAEs, top-k per feature, in bounded blocks.

The dense ``[d_sae_target, d_sae_source]`` matrix is never held: rows of the target are
scored against all source features a block at a time, on the SAEs' device, and only the
top ``k`` of each row are kept. Ties go to the lower source index, so results do not depend
on how ``topk`` orders equal values on a device.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from sae_lens import SAE

from sae_lens_match.assignment.core import exact_costs
from sae_lens_match.assignment.scores import sq_norms
from sae_lens_match.flow.config import FlowConfig
from sae_lens_match.matching.parameters import feature_rows


@dataclass(frozen=True)
class Vectors:
    """What a similarity compares: one row per feature, ``[d_sae, D]`` float32 on the SAE's device,
    with the squared row norms ``[d_sae]`` float64 for ``"mse"``."""

    rows: torch.Tensor
    sq: torch.Tensor | None = None


@dataclass(frozen=True)
class TopK:
    """The best ``k`` source features of each target feature.

    Attributes:
        indices: ``[n_target, k]`` int64 (CPU), best first; ``-1`` where the source has fewer
            than ``k`` features.
        scores: ``[n_target, k]`` float64 (CPU), ``nan`` where ``indices`` is ``-1``.
    """

    indices: torch.Tensor
    scores: torch.Tensor


def feature_vectors(sae: SAE, config: FlowConfig) -> Vectors:
    """The rows ``config.similarity`` compares: unit decoder rows (cosine) or SAE Match's
    folded, weighted parameter rows (mse)."""
    with torch.no_grad():
        if config.similarity == "cosine":
            return Vectors(torch.nn.functional.normalize(sae.W_dec.detach().float(), dim=1))
        rows = feature_rows(sae, config.match)
        return Vectors(rows, sq_norms(rows))


def top_k(target: Vectors, source: Vectors, config: FlowConfig, k: int | None = None) -> TopK:
    """Each target row's ``k`` (default ``config.top_k``) highest-scoring source rows.

    Scores: the dot product of unit rows (cosine), or minus the per-pair MSE of parameter rows,
    recomputed exactly in float64 for the pairs kept (the MSE of :func:`sae_lens_match.parameter_mse`).
    """
    k = config.top_k if k is None else k
    n_t, n_s = target.rows.shape[0], source.rows.shape[0]
    kk = min(k, n_s)
    src = source.rows.to(target.rows.device)
    per_block = max(1, config.block_elements // max(n_s, 1))
    indices = torch.full((n_t, k), -1, dtype=torch.long)
    scores = torch.full((n_t, k), float("nan"), dtype=torch.float64)
    if kk == 0:
        return TopK(indices, scores)
    sq_s = None if source.sq is None else source.sq.to(src.device).float()
    with torch.no_grad():
        for start in range(0, n_t, per_block):
            stop = min(start + per_block, n_t)
            block = target.rows[start:stop] @ src.T
            if sq_s is not None:  # -|a - b|^2 up to the row's own constant: enough to rank
                block.mul_(2).sub_(sq_s[None, :])
            idx = _top_indices(block, kk)
            indices[start:stop, :kk] = idx.cpu()
            if sq_s is None:
                scores[start:stop, :kk] = block.gather(1, idx).double().cpu()
    if target.sq is not None:
        rows = torch.arange(n_t).repeat_interleave(kk)
        cols = indices[:, :kk].reshape(-1)
        dim = target.rows.shape[1]
        scores[:, :kk] = -(exact_costs(target.rows, source.rows, rows, cols) / dim).reshape(n_t, kk)
    return TopK(indices, scores)


def _top_indices(block: torch.Tensor, k: int) -> torch.Tensor:
    """``[rows, k]`` column indices of each row's ``k`` largest values, best first, ties to
    the lower column."""
    values, idx = block.topk(k, dim=1)
    # Reorder within the kept set: stable sort of index-sorted columns by value.
    idx, order = idx.sort(dim=1)
    values = values.gather(1, order)
    order = values.sort(dim=1, descending=True, stable=True).indices
    idx = idx.gather(1, order)
    # A row whose k-th value is shared with a column left out: redo it with a stable full sort.
    kth = block.gather(1, idx[:, -1:])
    tied = ((block >= kth).sum(1) > k).nonzero().squeeze(1)
    for r in tied.tolist():
        idx[r] = block[r].sort(descending=True, stable=True).indices[:k]
    return idx


def rotated(sae: SAE, seed: int, whiten: bool = False) -> SAE:
    """A copy of ``sae`` whose features are moved by a Haar-random rotation ``Q [d_in, d_in]``.

    ``whiten=False``: the input space is rotated (``W_enc <- Q^T W_enc``, ``W_dec <- W_dec Q``,
    ``b_dec <- b_dec Q``): the copy is the same SAE in other coordinates; every norm, threshold,
    bias and the geometry among its own features is kept, only its alignment with any other
    SAE is destroyed.

    ``whiten=True``: decoder rows are rotated in their own whitened frame,
    ``W_dec <- W_dec C^-1/2 Q C^1/2`` with ``C = W_dec^T W_dec / d_sae`` (and the encoder columns
    likewise in theirs), which keeps the rows' second-moment matrix ``C`` exactly. Real SAEs
    of one model concentrate in the same few directions (the stream's anisotropy), so an
    unrelated dictionary in the same space scores higher than an isotropically rotated one;
    this null keeps that concentration and removes only the specific alignment. It is not the
    same SAE in other coordinates (it only serves as a set of feature rows).
    """
    d_in = sae.cfg.d_in
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d_in, d_in, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None, :]  # Haar measure
    out = copy.deepcopy(sae)
    with torch.no_grad():
        if not whiten:
            q = q.to(sae.W_dec.dtype).to(sae.W_dec.device)
            out.W_dec.copy_(sae.W_dec @ q)
            out.W_enc.copy_(q.T @ sae.W_enc)
            out.b_dec.copy_(sae.b_dec @ q)
            return out
        out.W_dec.copy_(_whitened_rotation(sae.W_dec, q))
        out.W_enc.copy_(_whitened_rotation(sae.W_enc.T, q).T)
    return out


def _whitened_rotation(rows: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``rows [n, d] @ C^-1/2 Q C^1/2`` with ``C = rows^T rows / n`` (eigenvalues floored at
    1e-6 of the largest, so a rank-deficient ``C`` stays invertible)."""
    x = rows.detach().double()
    values, vectors = torch.linalg.eigh(x.T @ x / x.shape[0])
    values = values.clamp_min(values.max() * 1e-6)
    half = (vectors * values.sqrt()) @ vectors.T
    inverse_half = (vectors / values.sqrt()) @ vectors.T
    return (x @ inverse_half @ q.to(x.device) @ half).to(rows.dtype)
