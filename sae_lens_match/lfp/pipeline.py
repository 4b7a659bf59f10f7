"""LFP part 1 end to end: fine-tune, rank layers by divergence, collect activations, train
the n / 2n dictionaries and measure their overlap.

Every step writes its result under ``out_dir`` as soon as it is done and is skipped on a
rerun when its result is already there, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from sae_lens import SAE

from sae_lens_match.io import write_json
from sae_lens_match.lfp.activations import collect_activations, load_activations
from sae_lens_match.lfp.dictionaries import train_dictionary_pair
from sae_lens_match.lfp.divergence import layer_divergence, plot_divergence, top_layers
from sae_lens_match.lfp.finetune import dpo, sentiment_rl
from sae_lens_match.lfp.overlap import dictionary_overlap
from sae_lens_match.lfp.preferences import preference_pairs

Recipe = Literal["rl", "dpo", "tr-dpo"]


@dataclass
class Part1Config:
    """What to run; defaults suit the embedded world on a 2-core CPU in a few minutes."""

    recipe: Recipe = "rl"
    finetune_steps: int = 60
    finetune_batch_size: int = 16
    learning_rate: float = 2e-5
    beta: float = 0.05
    top_k: int = 2
    hook: str = "blocks.{layer}.mlp.hook_post"
    n_sequences: int = 400
    dictionary_examples: int = 40_000
    dictionary_architecture: str = "tied"
    sparsity_penalty: str = "l1"
    l1_coefficient: float = 1e-3
    dictionary_lr: float = 1e-3
    seed: int = 0
    extra: dict = field(default_factory=dict)


def _finetune(model_dir: Path, out: Path, cfg: Part1Config):
    from sae_lens_match.world.model import load_hf_model
    from sae_lens_match.world.tokenizer import load_tokenizer

    tuned_dir = out / "tuned_model"
    tokenizer = load_tokenizer(model_dir)
    if (tuned_dir / "config.json").exists():
        return load_hf_model(tuned_dir), tokenizer
    model = load_hf_model(model_dir).train()
    common = dict(output_dir=out / "finetune", steps=cfg.finetune_steps, batch_size=cfg.finetune_batch_size, learning_rate=cfg.learning_rate, seed=cfg.seed, beta=cfg.beta)
    if cfg.recipe == "rl":
        from sae_lens_match.world.corpus import review_prefixes

        result = sentiment_rl(model, tokenizer, review_prefixes(256, seed=cfg.seed, split="train"), **common)
    elif cfg.recipe in ("dpo", "tr-dpo"):
        pairs = preference_pairs(cfg.finetune_steps * cfg.finetune_batch_size, seed=cfg.seed)
        result = dpo(model, tokenizer, pairs, trust_region=cfg.recipe == "tr-dpo", **common)
    else:
        raise ValueError(f"recipe must be 'rl', 'dpo' or 'tr-dpo', got {cfg.recipe!r}.")
    write_json(out / "finetune_log.json", result.log)
    result.model.save_pretrained(tuned_dir)
    tokenizer.save_pretrained(tuned_dir)
    return result.model.eval(), tokenizer


def run_part1(model_dir: str | Path, out_dir: str | Path, cfg: Part1Config | None = None) -> dict:
    """Run LFP part 1 on the Hugging Face checkpoint in ``model_dir`` (e.g. the embedded world's).

    Writes ``out_dir/{tuned_model/, finetune_log.json, divergence.json, divergence.html,
    activations/, dictionaries/layer_L/{n,2n}/, overlap.json, summary.json}``.

    Returns:
        The summary: chosen layers, their divergence, and per layer the overlap figures with
        the ranked shared features as indices into *each* dictionary.
    """
    from sae_lens_match.world.model import load_hf_model, load_hooked_model

    cfg = cfg or Part1Config()
    model_dir, out = Path(model_dir), Path(out_dir)
    tuned, tokenizer = _finetune(model_dir, out, cfg)

    divergence = layer_divergence(load_hf_model(model_dir), tuned, part="mlp")
    layers = top_layers(divergence, cfg.top_k)
    write_json(out / "divergence.json", {"mlp_divergence": divergence, "top_layers": layers})
    plot_divergence(divergence, out / "divergence.html", k=cfg.top_k)

    # Activations of the *tuned* model (the reference code read the base model's).
    hooked = load_hooked_model(model_dir, hf_model=tuned.float(), tokenizer=tokenizer)
    hooks = [cfg.hook.format(layer=layer) for layer in layers]
    tokens = _corpus_tokens(tokenizer, hooked.cfg.n_ctx, cfg.n_sequences, cfg.seed)
    collect_activations(hooked, tokens["input_ids"], hooks, out / "activations", attention_mask=tokens["attention_mask"])

    summary = {"config": asdict(cfg), "top_layers": layers, "divergence": {str(k): v for k, v in divergence.items()}, "layers": {}}
    for layer, hook in zip(layers, hooks):
        acts, _ = load_activations(out / "activations", hook)
        small, large = _dictionaries(acts, hook, out / "dictionaries" / f"layer_{layer}", cfg)
        overlap = dictionary_overlap(small, large)
        summary["layers"][str(layer)] = {
            "hook": hook,
            "d_in": small.cfg.d_in,
            "mean_max_cosine": overlap.mean_max_cosine,
            "mean_assigned_cosine": overlap.mean_assigned_cosine,
            "shared_features": [
                {"small_index": int(s), "large_index": int(l), "cosine": float(c)}
                for s, l, c in zip(overlap.small_index, overlap.large_index, overlap.cosine)
            ],
        }
    write_json(out / "summary.json", summary)
    return summary


def _dictionaries(acts: torch.Tensor, hook: str, directory: Path, cfg: Part1Config) -> tuple[SAE, SAE]:
    if (directory / "n" / "cfg.json").exists() and (directory / "2n" / "cfg.json").exists():
        return SAE.load_from_disk(directory / "n"), SAE.load_from_disk(directory / "2n")
    return train_dictionary_pair(
        acts,
        hook_name=hook,
        architecture=cfg.dictionary_architecture,
        sparsity_penalty=cfg.sparsity_penalty,
        l1_coefficient=cfg.l1_coefficient,
        lr=cfg.dictionary_lr,
        n_examples=cfg.dictionary_examples,
        seed=cfg.seed,
        out_dir=directory,
    )


def _corpus_tokens(tokenizer, n_ctx: int, n: int, seed: int) -> dict[str, torch.Tensor]:
    from sae_lens_match.world.corpus import corpus

    texts = corpus("train", n=n, seed=seed)
    return tokenizer(texts, return_tensors="pt", padding="max_length", truncation=True, max_length=n_ctx)
