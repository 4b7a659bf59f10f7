"""Training the LFP dictionaries with SAELens's own trainer.

Two SAEs per chosen layer, of widths ``n`` and ``2n`` (``n`` = the hooked width). Paper
defaults: tied encoder/decoder, L1 coefficient 1e-3, lr 1e-3, batch 32, 75 000 examples.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal

import torch
from sae_lens import SAE, StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.sae import SAEMetadata, TrainingSAE
from sae_lens.training.sae_trainer import SAETrainer

from sae_lens_match.batches import shuffled_minibatches
from sae_lens_match.lfp.architectures import SqrtTrainingSAE, SqrtTrainingSAEConfig, TiedTrainingSAE, TiedTrainingSAEConfig
from sae_lens_match.loading import default_device
from sae_lens_match.permute import select_features

Architecture = Literal["tied", "standard", "sqrt"]
_TRAINING_CLASSES = {
    "tied": (TiedTrainingSAE, TiedTrainingSAEConfig),
    "standard": (StandardTrainingSAE, StandardTrainingSAEConfig),
    "sqrt": (SqrtTrainingSAE, SqrtTrainingSAEConfig),
}


def train_dictionary(
    activations: torch.Tensor,
    d_sae: int,
    *,
    hook_name: str,
    architecture: Architecture = "tied",
    sparsity_penalty: Literal["l1", "sqrt"] = "l1",
    l1_coefficient: float = 1e-3,
    lr: float = 1e-3,
    batch_size: int = 32,
    n_examples: int = 75_000,
    seed: int = 0,
    device: str | None = None,
    out_dir: str | Path | None = None,
) -> SAE:
    """Train one SAE on ``activations`` ``[n, d_in]`` with SAELens's ``SAETrainer``.

    Args:
        architecture: ``"tied"`` (paper), ``"standard"`` or ``"sqrt"`` (untied, sqrt penalty).
        sparsity_penalty: for ``"tied"`` only: ``"l1"`` (paper) or ``"sqrt"``.
        n_examples: training examples seen in total (epochs over ``activations`` as needed).
        out_dir: if given, the inference SAE is saved there (``SAE.load_from_disk`` reads it).

    Returns:
        The trained inference SAE (``TiedSAE`` or ``StandardSAE``).
    """
    if activations.ndim != 2 or len(activations) < batch_size:
        raise ValueError(f"activations must be [n >= batch_size={batch_size}, d_in], got {tuple(activations.shape)}.")
    if not torch.isfinite(activations).all():
        raise ValueError("activations contain NaN or inf.")
    if architecture not in _TRAINING_CLASSES:
        raise ValueError(f"Unknown architecture {architecture!r}; choose from {sorted(_TRAINING_CLASSES)}.")
    device = device or default_device()
    torch.manual_seed(seed)
    sae_cls, cfg_cls = _TRAINING_CLASSES[architecture]
    extra = {"sparsity_penalty": sparsity_penalty} if architecture == "tied" else {}
    cfg = cfg_cls(
        d_in=activations.shape[1],
        d_sae=d_sae,
        l1_coefficient=l1_coefficient,
        device=device,
        metadata=SAEMetadata(hook_name=hook_name),
        **extra,
    )
    sae: TrainingSAE = sae_cls(cfg)
    trainer = SAETrainer(
        cfg=SAETrainerConfig(
            total_training_samples=n_examples, train_batch_size_samples=batch_size, lr=lr, lr_end=lr, device=device
        ),
        sae=sae,
        data_provider=(b.to(device) for b in shuffled_minibatches(activations.float(), batch_size, seed)),
    )
    trainer.fit()
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_inference_model(tmp)
        inference = SAE.load_from_disk(tmp, device=device)
        if out_dir is not None:
            _replace_dir(Path(tmp), Path(out_dir))
    return inference


def _replace_dir(src: Path, dst: Path) -> None:
    """Copy ``src`` next to ``dst`` and swap it in, so ``dst`` is never half-written."""
    staging = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src, staging)
    shutil.rmtree(dst, ignore_errors=True)
    staging.rename(dst)


def train_dictionary_pair(activations: torch.Tensor, *, hook_name: str, **options) -> tuple[SAE, SAE]:
    """The paper's two dictionaries for one layer: widths ``n`` and ``2n``, ``n = d_in``.

    ``options`` go to :func:`train_dictionary`; an ``out_dir`` gets ``n/`` and ``2n/`` inside.
    """
    n = activations.shape[1]
    out_dir = options.pop("out_dir", None)
    seed = options.pop("seed", 0)
    small = train_dictionary(activations, n, hook_name=hook_name, seed=seed, out_dir=out_dir and Path(out_dir) / "n", **options)
    # A different seed for the large one: with the same seed its first n features would
    # start where the small dictionary's do, and the overlap would measure the shared init.
    large = train_dictionary(activations, 2 * n, hook_name=hook_name, seed=seed + 1, out_dir=out_dir and Path(out_dir) / "2n", **options)
    return small, large


@torch.no_grad()
def prune_features(sae: SAE, activations: torch.Tensor, *, drop_lowest: float = 0.0, batch_size: int = 4096) -> SAE:
    """Drop dead features (never active on ``activations``) and optionally the lowest-activating ones.

    Args:
        activations: ``[n, d_in]`` data to measure feature activity on.
        drop_lowest: fraction in [0, 1) of the remaining features to drop, by mean activation.

    Returns:
        A smaller SAE of the same class (see :func:`sae_lens_match.select_features`).
    """
    if not 0.0 <= drop_lowest < 1.0:
        raise ValueError(f"drop_lowest must lie in [0, 1), got {drop_lowest}.")
    total = torch.zeros(sae.cfg.d_sae, dtype=torch.float64)
    for start in range(0, len(activations), batch_size):
        total += sae.encode(activations[start : start + batch_size].to(sae.W_dec.device)).double().sum(0).cpu()
    alive = (total > 0).nonzero().squeeze(1)
    if len(alive) == 0:
        raise ValueError("Every feature is dead on these activations; nothing to keep.")
    keep = alive[total[alive].argsort(descending=True)][: max(1, round(len(alive) * (1 - drop_lowest)))]
    return select_features(sae, keep.sort().values)
