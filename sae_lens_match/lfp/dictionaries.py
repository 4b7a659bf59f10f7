"""Training the LFP dictionaries with SAELens's own trainer.

Two SAEs per chosen layer, of widths ``n`` and ``2n`` (``n`` = the hooked width). Paper
defaults: tied encoder/decoder, L1 coefficient 1e-3, lr 1e-3, batch 32, 75 000 examples.

Either on collected activations (:func:`train_dictionary`, SAELens's ``SAETrainer``) or on
the language model directly (:func:`train_dictionary_on_model`, SAELens's
``LanguageModelSAETrainingRunner`` streaming activations from a tokenized dataset).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from sae_lens import SAE, StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.saes.sae import SAEMetadata, TrainingSAE
from sae_lens.training.sae_trainer import SAETrainer

from sae_lens_match.batches import shuffled_minibatches
from sae_lens_match.lfp.architectures import SqrtTrainingSAE, SqrtTrainingSAEConfig, TiedTrainingSAE, TiedTrainingSAEConfig
from sae_lens_match.loading import default_device
from sae_lens_match.permute import select_features

if TYPE_CHECKING:
    from datasets import Dataset
    from transformer_lens.hook_points import HookedRootModule

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
    device = device or default_device()
    cfg = _training_config(
        architecture, activations.shape[1], d_sae, sparsity_penalty, l1_coefficient, device, metadata=SAEMetadata(hook_name=hook_name)
    )
    torch.manual_seed(seed)
    sae: TrainingSAE = _TRAINING_CLASSES[architecture][0](cfg)
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


def _training_config(
    architecture: Architecture, d_in: int, d_sae: int, sparsity_penalty: str, l1_coefficient: float, device: str, **fields
):
    """The SAELens training config of ``architecture`` (one of :data:`_TRAINING_CLASSES`);
    ``fields`` are further config fields."""
    if architecture not in _TRAINING_CLASSES:
        raise ValueError(f"Unknown architecture {architecture!r}; choose from {sorted(_TRAINING_CLASSES)}.")
    extra = {"sparsity_penalty": sparsity_penalty} if architecture == "tied" else {}
    return _TRAINING_CLASSES[architecture][1](d_in=d_in, d_sae=d_sae, l1_coefficient=l1_coefficient, device=device, **extra, **fields)


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


def train_dictionary_on_model(
    model: "HookedRootModule",
    dataset: "Dataset",
    hook_name: str,
    d_sae: int,
    *,
    architecture: Architecture = "tied",
    sparsity_penalty: Literal["l1", "sqrt"] = "l1",
    l1_coefficient: float = 1e-3,
    lr: float = 1e-3,
    batch_size: int = 32,
    n_tokens: int = 75_000,
    context_size: int | None = None,
    exclude_special_tokens: bool = True,
    store_batch_size_prompts: int = 16,
    seed: int = 0,
    device: str | None = None,
    out_dir: str | Path | None = None,
) -> SAE:
    """Train one SAE on the language model directly, with SAELens's ``LanguageModelSAETrainingRunner``.

    SAELens runs ``model`` over the rows of ``dataset``, takes the activations at
    ``hook_name`` (``[batch, pos, d_in]``, flattened to tokens, shuffled in its mixing
    buffer) and trains on them; nothing is stored on disk in between. Offline, no wandb.

    Args:
        model: a TransformerLens ``HookedTransformer`` / ``HookedSAETransformer`` (e.g.
            ``world.load_model(kind="hooked")``) with a tokenizer.
        dataset: a ``datasets.Dataset`` with a ``tokens`` column of token rows
            ``[context_size]`` that already begin with BOS (e.g. ``world.token_dataset()``).
            Rows are read in order and cycled when ``n_tokens`` needs more.
        hook_name: e.g. ``"blocks.2.mlp.hook_post"``; ``d_in`` is its width, read from one
            forward pass.
        d_sae: dictionary width.
        architecture, sparsity_penalty, l1_coefficient, lr: as in :func:`train_dictionary`.
        batch_size: tokens per training step.
        n_tokens: training tokens in total.
        context_size: tokens of each row used (default: the row length; at most ``n_ctx``).
        exclude_special_tokens: leave out BOS / EOS / pad positions (outlier activations).
        store_batch_size_prompts: rows per forward pass of ``model``.
        seed: seeds torch's global RNG, which SAELens uses for the SAE's initialisation
            and the buffer shuffling: the same seed, data and device give the same SAE.
        device: where the SAE trains (default: the model's device).
        out_dir: if given, the inference SAE is saved there (``SAE.load_from_disk`` reads
            it), next to SAELens's ``runner_cfg.json`` and ``sparsity.safetensors``.

    Returns:
        The trained inference SAE (``TiedSAE`` for ``"tied"``): ``W_dec [d_sae, d_in]``,
        ``cfg.metadata.hook_name == hook_name``.
    """
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner

    from sae_lens_match.lfp.activations import _check_hooks

    _check_hooks(model, [hook_name])
    if "tokens" not in dataset.column_names or len(dataset) == 0:
        raise ValueError(f"dataset must have rows in a 'tokens' column; it has {len(dataset)} rows and columns {dataset.column_names}.")
    if n_tokens < batch_size:
        raise ValueError(f"n_tokens={n_tokens} is less than one batch of {batch_size} tokens.")
    row_length = len(dataset[0]["tokens"])
    context_size = context_size or row_length
    n_ctx = getattr(model.cfg, "n_ctx", context_size)
    if not 1 < context_size <= min(row_length, n_ctx):
        raise ValueError(f"context_size={context_size} must lie in [2, {min(row_length, n_ctx)}] (row length {row_length}, model n_ctx {n_ctx}).")
    llm_device = str(next(model.parameters()).device)
    device = device or llm_device
    sae_cfg = _training_config(architecture, hook_width(model, hook_name), d_sae, sparsity_penalty, l1_coefficient, device)
    with tempfile.TemporaryDirectory() as tmp:
        runner_cfg = LanguageModelSAERunnerConfig(
            sae=sae_cfg,
            model_name=getattr(model.cfg, "model_name", "") or "",
            model_class_name=type(model).__name__,
            hook_name=hook_name,
            is_dataset_tokenized=True,
            streaming=False,
            context_size=context_size,
            prepend_bos=False,  # the rows begin with BOS already
            exclude_special_tokens=exclude_special_tokens,
            training_tokens=n_tokens,
            train_batch_size_tokens=batch_size,
            store_batch_size_prompts=store_batch_size_prompts,
            # SAELens's mixing buffer holds n_batches_in_buffer * context_size tokens and
            # must hold a training batch (ValueError otherwise): twice one here.
            n_batches_in_buffer=max(4, -(-2 * batch_size // context_size)),
            lr=lr,
            lr_end=lr,
            device=device,
            llm_device=llm_device,
            seed=seed,
            logger=LoggingConfig(log_to_wandb=False),
            output_path=tmp,
            checkpoint_path=None,
            n_checkpoints=0,
            model_from_pretrained_kwargs={},
            verbose=False,
        )
        torch.manual_seed(seed)
        with _quiet_override_warnings():
            runner = LanguageModelSAETrainingRunner(runner_cfg, override_model=model, override_dataset=dataset)
        runner.run()
        inference = SAE.load_from_disk(tmp, device=device)
        if out_dir is not None:
            _replace_dir(Path(tmp), Path(out_dir))
    return inference


def train_dictionary_pair_on_model(model: "HookedRootModule", dataset: "Dataset", hook_name: str, **options) -> tuple[SAE, SAE]:
    """:func:`train_dictionary_pair` on the model directly: widths ``n`` and ``2n``, ``n`` = the hook's width.

    ``options`` go to :func:`train_dictionary_on_model`; an ``out_dir`` gets ``n/`` and ``2n/``
    inside; the large dictionary uses ``seed + 1``.
    """
    n = hook_width(model, hook_name)
    out_dir = options.pop("out_dir", None)
    seed = options.pop("seed", 0)
    small = train_dictionary_on_model(model, dataset, hook_name, n, seed=seed, out_dir=out_dir and Path(out_dir) / "n", **options)
    large = train_dictionary_on_model(model, dataset, hook_name, 2 * n, seed=seed + 1, out_dir=out_dir and Path(out_dir) / "2n", **options)
    return small, large


@torch.no_grad()
def hook_width(model: "HookedRootModule", hook_name: str) -> int:
    """Last dimension of the activations at ``hook_name`` (one forward pass on two tokens)."""
    from sae_lens_match.lfp.activations import _check_hooks

    _check_hooks(model, [hook_name])
    tokens = torch.zeros(1, 2, dtype=torch.long, device=next(model.parameters()).device)
    _, cache = model.run_with_cache(tokens, names_filter=[hook_name], return_type=None)
    return int(cache[hook_name].shape[-1])


@contextmanager
def _quiet_override_warnings() -> Iterator[None]:
    """Drop SAELens's "you passed in a model/dataset ..." warnings: overriding is the point here."""
    log = logging.getLogger("sae_lens")

    def keep(record: logging.LogRecord) -> bool:
        return "You just passed in a" not in record.getMessage()

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


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
