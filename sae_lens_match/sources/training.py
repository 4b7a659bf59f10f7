"""Training SAEs with SAELens's own trainers: the one helper every SAE of the package goes through.

The architecture and size are a SAELens training config (``JumpReLUTrainingSAEConfig``,
``TiedTrainingSAEConfig``, ...); the schedule is SAELens's ``SAETrainerConfig``
(``total_training_samples`` is the budget in tokens). Two data sources:

- :func:`train_sae`: activations in memory, fed to ``SAETrainer`` in seeded shuffled batches;
- :func:`train_sae_on_model`: a language model and BOS-led token rows, streamed by
  ``LanguageModelSAETrainingRunner`` (nothing stored in between).

Both seed torch's generator *inside* a fork of its state (SAELens initialises weights and
shuffles its buffer from the global generator and ignores ``cfg.seed``), so the same seed
gives the same SAE and the caller's random state is left as it was. :func:`save_inference_sae`
writes the inference SAE atomically and reads it back as users will.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from sae_lens import SAE
from sae_lens.config import SAETrainerConfig
from sae_lens.registry import get_sae_training_class
from sae_lens.saes.sae import TrainingSAE, TrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer

from sae_lens_match.sources.hooks import check_hooks

if TYPE_CHECKING:
    from datasets import Dataset


@contextlib.contextmanager
def seeded(seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """Seed torch's global generator for the block and restore the caller's state afterwards."""
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def shuffled_minibatches(activations: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless minibatches ``[batch_size, d]`` of ``activations`` ``[n, d]``.

    Each epoch is a new seeded shuffle, so every row is seen once before any repeats; the
    last incomplete batch of an epoch is dropped.
    """
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(activations), generator=g)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield activations[order[start : start + batch_size]]


def train_sae(
    sae_cfg: TrainingSAEConfig,
    trainer_cfg: SAETrainerConfig,
    activations: torch.Tensor,
    *,
    seed: int = 0,
    quiet: bool = False,
) -> TrainingSAE:
    """Fit a training SAE of ``sae_cfg``'s architecture on ``activations [n, d_in]``.

    Args:
        sae_cfg: architecture and size; ``d_in`` must be the activations' width.
        trainer_cfg: schedule and budget (``total_training_samples`` tokens, epochs as needed);
            ``lr_end=None`` means SAELens's default, ``lr / 10``.
        activations: training activations (any device; batches move to the trainer's).
        seed: initialisation and batch order.
        quiet: hide SAELens's own progress bar (a caller showing one bar for many SAEs).

    Returns:
        The trained SAE (a ``TrainingSAE``); :func:`save_inference_sae` saves it.
    """
    if activations.ndim != 2 or activations.shape[1] != sae_cfg.d_in or len(activations) < trainer_cfg.train_batch_size_samples:
        raise ValueError(
            f"activations must be [n >= batch size {trainer_cfg.train_batch_size_samples}, d_in={sae_cfg.d_in}], "
            f"got {tuple(activations.shape)}."
        )
    if not torch.isfinite(activations).all():
        raise ValueError("activations contain NaN or inf.")
    if trainer_cfg.lr_end is None:  # SAELens's runner default; its trainer alone would assert
        trainer_cfg = replace(trainer_cfg, lr_end=trainer_cfg.lr / 10)
    sae_class, _ = get_sae_training_class(sae_cfg.architecture())
    device = trainer_cfg.device
    batches = (b.to(device) for b in shuffled_minibatches(activations.float(), trainer_cfg.train_batch_size_samples, seed))
    with seeded(seed, device):
        sae = sae_class(sae_cfg)
        trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=batches)
        # SAETrainer always draws a tqdm bar on stderr; a caller with its own bar hides it.
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            return trainer.fit()


def train_sae_on_model(
    sae_cfg: TrainingSAEConfig,
    trainer_cfg: SAETrainerConfig,
    model: Any,
    dataset: "Dataset",
    hook_name: str,
    *,
    seed: int = 0,
    context_size: int | None = None,
    exclude_special_tokens: bool = True,
    store_batch_size_prompts: int = 16,
) -> TrainingSAE:
    """Fit an SAE on ``model``'s activations at ``hook_name`` with ``LanguageModelSAETrainingRunner``.

    SAELens runs ``model`` over the rows of ``dataset``, takes the activations at
    ``hook_name`` (flattened to tokens, shuffled in its mixing buffer) and trains on them.
    Offline, no wandb, nothing written to disk.

    Args:
        sae_cfg, trainer_cfg, seed: as in :func:`train_sae`.
        model: a TransformerLens ``HookedTransformer`` / ``HookedSAETransformer`` with a tokenizer.
        dataset: a ``datasets.Dataset`` with a ``tokens`` column of BOS-led rows
            (:func:`~sae_lens_match.sources.tokens.token_dataset`), cycled when the budget needs more.
        hook_name: where to read; its width must be ``sae_cfg.d_in``.
        context_size: tokens of each row used (default: the row length; at most ``n_ctx``).
        exclude_special_tokens: leave out BOS / EOS / pad positions (outlier activations).
        store_batch_size_prompts: rows per forward pass of ``model``.
    """
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner

    check_hooks(model, [hook_name])
    if "tokens" not in dataset.column_names or len(dataset) == 0:
        raise ValueError(f"dataset must have rows in a 'tokens' column; it has {len(dataset)} rows and columns {dataset.column_names}.")
    batch = trainer_cfg.train_batch_size_samples
    if trainer_cfg.total_training_samples < batch:
        raise ValueError(f"A budget of {trainer_cfg.total_training_samples} tokens is less than one batch of {batch}.")
    row_length = len(dataset[0]["tokens"])
    context_size = context_size or row_length
    n_ctx = getattr(model.cfg, "n_ctx", context_size)
    if not 1 < context_size <= min(row_length, n_ctx):
        raise ValueError(f"context_size={context_size} must lie in [2, {min(row_length, n_ctx)}] (row length {row_length}, model n_ctx {n_ctx}).")
    llm_device = str(next(model.parameters()).device)
    runner_cfg = LanguageModelSAERunnerConfig(
        sae=replace(sae_cfg, device=trainer_cfg.device),
        model_name=getattr(model.cfg, "model_name", "") or "",
        model_class_name=type(model).__name__,
        hook_name=hook_name,
        is_dataset_tokenized=True,
        streaming=False,
        context_size=context_size,
        prepend_bos=False,  # the rows begin with BOS already
        exclude_special_tokens=exclude_special_tokens,
        training_tokens=trainer_cfg.total_training_samples,
        train_batch_size_tokens=batch,
        store_batch_size_prompts=store_batch_size_prompts,
        # SAELens's mixing buffer holds n_batches_in_buffer * context_size tokens and must
        # hold a training batch (ValueError otherwise): twice one here.
        n_batches_in_buffer=max(4, -(-2 * batch // context_size)),
        lr=trainer_cfg.lr,
        lr_end=trainer_cfg.lr_end,
        lr_scheduler_name=trainer_cfg.lr_scheduler_name,
        lr_warm_up_steps=trainer_cfg.lr_warm_up_steps,
        dead_feature_window=trainer_cfg.dead_feature_window,
        n_batches_for_norm_estimate=trainer_cfg.n_batches_for_norm_estimate,
        device=trainer_cfg.device,
        llm_device=llm_device,
        seed=seed,
        logger=trainer_cfg.logger,
        output_path=None,
        checkpoint_path=None,
        n_checkpoints=0,
        model_from_pretrained_kwargs={},
        verbose=False,
    )
    with seeded(seed, trainer_cfg.device), _quiet_override_warnings():
        runner = LanguageModelSAETrainingRunner(runner_cfg, override_model=model, override_dataset=dataset)
        return runner.run()


@contextlib.contextmanager
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


def save_inference_sae(sae: TrainingSAE, out_dir: str | Path | None = None, *, device: str | None = None) -> SAE:
    """Save ``sae`` in SAELens's inference format and return it as ``SAE.load_from_disk`` reads it.

    With ``out_dir`` the directory is replaced in one step, so it is never half-written.
    """
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_inference_model(tmp)
        inference = SAE.load_from_disk(tmp, device=device or str(sae.device))
        if out_dir is not None:
            _replace_dir(Path(tmp), Path(out_dir))
    return inference


def _replace_dir(src: Path, dst: Path) -> None:
    """Copy ``src`` next to ``dst`` and swap it in."""
    staging = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src, staging)
    shutil.rmtree(dst, ignore_errors=True)
    staging.rename(dst)
