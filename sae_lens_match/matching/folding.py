"""Folding activation thresholds into SAE weights (SAE Match, Eq. 4).

A JumpReLU feature fires when ``z_i = x @ W_enc[:, i] + b_enc[i] > theta_i`` and then
writes ``z_i * W_dec[i]``. Dividing the encoder side by ``theta_i`` and multiplying the
decoder row by it gives the same output with threshold 1, and moves the per-feature
scale (which grows with the hidden-state norm across depth) into what the feature writes.

Rules per architecture live in :data:`FOLD_RULES` (looked up along the SAE class's MRO),
so plugin architectures can register their own with :func:`register_fold_rule`.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from sae_lens import SAE, GatedSAE, JumpReLUSAE, StandardSAE, TopKSAE
from sae_lens.saes.gated_sae import GatedTrainingSAE
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE
from sae_lens.saes.standard_sae import StandardTrainingSAE
from sae_lens.saes.topk_sae import TopKTrainingSAE

from sae_lens_match.matching.config import NonPositivePolicy
from sae_lens_match.registry import Registry
from sae_lens_match.sources.saes import require_sae

FoldRule = Callable[[SAE, NonPositivePolicy], None]
"""Folds an SAE in place (it is always given a private copy); must preserve its output."""

FOLD_RULES: Registry[type, FoldRule] = Registry("fold rule")


def register_fold_rule(sae_class: type, rule: FoldRule) -> None:
    """Register how to fold SAEs of ``sae_class`` (and its subclasses without a rule of their own)."""
    FOLD_RULES.register(sae_class, rule)


def check_finite(sae: SAE, name: str = "SAE") -> None:
    """Raise ``ValueError`` naming the first parameter of ``sae`` that holds NaN or inf."""
    for param_name, param in sae.named_parameters():
        bad = ~torch.isfinite(param.detach())
        if bad.any():
            raise ValueError(
                f"{name} parameter {param_name!r} has {int(bad.sum())} NaN/inf entries "
                f"(shape {tuple(param.shape)}); refusing to fold or match it."
            )


def fold(sae: SAE, *, nonpositive_threshold: NonPositivePolicy = "error") -> SAE:
    """Return a folded copy of ``sae``; ``sae`` itself is not modified.

    The copy is of the same class and gives the same ``encode``/``decode``/forward
    reconstruction as ``sae`` (up to float rounding). Rules:

    - JumpReLU: ``W_enc[:, i] /= theta_i``, ``b_enc[i] /= theta_i``, ``W_dec[i] *= theta_i``,
      ``theta_i = 1``.
    - TopK with ``rescale_acts_by_decoder_norm``: the decoder norms are folded into the
      encoder (SAELens's ``fold_W_dec_norm``), because the activations that reach the
      decoder are already the norm-rescaled ones.
    - Standard (ReLU), Gated and plain TopK: their gate sits at 0, so there is no threshold
      scale to fold; the copy is returned unchanged so that matching works across
      architectures.

    Args:
        sae: any SAELens SAE with a registered rule.
        nonpositive_threshold: what to do with JumpReLU features whose threshold is <= 0
            (division is undefined): ``"error"`` raises ``ValueError``; ``"keep"`` leaves those
            features unfolded (their threshold stays as it is), which is still exact.

    Raises:
        ValueError: NaN/inf parameters, thresholds <= 0 under ``"error"``, or an SAE class
            without a fold rule.
    """
    require_sae(sae, "fold's sae")
    if nonpositive_threshold not in ("error", "keep"):
        raise ValueError(f"nonpositive_threshold must be 'error' or 'keep', got {nonpositive_threshold!r}.")
    check_finite(sae)
    rule = next((FOLD_RULES.find(c) for c in type(sae).__mro__ if c in FOLD_RULES), None)
    if rule is None:
        raise ValueError(
            f"fold() has no rule for {type(sae).__name__} (architecture "
            f"{sae.cfg.architecture()!r}); registered: {FOLD_RULES.names()}. "
            "Register one with sae_lens_match.register_fold_rule, or match with fold=False."
        )
    folded = copy.deepcopy(sae)
    with torch.no_grad():
        rule(folded, nonpositive_threshold)
    _check_folded(folded)
    return folded


def _check_folded(folded: SAE) -> None:
    """Refuse a fold that overflowed: a threshold so close to 0 that dividing by it leaves the dtype's range."""
    bad = torch.zeros(folded.cfg.d_sae, dtype=torch.bool, device=folded.W_dec.device)
    for name, param in folded.named_parameters():
        if name == "W_enc":
            bad |= ~torch.isfinite(param).all(dim=0)
        elif name == "W_dec":
            bad |= ~torch.isfinite(param).all(dim=1)
        elif param.shape == (folded.cfg.d_sae,):
            bad |= ~torch.isfinite(param)
    if bad.any():
        features = bad.nonzero().squeeze(1).tolist()
        raise ValueError(
            f"Folding overflows {folded.W_dec.dtype} for {len(features)} feature(s) {features[:8]}: their "
            "thresholds are too close to 0 to divide by in this dtype. Fold a float64 copy "
            "(sae.to(torch.float64)), or match with fold=False."
        )


def _fold_jumprelu(sae: SAE, nonpositive_threshold: NonPositivePolicy) -> None:
    theta = sae.threshold.data
    nonpositive = theta <= 0
    if nonpositive.any() and nonpositive_threshold == "error":
        first = int(nonpositive.nonzero()[0])
        raise ValueError(
            f"{int(nonpositive.sum())} JumpReLU features have threshold <= 0 (e.g. feature "
            f"{first}: {float(theta[first])}); a threshold cannot be folded by division. "
            "Pass nonpositive_threshold='keep' to leave those features unfolded."
        )
    scale = torch.where(nonpositive, torch.ones_like(theta), theta)
    sae.W_enc.data /= scale
    sae.b_enc.data /= scale
    sae.W_dec.data *= scale[:, None]
    sae.threshold.data = torch.where(nonpositive, theta, torch.ones_like(theta))


def _fold_topk(sae: SAE, nonpositive_threshold: NonPositivePolicy) -> None:
    if sae.cfg.rescale_acts_by_decoder_norm:
        sae.fold_W_dec_norm()


def _nothing_to_fold(sae: SAE, nonpositive_threshold: NonPositivePolicy) -> None:
    pass


for _cls in (JumpReLUSAE, JumpReLUTrainingSAE):
    register_fold_rule(_cls, _fold_jumprelu)
for _cls in (TopKSAE, TopKTrainingSAE):
    register_fold_rule(_cls, _fold_topk)
for _cls in (StandardSAE, StandardTrainingSAE, GatedSAE, GatedTrainingSAE):
    register_fold_rule(_cls, _nothing_to_fold)
