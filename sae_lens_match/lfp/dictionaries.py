"""The LFP dictionaries (step 3): two SAEs per chosen layer, of widths ``n`` and ``2n``.

``n`` is the width of the hooked activations. Paper defaults: tied encoder/decoder, L1
coefficient 1e-3, lr 1e-3, batch 32, 75 000 training tokens.

The objective, by default, is the one behind the paper's numbers (the reference code's):
MSE *averaged* over ``d_in``, a plain L1 on the codes, tied decoder rows kept at unit norm,
no decoder bias subtracted from the input. SAELens sums the MSE over ``d_in`` and weighs the
L1 by decoder norms, so the same "L1 1e-3" is ``d_in`` times weaker there;
``objective="reference"`` trains with SAELens's trainer at ``l1_coefficient * d_in`` (the same
minimiser as the reference's loss, up to the factor ``d_in``) with unit-norm rows, so its
decoder-norm weight is 1. ``objective="saelens"`` uses SAELens's conventions unchanged. Trained by
:mod:`sae_lens_match.sources.training` (SAELens's trainers), either on collected activations
(:func:`train_dictionary`) or on the language model directly (:func:`train_dictionary_on_model`).
The architectures (``"tied"``, ``"sqrt"``) live in :mod:`sae_lens_match.saes`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from sae_lens import SAE, StandardTrainingSAEConfig
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.sae import SAEMetadata, TrainingSAEConfig

from sae_lens_match.matching.permute import select_features
from sae_lens_match.saes import SqrtTrainingSAEConfig, TiedTrainingSAEConfig
from sae_lens_match.sources.hooks import hook_width
from sae_lens_match.sources.saes import default_device
from sae_lens_match.sources.training import save_inference_sae, train_sae, train_sae_on_model

if TYPE_CHECKING:
    from datasets import Dataset

Architecture = Literal["tied", "standard", "sqrt"]
Objective = Literal["reference", "saelens"]
_CONFIGS: dict[str, type[TrainingSAEConfig]] = {
    "tied": TiedTrainingSAEConfig,
    "standard": StandardTrainingSAEConfig,
    "sqrt": SqrtTrainingSAEConfig,
}


@dataclass(frozen=True)
class DictionaryConfig:
    """How an LFP dictionary is trained (the paper's defaults).

    Attributes:
        architecture: ``"tied"`` (paper), ``"standard"`` or ``"sqrt"`` (untied, sqrt penalty).
        sparsity_penalty: for ``"tied"`` only: ``"l1"`` (paper) or ``"sqrt"``.
        l1_coefficient: weight of the sparsity penalty, in the units of ``objective``.
        objective: ``"reference"`` (the LFP code's loss normalisation, see the module
            docstring) or ``"saelens"`` (SAELens's summed MSE and decoder-norm-weighted L1).
        lr: constant learning rate.
        batch_size: tokens per step.
        training_tokens: tokens seen in total (epochs over the data as needed).
        seed: initialisation and batch order; the ``2n`` dictionary of a pair uses ``seed + 1``.
        device: where it trains (default: CUDA when present, or the model's device).
    """

    architecture: Architecture = "tied"
    sparsity_penalty: Literal["l1", "sqrt"] = "l1"
    l1_coefficient: float = 1e-3
    objective: Objective = "reference"
    lr: float = 1e-3
    batch_size: int = 32
    training_tokens: int = 75_000
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        if self.architecture not in _CONFIGS:
            raise ValueError(f"Unknown architecture {self.architecture!r}; choose from {sorted(_CONFIGS)}.")
        if self.objective not in ("reference", "saelens"):
            raise ValueError(f"objective must be 'reference' or 'saelens', got {self.objective!r}.")
        if self.training_tokens < self.batch_size:
            raise ValueError(f"training_tokens={self.training_tokens} is less than one batch of {self.batch_size}.")
        if not self.lr > 0 or not self.l1_coefficient >= 0 or self.batch_size < 1:
            raise ValueError(f"Need lr > 0, l1_coefficient >= 0 and batch_size >= 1, got {self.lr}, {self.l1_coefficient}, {self.batch_size}.")

    def sae_config(self, d_in: int, d_sae: int, hook_name: str, device: str, model_name: str | None = None) -> TrainingSAEConfig:
        """The SAELens training config of one dictionary."""
        extra: dict[str, Any] = {"sparsity_penalty": self.sparsity_penalty} if self.architecture == "tied" else {}
        coefficient = self.l1_coefficient
        if self.objective == "reference":
            coefficient *= d_in  # SAELens sums the MSE over d_in; the reference averages it
            if self.architecture == "tied":
                extra.update(unit_norm_decoder=True, apply_b_dec_to_input=False)
        return _CONFIGS[self.architecture](
            d_in=d_in, d_sae=d_sae, l1_coefficient=coefficient, device=device,
            metadata=SAEMetadata(hook_name=hook_name, model_name=model_name), **extra,
        )

    def trainer_config(self, device: str) -> SAETrainerConfig:
        """SAELens's schedule: a constant learning rate over ``training_tokens``."""
        return SAETrainerConfig(
            total_training_samples=self.training_tokens, train_batch_size_samples=self.batch_size,
            lr=self.lr, lr_end=self.lr, device=device,
        )


def train_dictionary(
    activations: torch.Tensor,
    d_sae: int,
    *,
    hook_name: str,
    config: DictionaryConfig | None = None,
    model_name: str | None = None,
    out_dir: str | Path | None = None,
) -> SAE:
    """Train one dictionary on ``activations [n, d_in]`` (SAELens's ``SAETrainer``).

    Args:
        hook_name, model_name: where the activations come from (the SAE's SAELens metadata).
        out_dir: if given, the inference SAE is saved there (``SAE.load_from_disk`` reads it).

    Returns:
        The trained inference SAE (``TiedSAE`` or ``StandardSAE``).
    """
    config = config or DictionaryConfig()
    device = config.device or default_device()
    sae_cfg = config.sae_config(activations.shape[1], d_sae, hook_name, device, model_name)
    trained = train_sae(sae_cfg, config.trainer_config(device), activations, seed=config.seed)
    return save_inference_sae(trained, out_dir)


def train_dictionary_on_model(
    model: Any,
    dataset: "Dataset",
    hook_name: str,
    d_sae: int,
    *,
    config: DictionaryConfig | None = None,
    out_dir: str | Path | None = None,
    **stream: Any,
) -> SAE:
    """Train one dictionary on the language model directly (SAELens's ``LanguageModelSAETrainingRunner``).

    Args:
        model: a TransformerLens ``HookedTransformer`` / ``HookedSAETransformer`` with a tokenizer.
        dataset: BOS-led token rows in a ``tokens`` column (:func:`~sae_lens_match.sources.tokens.token_dataset`).
        hook_name: e.g. ``"blocks.2.hook_mlp_out"``; ``d_in`` is its width.
        d_sae: dictionary width.
        config: :class:`DictionaryConfig` (default device: the model's).
        out_dir: if given, the inference SAE is saved there.
        stream: ``context_size``, ``exclude_special_tokens``, ``store_batch_size_prompts`` of
            :func:`~sae_lens_match.sources.training.train_sae_on_model`.
    """
    config = config or DictionaryConfig()
    device = config.device or str(next(model.parameters()).device)
    model_name = getattr(model.cfg, "model_name", None)
    sae_cfg = config.sae_config(hook_width(model, hook_name), d_sae, hook_name, device, model_name)
    trained = train_sae_on_model(sae_cfg, config.trainer_config(device), model, dataset, hook_name, seed=config.seed, **stream)
    return save_inference_sae(trained, out_dir)


def train_dictionary_pair(
    activations: torch.Tensor, *, hook_name: str, config: DictionaryConfig | None = None, out_dir: str | Path | None = None, **options: Any
) -> tuple[SAE, SAE]:
    """The paper's two dictionaries for one layer: widths ``n`` and ``2n``, ``n = d_in``.

    ``options`` go to :func:`train_dictionary`; an ``out_dir`` gets ``n/`` and ``2n/`` inside.
    """
    return _pair(lambda d, cfg, out: train_dictionary(activations, d, hook_name=hook_name, config=cfg, out_dir=out, **options), activations.shape[1], config, out_dir)


def train_dictionary_pair_on_model(
    model: Any, dataset: "Dataset", hook_name: str, *, config: DictionaryConfig | None = None, out_dir: str | Path | None = None, **options: Any
) -> tuple[SAE, SAE]:
    """:func:`train_dictionary_pair` on the model directly (``n`` = the hook's width)."""
    return _pair(lambda d, cfg, out: train_dictionary_on_model(model, dataset, hook_name, d, config=cfg, out_dir=out, **options), hook_width(model, hook_name), config, out_dir)


def _pair(train, n: int, config: DictionaryConfig | None, out_dir: str | Path | None) -> tuple[SAE, SAE]:
    config = config or DictionaryConfig()
    small = train(n, config, out_dir and Path(out_dir) / "n")
    # A different seed for the large one: with the same seed its first n features would
    # start where the small dictionary's do, and the overlap would measure the shared init.
    large = train(2 * n, replace(config, seed=config.seed + 1), out_dir and Path(out_dir) / "2n")
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


@torch.no_grad()
def dictionary_stats(sae: SAE, activations: torch.Tensor, *, batch_size: int = 4096) -> dict[str, float]:
    """How a dictionary does on ``activations [n, d_in]`` (held out from its training):
    ``l0`` (mean number of active features per token) and ``explained_variance``
    (``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``)."""
    if activations.ndim != 2 or activations.shape[1] != sae.cfg.d_in or len(activations) < 2:
        raise ValueError(f"dictionary_stats needs activations [n >= 2, {sae.cfg.d_in}], got {tuple(activations.shape)}.")
    x_all = activations.double()
    mean = x_all.mean(0)
    active = residual = total = 0.0
    for start in range(0, len(activations), batch_size):
        x = activations[start : start + batch_size].to(sae.W_dec.device, sae.W_dec.dtype)
        codes = sae.encode(x)
        active += float((codes > 0).sum())
        residual += float(((sae.decode(codes) - x).double() ** 2).sum())
        total += float(((x.double().cpu() - mean) ** 2).sum())
    return {"l0": active / len(activations), "explained_variance": 1.0 - residual / total}
