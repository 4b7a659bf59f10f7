"""LFP part 1 end to end: fine-tune, rank layers by divergence, collect activations, train
the n / 2n dictionaries and measure their overlap.

Runs on a local checkpoint (the embedded world's by default) or on a hub model that
TransformerLens supports (``"pythia-70m-deduped"``, ``"pythia-160m"``, ``"gpt-neo-125M"``,
...; see :mod:`sae_lens_match.lfp.models`). Every step writes its result under ``out_dir``
as soon as it is done and is skipped on a rerun when its result is already there, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from sae_lens import SAE

from sae_lens_match.io import write_json
from sae_lens_match.lfp.activations import collect_activations, load_activations
from sae_lens_match.lfp.dictionaries import train_dictionary_pair, train_dictionary_pair_on_model
from sae_lens_match.lfp.divergence import layer_divergence, plot_divergence, top_layers
from sae_lens_match.lfp.finetune import dpo, sentiment_rl
from sae_lens_match.lfp.models import ModelSource, hooked_from_hf, load_causal_lm, resolve_model
from sae_lens_match.lfp.overlap import dictionary_overlap
from sae_lens_match.lfp.preferences import preference_pairs

Recipe = Literal["rl", "dpo", "tr-dpo"]
DictionarySource = Literal["activations", "model"]


@dataclass
class Part1Config:
    """What to run; defaults suit the embedded world on a 2-core CPU in a few minutes.

    ``dictionary_source`` picks how the dictionaries are trained: ``"activations"`` (the
    tuned model's activations are collected to disk first, then SAELens's ``SAETrainer``
    fits them) or ``"model"`` (SAELens's ``LanguageModelSAETrainingRunner`` streams them
    from the tuned model over packed corpus rows, BOS left out). Either way
    ``dictionary_examples`` is the number of training tokens. ``context_size`` caps the
    tokens per sequence (below the model's ``n_ctx``: 2048 for Pythia).
    """

    recipe: Recipe = "rl"
    finetune_steps: int = 60
    finetune_batch_size: int = 16
    learning_rate: float = 2e-5
    beta: float = 0.05
    top_k: int = 2
    hook: str = "blocks.{layer}.mlp.hook_post"
    n_sequences: int = 400
    context_size: int = 128
    dictionary_examples: int = 40_000
    dictionary_architecture: str = "tied"
    sparsity_penalty: str = "l1"
    l1_coefficient: float = 1e-3
    dictionary_lr: float = 1e-3
    dictionary_source: DictionarySource = "activations"
    seed: int = 0
    extra: dict = field(default_factory=dict)


def _finetune(source: ModelSource, out: Path, cfg: Part1Config):
    tuned_dir = out / "tuned_model"
    if (tuned_dir / "config.json").exists():
        return load_causal_lm(tuned_dir)
    model, tokenizer = load_causal_lm(source)
    model.train()
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


def run_part1(model: str | Path, out_dir: str | Path, cfg: Part1Config | None = None) -> dict:
    """Run LFP part 1 on ``model``: a Hugging Face checkpoint directory (e.g. the embedded
    world's ``world_root / "model"``) or a TransformerLens hub model name (e.g.
    ``"pythia-70m-deduped"``, ``"gpt-neo-125M"``).

    Writes ``out_dir/{tuned_model/, finetune_log.json, divergence.json, divergence.{html,png},
    activations/, dictionaries/layer_L/{n,2n}/, overlap.json, summary.json}``
    (``activations/`` only with ``dictionary_source="activations"``).

    Returns:
        The summary: chosen layers, their divergence, and per layer the overlap figures with
        the ranked shared features as indices into *each* dictionary.

    Raises:
        HubUnavailableError: a hub model that cannot be downloaded (e.g. offline).
        ValueError: an unknown model name (with close names) or a bad config value.
    """
    cfg = cfg or Part1Config()
    if cfg.dictionary_source not in ("activations", "model"):
        raise ValueError(f"dictionary_source must be 'activations' or 'model', got {cfg.dictionary_source!r}.")
    source, out = resolve_model(model), Path(out_dir)
    tuned, tokenizer = _finetune(source, out, cfg)

    base, _ = load_causal_lm(source)
    divergence = layer_divergence(base, tuned, part="mlp")
    del base
    layers = top_layers(divergence, cfg.top_k)
    write_json(out / "divergence.json", {"mlp_divergence": divergence, "top_layers": layers})
    plot_divergence(divergence, out / "divergence.html", k=cfg.top_k)

    # Activations of the *tuned* model (the reference code read the base model's).
    hooked = hooked_from_hf(source, tuned.float(), tokenizer)
    hooks = [cfg.hook.format(layer=layer) for layer in layers]
    context = min(hooked.cfg.n_ctx, cfg.context_size)
    dataset = None
    if cfg.dictionary_source == "activations":
        tokens = _corpus_tokens(tokenizer, context, cfg.n_sequences, cfg.seed)
        collect_activations(hooked, tokens["input_ids"], hooks, out / "activations", attention_mask=tokens["attention_mask"])
    else:
        dataset = _token_dataset(tokenizer, context, cfg.n_sequences, cfg.seed)

    summary = {"config": asdict(cfg), "model": source.requested, "top_layers": layers, "divergence": {str(k): v for k, v in divergence.items()}, "layers": {}}
    for layer, hook in zip(layers, hooks):
        directory = out / "dictionaries" / f"layer_{layer}"
        if dataset is None:
            small, large = _dictionaries(lambda **kw: train_dictionary_pair(load_activations(out / "activations", hook)[0], **kw), hook, directory, cfg)
        else:
            small, large = _dictionaries(lambda **kw: train_dictionary_pair_on_model(hooked, dataset, **kw), hook, directory, cfg)
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


def _dictionaries(train_pair, hook: str, directory: Path, cfg: Part1Config) -> tuple[SAE, SAE]:
    if (directory / "n" / "cfg.json").exists() and (directory / "2n" / "cfg.json").exists():
        return SAE.load_from_disk(directory / "n"), SAE.load_from_disk(directory / "2n")
    options = dict(
        hook_name=hook,
        architecture=cfg.dictionary_architecture,
        sparsity_penalty=cfg.sparsity_penalty,
        l1_coefficient=cfg.l1_coefficient,
        lr=cfg.dictionary_lr,
        seed=cfg.seed,
        out_dir=directory,
    )
    options["n_examples" if cfg.dictionary_source == "activations" else "n_tokens"] = cfg.dictionary_examples
    return train_pair(**options)


def _corpus_tokens(tokenizer, n_ctx: int, n: int, seed: int) -> dict[str, torch.Tensor]:
    from sae_lens_match.world.corpus import corpus

    texts = corpus("train", n=n, seed=seed)
    return tokenizer(texts, return_tensors="pt", padding="max_length", truncation=True, max_length=n_ctx)


def _token_dataset(tokenizer, context_size: int, n: int, seed: int):
    """Corpus texts packed into rows ``[context_size]`` that each begin with BOS (EOS if the
    tokenizer has none), texts separated by it: the world's ``pack_rows`` layout, for any
    tokenizer. Returns a ``datasets.Dataset`` with a ``tokens`` column."""
    import datasets

    from sae_lens_match.world.corpus import corpus

    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise ValueError("The tokenizer has neither a BOS nor an EOS token to start rows with.")
    ids = tokenizer(corpus("train", n=n, seed=seed), add_special_tokens=False)["input_ids"]
    stream = torch.tensor([t for text in ids for t in [bos, *text]], dtype=torch.long)
    width = context_size - 1
    n_rows = len(stream) // width
    if n_rows == 0:
        raise ValueError(f"{n} corpus texts give fewer than {width} tokens; raise n_sequences.")
    body = stream[: n_rows * width].view(n_rows, width)
    rows = torch.cat([torch.full((n_rows, 1), bos, dtype=torch.long), body], dim=1)
    return datasets.Dataset.from_dict({"tokens": rows.tolist()})
