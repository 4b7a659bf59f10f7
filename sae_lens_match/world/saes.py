"""JumpReLU SAEs for every layer of the world model, trained with SAELens's trainer.

Activations of all hooks are collected in one pass over the corpus (BOS positions left
out: their norm is an outlier, as in Pythia), then each SAE is fitted by SAELens's
``SAETrainer`` through :func:`sae_lens_match.sources.training.train_sae`, with
``normalize_activations="expected_average_only_in"`` so one set of hyperparameters suits
every depth; the trainer folds the scaling back into the weights, so saved SAEs take raw
activations. They are saved in SAELens's inference format, with unit-norm decoder rows, and
reload with ``SAE.load_from_disk``.

Thresholds must be positive for SAE Match's folding. SAELens keeps them >= 0 during
training and the decoder-norm fold multiplies them by positive norms; in practice they
end far above 0 (``world.json`` records each SAE's minimum) and the build fails if one
does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from sae_lens import SAE
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAEConfig
from sae_lens.saes.sae import SAEMetadata

from sae_lens_match.sources.training import save_inference_sae, train_sae

HOOK_KINDS = ("resid_post", "mlp_out", "attn_out")


@dataclass(frozen=True)
class SAETrainingConfig:
    """Hyperparameters shared by all world SAEs (see ``WorldConfig`` for defaults)."""

    expansion: int
    steps: int
    batch_size: int
    lr: float
    l0_coefficient: float
    init_threshold: float
    bandwidth: float

    def sae_config(self, d_in: int, hook: str, metadata: dict[str, object]) -> JumpReLUTrainingSAEConfig:
        """SAELens's config of the SAE at ``hook``."""
        return JumpReLUTrainingSAEConfig(
            d_in=d_in,
            d_sae=self.expansion * d_in,
            l0_coefficient=self.l0_coefficient,
            jumprelu_init_threshold=self.init_threshold,
            jumprelu_bandwidth=self.bandwidth,
            normalize_activations="expected_average_only_in",
            metadata=SAEMetadata(hook_name=hook, **metadata),
        )

    def trainer_config(self) -> SAETrainerConfig:
        """SAELens's schedule: warm-up, then cosine decay to a tenth of ``lr``."""
        return SAETrainerConfig(
            total_training_samples=self.steps * self.batch_size,
            train_batch_size_samples=self.batch_size,
            lr=self.lr,
            lr_end=self.lr / 10,
            lr_scheduler_name="cosineannealing",
            lr_warm_up_steps=min(50, self.steps // 10),
            dead_feature_window=max(1, self.steps // 4),
            n_batches_for_norm_estimate=min(100, self.steps),
            logger=LoggingConfig(log_to_wandb=False),
        )


def train_world_sae(
    acts: torch.Tensor, hook: str, cfg: SAETrainingConfig, seed: int, metadata: dict[str, object], directory: Path
) -> SAE:
    """Fit one JumpReLU SAE on ``acts [n_tokens, d_in]`` from ``hook`` and save it to ``directory``.

    Decoder rows are scaled to unit norm before saving with SAELens's output-preserving
    ``fold_W_dec_norm`` (encoder, ``b_enc`` and threshold absorb the norms), the Gemma Scope
    convention of the SAEs the SAE Match paper studies: each feature's scale then sits in its
    threshold, which grows with the hidden-state norm across depth.

    Returns:
        The saved SAE as ``SAE.load_from_disk`` reads it.
    """
    if len(acts) < cfg.batch_size:
        raise ValueError(f"{len(acts)} activations are fewer than one batch of {cfg.batch_size}")
    trained = train_sae(cfg.sae_config(acts.shape[1], hook, metadata), cfg.trainer_config(), acts, seed=seed, quiet=True)
    trained.fold_W_dec_norm()
    return save_inference_sae(trained, directory)


@torch.no_grad()
def sae_stats(sae: SAE, acts: torch.Tensor, batch_size: int = 4096) -> dict[str, float]:
    """Reconstruction quality of ``sae`` on held-out activations ``acts [n, d_in]``.

    Returns:
        ``explained_variance`` (1 - sum|x - x_hat|^2 / sum|x - mean x|^2), ``l0`` (mean
        active features per token), ``dead_fraction`` (features never active on
        ``acts``) and ``min_threshold``.
    """
    err, l0, n = 0.0, 0.0, 0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    for start in range(0, len(acts), batch_size):
        x = acts[start : start + batch_size]
        feats = sae.encode(x)
        err += (sae.decode(feats) - x).pow(2).sum().item()
        active = feats > 0
        l0 += active.sum().item()
        fired |= active.any(0)
        n += len(x)
    total = (acts - acts.mean(0)).pow(2).sum().item()
    threshold = getattr(sae, "threshold", None)
    return {
        "explained_variance": 1.0 - err / total,
        "l0": l0 / n,
        "dead_fraction": 1.0 - fired.float().mean().item(),
        "min_threshold": float(threshold.min()) if threshold is not None else float("nan"),
    }
