"""LFP part 1 end to end, in data-flow order: fine-tune, rank layers by divergence, collect the
tuned model's activations, train the n / 2n dictionaries and measure their overlap.

The model is any reference :mod:`sae_lens_match.sources.models` resolves (a checkpoint
directory, or a TransformerLens hub name such as ``"pythia-70m-deduped"``); the data is a
:class:`FeedbackData` the caller chooses (the command line's default is the embedded world's;
IMDb prefixes and Anthropic HH on the hub are the paper's). Every step writes its result under
``out_dir`` as soon as it is done and is skipped on a rerun when its result is already there,
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from sae_lens import SAE

from sae_lens_match.atomic import write_json
from sae_lens_match.lfp.dictionaries import DictionaryConfig, train_dictionary_pair, train_dictionary_pair_on_model
from sae_lens_match.lfp.divergence import layer_divergence, plot_divergence, top_layers
from sae_lens_match.lfp.finetune import dpo, sentiment_rl
from sae_lens_match.lfp.overlap import dictionary_overlap
from sae_lens_match.sources.activations import load_activations, save_activations
from sae_lens_match.sources.models import ModelRef, hooked_from_hf, load_causal_lm, resolve_model
from sae_lens_match.sources.tokens import TokenSet, pack_texts, token_dataset

Recipe = Literal["rl", "dpo", "tr-dpo"]
DictionarySource = Literal["activations", "model"]


@dataclass(frozen=True)
class FeedbackData:
    """What LFP part 1 runs on.

    Attributes:
        name: what the data is, for the summary (``"world"``, ``"imdb+hh"``, ...).
        prompts: prompts for RL fine-tuning (short review prefixes in the paper).
        preferences: a ``datasets.Dataset`` with ``prompt``, ``chosen``, ``rejected`` for DPO /
            TR-DPO (``None`` if only RL is run).
        texts: texts whose activations train the dictionaries.
    """

    name: str
    prompts: Sequence[str]
    preferences: Any
    texts: Sequence[str]


def text_prefixes(texts: Sequence[str], *, seed: int = 0, min_words: int = 2, max_words: int = 8) -> list[str]:
    """The first ``min_words..max_words`` (seeded per text) whitespace-separated words of each text:
    prompts like the LFP paper's short IMDb prefixes."""
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    rng = random.Random(f"prefixes/{seed}")
    return [" ".join(text.split()[: rng.randint(min_words, max_words)]) for text in texts]


@dataclass(frozen=True)
class Part1Config:
    """What to run; defaults suit the embedded world on a 2-core CPU in a few minutes.

    Attributes:
        recipe: ``"rl"`` (VADER-reward RLOO), ``"dpo"`` or ``"tr-dpo"``.
        finetune_steps, finetune_batch_size, learning_rate, beta: the fine-tuning run.
        top_k: how many most-changed MLP layers to study.
        hook: TransformerLens hook of each chosen layer, ``{layer}`` filled in.
        context_size: tokens per packed row (capped at the model's ``n_ctx``).
        dictionary: how each dictionary is trained (:class:`DictionaryConfig`); its
            ``training_tokens`` is the budget whatever the source.
        dictionary_source: ``"activations"`` (the tuned model's activations are stored first,
            then SAELens's ``SAETrainer`` fits them) or ``"model"`` (SAELens's
            ``LanguageModelSAETrainingRunner`` streams them from the tuned model).
        model_name: what SAELens metadata calls the model (default: from its reference).
        seed: fine-tuning seed (the dictionaries have their own in ``dictionary``).
    """

    recipe: Recipe = "rl"
    finetune_steps: int = 60
    finetune_batch_size: int = 16
    learning_rate: float = 2e-5
    beta: float = 0.05
    top_k: int = 2
    hook: str = "blocks.{layer}.mlp.hook_post"
    context_size: int = 128
    dictionary: DictionaryConfig = field(default_factory=lambda: DictionaryConfig(training_tokens=40_000))
    dictionary_source: DictionarySource = "activations"
    model_name: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.recipe not in ("rl", "dpo", "tr-dpo"):
            raise ValueError(f"recipe must be 'rl', 'dpo' or 'tr-dpo', got {self.recipe!r}.")
        if self.dictionary_source not in ("activations", "model"):
            raise ValueError(f"dictionary_source must be 'activations' or 'model', got {self.dictionary_source!r}.")


def _finetune(ref: ModelRef, data: FeedbackData, out: Path, cfg: Part1Config):
    tuned_dir = out / "tuned_model"
    if (tuned_dir / "config.json").exists():
        return load_causal_lm(tuned_dir)
    model, tokenizer = load_causal_lm(ref)
    model.train()
    common = dict(output_dir=out / "finetune", steps=cfg.finetune_steps, batch_size=cfg.finetune_batch_size, learning_rate=cfg.learning_rate, seed=cfg.seed, beta=cfg.beta)
    if cfg.recipe == "rl":
        result = sentiment_rl(model, tokenizer, list(data.prompts), **common)
    else:
        if data.preferences is None:
            raise ValueError(f"Recipe {cfg.recipe!r} needs preference pairs; {data.name!r} has none.")
        result = dpo(model, tokenizer, data.preferences, trust_region=cfg.recipe == "tr-dpo", **common)
    write_json(out / "finetune_log.json", result.log)
    result.model.save_pretrained(tuned_dir)
    tokenizer.save_pretrained(tuned_dir)
    return result.model.eval(), tokenizer


def run_part1(model: str | Path | ModelRef, data: FeedbackData, out_dir: str | Path, cfg: Part1Config | None = None) -> dict:
    """Run LFP part 1 on ``model`` with ``data``.

    Writes ``out_dir/{tuned_model/, finetune_log.json, divergence.json, divergence.{html,png},
    activations/, dictionaries/layer_L/{n,2n}/, summary.json}`` (``activations/`` only with
    ``dictionary_source="activations"``).

    Returns:
        The summary: chosen layers, their divergence, and per layer the overlap figures with
        the ranked shared features as indices into *each* dictionary.

    Raises:
        HubUnavailableError: a hub model that cannot be downloaded (e.g. offline).
        ValueError: an unknown model name (with close names) or a bad config value.
    """
    cfg = cfg or Part1Config()
    ref, out = resolve_model(model), Path(out_dir)
    tuned, tokenizer = _finetune(ref, data, out, cfg)

    base, _ = load_causal_lm(ref)
    divergence = layer_divergence(base, tuned, part="mlp")
    del base
    layers = top_layers(divergence, cfg.top_k)
    write_json(out / "divergence.json", {"mlp_divergence": divergence, "top_layers": layers})
    plot_divergence(divergence, out / "divergence.html", k=cfg.top_k)

    # Activations of the *tuned* model (the reference code read the base model's).
    hooked = hooked_from_hf(ref, tuned.float(), tokenizer, model_name=cfg.model_name)
    hooks = [cfg.hook.format(layer=layer) for layer in layers]
    tokens = pack_texts(tokenizer, list(data.texts), min(hooked.cfg.n_ctx, cfg.context_size))
    if cfg.dictionary_source == "activations":
        save_activations(TokenSet(hooked, tokens), hooks, out / "activations")

    summary = {
        "config": asdict(cfg), "model": ref.requested, "data": data.name, "top_layers": layers,
        "divergence": {str(k): v for k, v in divergence.items()}, "layers": {},
    }
    for layer, hook in zip(layers, hooks):
        directory = out / "dictionaries" / f"layer_{layer}"
        if (directory / "n" / "cfg.json").exists() and (directory / "2n" / "cfg.json").exists():
            small, large = SAE.load_from_disk(directory / "n"), SAE.load_from_disk(directory / "2n")
        elif cfg.dictionary_source == "activations":
            acts = load_activations(out / "activations", hook)[0]
            small, large = train_dictionary_pair(acts, hook_name=hook, config=cfg.dictionary, model_name=hooked.cfg.model_name, out_dir=directory)
        else:
            small, large = train_dictionary_pair_on_model(hooked, token_dataset(tokens), hook, config=cfg.dictionary, out_dir=directory)
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
