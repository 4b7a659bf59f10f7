"""The ``"tied"`` architecture: a ReLU SAE whose encoder is the decoder's transpose
(``W_enc = W_dec.T``), as in the LFP paper. Its training twin takes
``sparsity_penalty="l1" | "sqrt"`` and ``unit_norm_decoder`` (rows re-normalised to unit norm
before every forward pass, as the LFP reference code does)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sae_lens import StandardSAE, StandardSAEConfig, StandardTrainingSAE, StandardTrainingSAEConfig
from torch import nn

from sae_lens_match.saes.penalties import PenaltyLoss


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
    unit_norm_decoder: bool = False

    @classmethod
    def architecture(cls) -> str:
        return "tied"


class TiedTrainingSAE(PenaltyLoss, _TiedWeights, StandardTrainingSAE):
    """Training twin of :class:`TiedSAE`; ``cfg.sparsity_penalty`` picks L1 or sqrt."""

    def __init__(self, cfg: TiedTrainingSAEConfig, use_error_term: bool = False):
        if cfg.sparsity_penalty not in ("l1", "sqrt"):
            raise ValueError(f"sparsity_penalty must be 'l1' or 'sqrt', got {cfg.sparsity_penalty!r}.")
        self.penalty_kind = cfg.sparsity_penalty
        super().__init__(cfg, use_error_term)

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.unit_norm_decoder:  # a projection after every optimiser step, in effect
            with torch.no_grad():
                self.W_dec.data = nn.functional.normalize(self.W_dec.data, dim=1)
        return super().encode_with_hidden_pre(x)

    def process_state_dict_for_saving_inference(self, state_dict: dict) -> None:
        super().process_state_dict_for_saving_inference(state_dict)
        if self.cfg.unit_norm_decoder:  # the last step's update, projected like the others
            state_dict["W_dec"] = nn.functional.normalize(state_dict["W_dec"], dim=1)
