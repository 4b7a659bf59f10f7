"""The ``"sqrt"`` architecture (training only): an untied ReLU SAE trained with
``sum_i sqrt(f_i ||W_dec_i||)`` instead of L1 (the seed posts' improvement). It saves as a
plain ``"standard"`` SAE, since only the training loss differs."""

from __future__ import annotations

from dataclasses import dataclass

from sae_lens import StandardSAEConfig, StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.sae import SAEConfig

from sae_lens_match.saes.penalties import PenaltyLoss, SparsityPenalty


@dataclass
class SqrtTrainingSAEConfig(StandardTrainingSAEConfig):
    sqrt_eps: float = 1e-6

    @classmethod
    def architecture(cls) -> str:
        return "sqrt"

    def get_inference_config_class(self) -> type[SAEConfig]:
        return StandardSAEConfig  # only the training loss differs from a standard SAE


class SqrtTrainingSAE(PenaltyLoss, StandardTrainingSAE):
    """Untied ReLU SAE trained with the square-root sparsity penalty."""

    penalty_kind: SparsityPenalty = "sqrt"
