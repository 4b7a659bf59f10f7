"""JumpReLU SAEs for every layer of the world model, trained with SAELens's trainer.

Activations of all hooks are collected in one pass of the HookedTransformer over the
corpus (BOS positions left out: their norm is an outlier, as in Pythia), then each SAE
is fitted by SAELens's ``SAETrainer`` from an in-memory data provider, with
``normalize_activations="expected_average_only_in"`` so one set of hyperparameters
suits every depth; the trainer folds the scaling back into the weights, so saved SAEs
take raw activations. They are saved in SAELens's inference format (``cfg.json`` +
``sae_weights.safetensors``), with unit-norm decoder rows, and reload with
``SAE.load_from_disk``.

Thresholds must be positive for SAE Match's folding. SAELens keeps them >= 0 during
training and the decoder-norm fold multiplies them by positive norms; in practice they
end far above 0 (``world.json`` records each SAE's minimum) and the build fails if one
does not.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from sae_lens import SAE
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from sae_lens.saes.sae import SAEMetadata
from sae_lens.training.sae_trainer import SAETrainer
from transformer_lens import HookedTransformer

from sae_lens_match.batches import shuffled_minibatches

HOOK_KINDS = {"resid_post": "blocks.{layer}.hook_resid_post", "mlp_out": "blocks.{layer}.hook_mlp_out"}


def hook_name(kind: str, layer: int) -> str:
    """TransformerLens hook name of an SAE site, e.g. ``("resid_post", 2)``."""
    if kind not in HOOK_KINDS:
        raise ValueError(f"hook kind must be one of {sorted(HOOK_KINDS)}, got {kind!r}")
    return HOOK_KINDS[kind].format(layer=layer)


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


@torch.no_grad()
def collect_activations(
    model: HookedTransformer,
    rows: torch.Tensor,
    hooks: Sequence[str],
    batch_size: int = 32,
) -> dict[str, torch.Tensor]:
    """Activations at ``hooks`` for every non-BOS token of ``rows [n, ctx]``.

    Returns:
        hook name -> float32 tensor ``[n_tokens, d]`` (tokens in row-major order).
    """
    bos = model.tokenizer.bos_token_id if model.tokenizer is not None else None
    keep = rows != bos if bos is not None else torch.ones_like(rows, dtype=torch.bool)
    chunks: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        _, cache = model.run_with_cache(batch, names_filter=list(hooks))
        mask = keep[start : start + batch_size]
        for h in hooks:
            chunks[h].append(cache[h][mask].float())
    return {h: torch.cat(c) for h, c in chunks.items()}


def train_sae(
    acts: torch.Tensor,
    hook: str,
    cfg: SAETrainingConfig,
    seed: int,
    metadata: dict[str, object] | None = None,
) -> JumpReLUTrainingSAE:
    """Fit one JumpReLU SAE on activations ``acts [n_tokens, d_in]`` with ``SAETrainer``.

    Args:
        acts: training activations.
        hook: the TransformerLens hook they come from (stored as ``metadata.hook_name``).
        cfg: hyperparameters.
        seed: initialisation and batch-order seed.
        metadata: extra ``SAEMetadata`` fields (model name, context size, ...).
    """
    if len(acts) < cfg.batch_size:
        raise ValueError(f"{len(acts)} activations are fewer than one batch of {cfg.batch_size}")
    d_in = acts.shape[1]
    sae_cfg = JumpReLUTrainingSAEConfig(
        d_in=d_in,
        d_sae=cfg.expansion * d_in,
        l0_coefficient=cfg.l0_coefficient,
        jumprelu_init_threshold=cfg.init_threshold,
        jumprelu_bandwidth=cfg.bandwidth,
        normalize_activations="expected_average_only_in",
        metadata=SAEMetadata(hook_name=hook, **(metadata or {})),
    )
    torch.manual_seed(seed)
    sae = JumpReLUTrainingSAE(sae_cfg)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=cfg.steps * cfg.batch_size,
        train_batch_size_samples=cfg.batch_size,
        lr=cfg.lr,
        lr_end=cfg.lr / 10,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=min(50, cfg.steps // 10),
        dead_feature_window=max(1, cfg.steps // 4),
        n_batches_for_norm_estimate=min(100, cfg.steps),
        logger=LoggingConfig(log_to_wandb=False),
    )
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=shuffled_minibatches(acts, cfg.batch_size, seed))
    # SAETrainer draws its own tqdm bar per SAE; the world build shows one bar for all.
    with contextlib.redirect_stderr(io.StringIO()):
        return trainer.fit()


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


def save_sae(sae: JumpReLUTrainingSAE, directory: Path) -> None:
    """Save in SAELens's inference format (loads as ``JumpReLUSAE`` via ``load_from_disk``).

    Decoder rows are first scaled to unit norm with SAELens's output-preserving
    ``fold_W_dec_norm`` (encoder, ``b_enc`` and threshold absorb the norms), the Gemma
    Scope convention of the SAEs the SAE Match paper studies: each feature's scale then
    sits in its threshold, which grows with the hidden-state norm across depth.
    """
    sae.fold_W_dec_norm()
    sae.save_inference_model(directory)
