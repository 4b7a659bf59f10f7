"""Fine-tuning recipes on TRL 1.x: sentiment RL with a text reward, DPO and TR-DPO (LFP step 1).

Each recipe takes a Hugging Face causal LM and its tokenizer, trains with TRL, and returns the
tuned model with TRL's log. Checkpoints go to ``output_dir``; a rerun resumes from the last
one when it trains the same model on the same data with the same settings, and starts afresh
otherwise (the folder is a :class:`~sae_lens_match.stages.Stage` keyed on all of them). Nothing
is sent to wandb unless ``report_to`` asks for it.

The paper ran PPO with the VADER reward (TRL 0.7.7, KL in the reward, initial coefficient
0.5). TRL removed ``PPOTrainer``, so :func:`sentiment_rl` uses RLOO (default) or GRPO: no
value network, the baseline is the mean reward of the other completions of the same prompt.
The KL penalty to the frozen starting model, with coefficient ``beta``, sits where it did
in PPO for RLOO (TRL 1.x subtracts ``beta * KL`` from the reward) and in the loss for GRPO.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from datasets import Dataset
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback, TrainerState
from transformers.trainer_utils import get_last_checkpoint

from sae_lens_match.fingerprints import sha256_json, sha256_tensors
from sae_lens_match.lfp.reward import RewardFn, RewardScope, trl_reward
from sae_lens_match.stages import Stage


@dataclass
class FineTuneResult:
    """A tuned model, the reference model it was held to (if any) and TRL's log history."""

    model: PreTrainedModel
    ref_model: PreTrainedModel | None
    log: list[dict[str, Any]]
    output_dir: Path


def _training_args(output_dir: str | Path, *, steps: int, batch_size: int, learning_rate: float, seed: int, save_steps: int, report_to: str | list[str]) -> dict[str, Any]:
    return dict(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        data_seed=seed,
        save_steps=save_steps,
        save_total_limit=2,
        logging_steps=1,
        report_to=report_to,
        disable_tqdm=False,
        use_cpu=not _cuda(),
    )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _prepare(output_dir: str | Path, resume: bool, model: PreTrainedModel, settings: dict[str, Any]) -> None:
    """Key ``output_dir`` on the starting weights and every setting: checkpoints of another run are
    removed rather than resumed (and all are without ``resume``)."""
    Stage.of(output_dir, {"model": sha256_tensors(model.state_dict()), **settings}).start(resume=resume)


REFERENCE_FILE = "ref_model.safetensors"


class _SaveReference(TrainerCallback):
    """Saves TR-DPO's moving reference into every checkpoint: TRL checkpoints only the policy,
    and a resumed run must go on from the mixed reference, not from the starting model."""

    def __init__(self, ref_model: PreTrainedModel):
        self.ref_model = ref_model

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        save_file({k: v.detach().cpu().contiguous() for k, v in self.ref_model.state_dict().items()}, str(folder / REFERENCE_FILE))


def _train(trainer, output_dir: str | Path, resume: bool, ref_model: PreTrainedModel | None = None) -> list[dict[str, Any]]:
    checkpoint = get_last_checkpoint(str(output_dir)) if resume and Path(output_dir).is_dir() else None
    if checkpoint is not None:
        if ref_model is not None and (Path(checkpoint) / REFERENCE_FILE).is_file():
            ref_model.load_state_dict(load_file(str(Path(checkpoint) / REFERENCE_FILE)))
        # transformers' resume loads the checkpoint with load_state_dict(strict=False), which
        # silently skips weights saved under a legacy name (GPT-NeoX's lm_head is saved as
        # embed_out): load them the way from_pretrained does first.
        model = trainer.model
        model.load_state_dict(type(model).from_pretrained(checkpoint, dtype=next(model.parameters()).dtype).state_dict())
        state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
        if state.global_step >= trainer.args.max_steps:
            return list(state.log_history)  # finished: resuming would train one step more
    trainer.train(resume_from_checkpoint=checkpoint)
    return list(trainer.state.log_history)


def dpo(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Dataset,
    *,
    output_dir: str | Path,
    trust_region: bool = False,
    mixup_alpha: float = 0.6,
    sync_steps: int = 512,
    beta: float = 0.1,
    steps: int = 200,
    batch_size: int = 8,
    learning_rate: float = 5e-6,
    seed: int = 0,
    save_steps: int = 100,
    resume: bool = True,
    report_to: str | list[str] = "none",
) -> FineTuneResult:
    """DPO, or TR-DPO with ``trust_region=True``, on ``pairs`` (columns ``prompt``, ``chosen``, ``rejected``).

    TR-DPO (Gorbatovski et al. 2024) updates the reference model during training: every
    ``sync_steps`` steps ``ref <- mixup_alpha * policy + (1 - mixup_alpha) * ref`` (soft update;
    ``mixup_alpha=1`` is the hard update). Paper defaults: 0.6 and 512. ``model`` is trained in
    place; the reference starts as a copy of it and is saved in every checkpoint, so a resumed
    run goes on from the mixed reference. ``beta`` is DPO's inverse temperature (TRL's default 0.1).

    Raises:
        ValueError: missing columns, or (with ``trust_region``) ``sync_steps >= steps``: the
            reference would never be updated and TR-DPO would be plain DPO.
    """
    from trl import DPOConfig, DPOTrainer

    missing = {"prompt", "chosen", "rejected"} - set(pairs.column_names)
    if missing:
        raise ValueError(f"Preference pairs need columns prompt, chosen, rejected; missing {sorted(missing)}.")
    if not 0.0 < mixup_alpha <= 1.0 or sync_steps < 1:
        raise ValueError(f"TR-DPO needs 0 < mixup_alpha <= 1 and sync_steps >= 1, got {mixup_alpha}, {sync_steps}.")
    if trust_region and sync_steps >= steps:
        raise ValueError(f"TR-DPO with sync_steps={sync_steps} >= steps={steps} never updates its reference (it would be plain DPO); choose sync_steps < steps.")
    _prepare(output_dir, resume, model, {
        "recipe": "dpo", "trust_region": trust_region, "mixup_alpha": mixup_alpha, "sync_steps": sync_steps, "beta": beta,
        "steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed, "save_steps": save_steps,
        "pairs": sha256_json(pairs.to_dict()),
    })
    ref_model = copy.deepcopy(model).eval()
    args = DPOConfig(
        beta=beta,
        sync_ref_model=trust_region,
        ref_model_mixup_alpha=mixup_alpha,
        ref_model_sync_steps=sync_steps,
        **_training_args(output_dir, steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed, save_steps=save_steps, report_to=report_to),
    )
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=pairs, processing_class=tokenizer)
    if trust_region:
        trainer.add_callback(_SaveReference(trainer.ref_model))
    log = _train(trainer, output_dir, resume, trainer.ref_model if trust_region else None)
    return FineTuneResult(trainer.model, trainer.ref_model, log, Path(output_dir))


def sentiment_rl(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    output_dir: str | Path,
    reward: str | RewardFn = "vader",
    reward_scope: RewardScope = "prefix+completion",
    algorithm: Literal["rloo", "grpo"] = "rloo",
    beta: float = 0.05,
    num_generations: int = 4,
    max_completion_length: int = 24,
    steps: int = 200,
    batch_size: int = 8,
    learning_rate: float = 1e-5,
    temperature: float = 1.0,
    seed: int = 0,
    save_steps: int = 100,
    resume: bool = True,
    report_to: str | list[str] = "none",
) -> FineTuneResult:
    """RL on ``prompts`` (e.g. review prefixes) towards a registered text reward (default VADER).

    ``batch_size`` counts completions per step and must be a multiple of ``num_generations``
    (completions sampled per prompt, compared with each other for the baseline).
    ``reward_scope``: score the prefix and its completion together (the LFP paper's reference
    code) or the completion alone. The RLOO/GRPO baseline compares completions of the same
    prefix, so a prefix's own sentiment cancels out of the advantage except where the
    reward's clipping bites; it does shift the logged reward.
    """
    if algorithm == "rloo":
        from trl import RLOOConfig as Config, RLOOTrainer as Trainer
    elif algorithm == "grpo":
        from trl import GRPOConfig as Config, GRPOTrainer as Trainer
    else:
        raise ValueError(f"algorithm must be 'rloo' or 'grpo', got {algorithm!r}.")
    if batch_size % num_generations:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of num_generations ({num_generations}).")
    if not prompts:
        raise ValueError("sentiment_rl needs at least one prompt.")
    _prepare(output_dir, resume, model, {
        "recipe": "rl", "algorithm": algorithm, "reward": reward if isinstance(reward, str) else getattr(reward, "__qualname__", repr(reward)),
        "reward_scope": reward_scope,
        "beta": beta, "num_generations": num_generations, "max_completion_length": max_completion_length, "steps": steps,
        "batch_size": batch_size, "learning_rate": learning_rate, "temperature": temperature, "seed": seed, "save_steps": save_steps,
        "prompts": list(prompts),
    })
    args = Config(
        beta=beta,
        num_generations=num_generations,
        max_completion_length=max_completion_length,
        temperature=temperature,
        **_training_args(output_dir, steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed, save_steps=save_steps, report_to=report_to),
    )
    # TRL rebuilds the frozen reference from a path: save the starting model once, train from it.
    base_dir = Path(output_dir) / "base_model"
    if not (base_dir / "config.json").exists():
        model.save_pretrained(base_dir)
        tokenizer.save_pretrained(base_dir)
    trainer = Trainer(
        model=str(base_dir),
        reward_funcs=[trl_reward(reward, reward_scope)],
        args=args,
        train_dataset=Dataset.from_dict({"prompt": list(prompts)}),
        processing_class=tokenizer,
    )
    log = _train(trainer, output_dir, resume)
    return FineTuneResult(trainer.model, getattr(trainer, "ref_model", None), log, Path(output_dir))
