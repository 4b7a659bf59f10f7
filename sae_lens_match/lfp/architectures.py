"""SAE architectures for LFP dictionaries, registered with SAELens so they round-trip on disk.

- ``"tied"``: a ReLU SAE whose encoder is the decoder's transpose (``W_enc = W_dec.T``), as in
  the LFP paper. Its training twin takes ``sparsity_penalty="l1" | "sqrt"``.
- ``"sqrt"`` (training only): an untied ReLU SAE trained with ``sum_i sqrt(f_i ||W_dec_i||)``
  instead of L1 (the seed posts' improvement). It saves as a plain ``"standard"`` SAE, since
  only the training loss differs. SAELens's ``lp_norm=0.5`` is ``(sum sqrt|f|)^2``, a
  different penalty.

The square root is taken of ``f + eps`` (minus ``sqrt(eps)``) so its gradient stays finite
where a feature is exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from sae_lens import StandardSAE, StandardSAEConfig, StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY, register_sae_class, register_sae_training_class
from sae_lens.saes.sae import SAEConfig, TrainStepInput
from torch import nn

SparsityPenalty = Literal["l1", "sqrt"]


def sparsity_penalty(
    feature_acts: torch.Tensor, W_dec: torch.Tensor, kind: SparsityPenalty, eps: float = 1e-6
) -> torch.Tensor:
    """Per-example penalty ``[batch]`` on decoder-norm-weighted activations ``[batch, d_sae]``."""
    weighted = feature_acts * W_dec.norm(dim=1)
    if kind == "l1":
        return weighted.sum(-1)
    if kind == "sqrt":
        return ((weighted + eps).sqrt() - eps**0.5).sum(-1)
    raise ValueError(f"Unknown sparsity penalty {kind!r}; choose 'l1' or 'sqrt'.")


class _TiedWeights:
    """``W_enc`` is a view of ``W_dec.T``: one weight matrix, used both ways."""

    W_dec: nn.Parameter

    @property
    def W_enc(self) -> torch.Tensor:
        return self.W_dec.T

    def initialize_weights(self) -> None:
        cfg = self.cfg
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, dtype=self.dtype, device=self.device))
        w_dec = torch.empty(cfg.d_sae, cfg.d_in, dtype=self.dtype, device=self.device)
        nn.init.kaiming_uniform_(w_dec)
        init_norm = getattr(cfg, "decoder_init_norm", None)
        if init_norm is not None:
            w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True) * init_norm
        self.W_dec = nn.Parameter(w_dec)
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=self.dtype, device=self.device))

    def fold_W_dec_norm(self) -> None:
        raise NotImplementedError("A tied SAE cannot fold decoder norms: its encoder is the same matrix.")


@dataclass
class TiedSAEConfig(StandardSAEConfig):
    @classmethod
    def architecture(cls) -> str:
        return "tied"


class TiedSAE(_TiedWeights, StandardSAE):
    """Inference tied SAE: ``f = relu((x - b_dec) @ W_dec.T + b_enc)``, ``x_hat = f @ W_dec + b_dec``."""


@dataclass
class TiedTrainingSAEConfig(StandardTrainingSAEConfig):
    sparsity_penalty: str = "l1"
    sqrt_eps: float = 1e-6

    @classmethod
    def architecture(cls) -> str:
        return "tied"


class _PenaltyLoss:
    """Replaces the standard L1 term by :func:`sparsity_penalty` of the configured kind."""

    penalty_kind: SparsityPenalty

    def calculate_aux_loss(
        self, step_input: TrainStepInput, feature_acts: torch.Tensor, hidden_pre: torch.Tensor, sae_out: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        penalty = sparsity_penalty(feature_acts, self.W_dec, self.penalty_kind, self.cfg.sqrt_eps)
        return {f"{self.penalty_kind}_loss": (step_input.coefficients["l1"] * penalty).mean()}


class TiedTrainingSAE(_PenaltyLoss, _TiedWeights, StandardTrainingSAE):
    """Training twin of :class:`TiedSAE`; ``cfg.sparsity_penalty`` picks L1 or sqrt."""

    def __init__(self, cfg: TiedTrainingSAEConfig, use_error_term: bool = False):
        if cfg.sparsity_penalty not in ("l1", "sqrt"):
            raise ValueError(f"sparsity_penalty must be 'l1' or 'sqrt', got {cfg.sparsity_penalty!r}.")
        self.penalty_kind = cfg.sparsity_penalty
        super().__init__(cfg, use_error_term)


@dataclass
class SqrtTrainingSAEConfig(StandardTrainingSAEConfig):
    sqrt_eps: float = 1e-6

    @classmethod
    def architecture(cls) -> str:
        return "sqrt"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return StandardSAEConfig  # only the training loss differs from a standard SAE


class SqrtTrainingSAE(_PenaltyLoss, StandardTrainingSAE):
    """Untied ReLU SAE trained with the square-root sparsity penalty."""

    penalty_kind: SparsityPenalty = "sqrt"


def _register(registry: dict[str, Any], register, name: str, cls: type, cfg_cls: type) -> None:
    # SAELens raises on a second registration of a name: register once per process.
    if registry.get(name) != (cls, cfg_cls):
        register(name, cls, cfg_cls)


_register(SAE_CLASS_REGISTRY, register_sae_class, "tied", TiedSAE, TiedSAEConfig)
_register(SAE_TRAINING_CLASS_REGISTRY, register_sae_training_class, "tied", TiedTrainingSAE, TiedTrainingSAEConfig)
_register(SAE_TRAINING_CLASS_REGISTRY, register_sae_training_class, "sqrt", SqrtTrainingSAE, SqrtTrainingSAEConfig)
