"""LFP end to end, in data-flow order: fine-tune, rank layers by divergence, collect the tuned
model's activations, train the n / 2n dictionaries and measure their overlap (part 1); then
probe the contrastive codes against the true feedback (part 2, :mod:`~sae_lens_match.lfp.part2`).

The model is any reference :mod:`sae_lens_match.sources.models` resolves (a checkpoint
directory, or a TransformerLens hub name such as ``"pythia-70m-deduped"``); the data is a
:class:`FeedbackData` the caller chooses (the command line's default is the embedded world's;
IMDb prefixes and Anthropic HH on the hub are the paper's). Every step writes its result under
``out_dir`` as soon as it is done, as a :class:`~sae_lens_match.stages.Stage` keyed on the
model, the data, the config and the stages it read: a rerun reuses a step only when all of
those are unchanged and its files are intact, recomputes it (and what depends on it)
otherwise, and an interrupted step resumes from its checkpoints.
"""

from __future__ import annotations

import copy
import logging
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

from sae_lens import SAE, HookedSAETransformer

from sae_lens_match.atomic import prepare_out_dir, write_json
from sae_lens_match.evaluation.explain.contexts import Explainer
from sae_lens_match.fingerprints import sha256_json
from sae_lens_match.lfp.contrastive import PreferenceTriple, Triple
from sae_lens_match.lfp.dictionaries import (
    DictionaryConfig,
    dictionary_stats,
    train_dictionary,
    train_dictionary_on_model,
    train_dictionary_pair,
    train_dictionary_pair_on_model,
)
from sae_lens_match.lfp.diffing import model_diff
from sae_lens_match.lfp.divergence import Aggregate, layer_divergence, plot_divergence, top_layers
from sae_lens_match.lfp.finetune import dpo, sentiment_rl
from sae_lens_match.lfp.overlap import dictionary_overlap
from sae_lens_match.lfp.part2 import Part2Config, Validation, run_part2
from sae_lens_match.lfp.report import write_lfp_report
from sae_lens_match.lfp.reward import RewardScope, get_reward
from sae_lens_match.lfp.validation import Relatedness
from sae_lens_match.sources.activations import collect_activations, load_activations, save_activations
from sae_lens_match.sources.hooks import hook_width
from sae_lens_match.sources.models import ModelRef, hooked_from_hf, load_causal_lm, resolve_model
from sae_lens_match.sources.tokens import TokenSet, pack_texts, token_dataset
from sae_lens_match.stages import Stage

logger = logging.getLogger(__name__)
Recipe = Literal["rl", "dpo", "tr-dpo"]
DictionarySource = Literal["activations", "model"]


@dataclass(frozen=True)
class FeedbackData:
    """What the LFP pipeline runs on.

    Attributes:
        name: what the data is, for the summary (``"world"``, ``"imdb"``, ``"hh"``, ...).
        prompts: prompts for RL fine-tuning (short review prefixes in the paper).
        preferences: a ``datasets.Dataset`` with ``prompt``, ``chosen``, ``rejected`` for DPO /
            TR-DPO (``None`` if only RL is run).
        texts: texts whose activations train the dictionaries.
        triples: contrastive word triples for part 2's linear probes (VADER task).
        preference_triples: chosen / neutral / rejected answers for part 2's logistic probes
            (preference tasks); with neither, part 2 is skipped.
    """

    name: str
    prompts: Sequence[str]
    preferences: Any
    texts: Sequence[str]
    triples: Sequence[Triple] = ()
    preference_triples: Sequence[PreferenceTriple] = ()

    def fingerprint(self) -> str:
        """SHA-256 of the contents (prompts, preference pairs, texts), which a rerun's reuse is keyed on."""
        preferences = None if self.preferences is None else self.preferences.to_dict()
        return sha256_json([list(self.prompts), preferences, list(self.texts)])


def text_prefixes(texts: Sequence[str], *, seed: int = 0, min_words: int = 2, max_words: int = 8) -> list[str]:
    """The first ``min_words..max_words`` (seeded per text) whitespace-separated words of each text:
    prompts like the LFP paper's short IMDb prefixes."""
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    rng = random.Random(f"prefixes/{seed}")
    return [" ".join(text.split()[: rng.randint(min_words, max_words)]) for text in texts]


@dataclass(frozen=True)
class LFPConfig:
    """What to run; defaults suit the embedded world on a 2-core CPU in a few minutes.

    Attributes:
        recipe: ``"rl"`` (VADER-reward RLOO), ``"dpo"`` or ``"tr-dpo"``.
        finetune_steps, finetune_batch_size, learning_rate: the fine-tuning run.
        kl_beta: RL's KL coefficient (RLOO subtracts ``kl_beta * KL`` from the reward).
        dpo_beta: DPO's and TR-DPO's inverse temperature (TRL's default 0.1).
        mixup_alpha, sync_steps: TR-DPO's reference update, ``ref <- alpha * policy +
            (1 - alpha) * ref`` every ``sync_steps`` steps (must be fewer than the run's steps).
        reward_scope: what the RL reward scores: ``"prefix+completion"`` (the paper's code)
            or ``"completion"``.
        top_k: how many most-changed MLP layers to study.
        divergence_part, divergence_aggregate: how layers are ranked (see
            :func:`~sae_lens_match.lfp.divergence.layer_divergence`; the reference code used
            ``"block"`` and ``"sum_of_norms"``).
        hook: TransformerLens hook of each chosen layer, ``{layer}`` filled in. The default is
            the reference code's: the MLP module's output ``hook_mlp_out`` (width ``d_model``,
            so n = d_model); ``"blocks.{layer}.mlp.hook_post"`` reads the post-GELU
            activations instead (4x wider).
        context_size: tokens per packed row (capped at the model's ``n_ctx``).
        dictionary: how each dictionary is trained (:class:`DictionaryConfig`); its
            ``training_tokens`` is the budget whatever the source.
        dictionary_source: ``"activations"`` (the tuned model's activations are stored first,
            then SAELens's ``SAETrainer`` fits them) or ``"model"`` (SAELens's
            ``LanguageModelSAETrainingRunner`` streams them from the tuned model).
        model_name: what SAELens metadata calls the model (default: from its reference).
        seed: fine-tuning seed (the dictionaries have their own in ``dictionary``).
        part2: how part 2's probes are fitted and judged (:class:`Part2Config`).
        diffing: match the tuned model's n-dictionaries with base-model dictionaries trained the
            same way (:func:`~sae_lens_match.lfp.diffing.model_diff`).
    """

    recipe: Recipe = "rl"
    finetune_steps: int = 60
    finetune_batch_size: int = 16
    learning_rate: float = 2e-5
    kl_beta: float = 0.05
    dpo_beta: float = 0.1
    mixup_alpha: float = 0.6
    sync_steps: int = 16
    reward_scope: RewardScope = "prefix+completion"
    top_k: int = 2
    divergence_part: Literal["mlp", "block"] = "mlp"
    divergence_aggregate: Aggregate = "l2"
    hook: str = "blocks.{layer}.hook_mlp_out"
    context_size: int = 128
    dictionary: DictionaryConfig = field(default_factory=lambda: DictionaryConfig(training_tokens=40_000))
    dictionary_source: DictionarySource = "activations"
    model_name: str | None = None
    seed: int = 0
    part2: Part2Config = field(default_factory=Part2Config)
    diffing: bool = True

    def __post_init__(self) -> None:
        if self.recipe not in ("rl", "dpo", "tr-dpo"):
            raise ValueError(f"recipe must be 'rl', 'dpo' or 'tr-dpo', got {self.recipe!r}.")
        if self.dictionary_source not in ("activations", "model"):
            raise ValueError(f"dictionary_source must be 'activations' or 'model', got {self.dictionary_source!r}.")
        for name in ("finetune_steps", "finetune_batch_size", "top_k"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be a whole number >= 1 (no fine-tuning, no layers to study otherwise), got {getattr(self, name)!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0 (at 0 fine-tuning changes nothing), got {self.learning_rate!r}.")
        if not (self.kl_beta >= 0 and self.dpo_beta > 0):
            raise ValueError(f"Need kl_beta >= 0 and dpo_beta > 0, got {self.kl_beta!r}, {self.dpo_beta!r}.")
        if self.recipe == "tr-dpo" and not (1 <= self.sync_steps < self.finetune_steps and 0 < self.mixup_alpha <= 1):
            raise ValueError(
                f"TR-DPO needs 1 <= sync_steps < finetune_steps and 0 < mixup_alpha <= 1, got sync_steps={self.sync_steps}, "
                f"finetune_steps={self.finetune_steps}, mixup_alpha={self.mixup_alpha}: a reference never synced is plain DPO."
            )
        if self.context_size < 2:
            raise ValueError(f"context_size must be at least 2 tokens, got {self.context_size}.")
        for name, allowed in (("reward_scope", ("prefix+completion", "completion")), ("divergence_part", ("mlp", "block")), ("divergence_aggregate", ("l2", "sum_of_norms"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        if "{layer}" not in self.hook:
            raise ValueError(f"hook must contain '{{layer}}', got {self.hook!r}.")

    def finetune_key(self) -> dict[str, Any]:
        """The fields the tuned model depends on (and no others, so changing one of those retrains)."""
        names = ["recipe", "finetune_steps", "finetune_batch_size", "learning_rate", "seed"]
        names += {"rl": ["kl_beta", "reward_scope"], "dpo": ["dpo_beta"], "tr-dpo": ["dpo_beta", "mixup_alpha", "sync_steps"]}[self.recipe]
        return {k: getattr(self, k) for k in names}


def _finetune(base, tokenizer, data: FeedbackData, stage: Stage, cfg: LFPConfig):
    """The tuned model of ``stage``: reused when done, else trained from a copy of ``base``."""
    tuned_dir = stage.directory
    if stage.done():
        return load_causal_lm(tuned_dir)[0].eval()
    if cfg.recipe != "rl" and data.preferences is None:
        raise ValueError(f"Recipe {cfg.recipe!r} needs preference pairs; {data.name!r} has none.")
    stage.start()
    model = copy.deepcopy(base).train()
    checkpoints = tuned_dir / "checkpoints"  # TRL resumes from these after an interruption
    common = dict(output_dir=checkpoints, steps=cfg.finetune_steps, batch_size=cfg.finetune_batch_size, learning_rate=cfg.learning_rate, seed=cfg.seed)
    if cfg.recipe == "rl":
        result = sentiment_rl(model, tokenizer, list(data.prompts), beta=cfg.kl_beta, reward_scope=cfg.reward_scope, **common)
    else:
        trust_region = cfg.recipe == "tr-dpo"
        result = dpo(model, tokenizer, data.preferences, trust_region=trust_region, beta=cfg.dpo_beta, mixup_alpha=cfg.mixup_alpha, sync_steps=cfg.sync_steps, **common)
        if trust_region:  # the moving reference it ended with, for the record
            result.ref_model.save_pretrained(tuned_dir / "reference_model")
    result.model.save_pretrained(tuned_dir)
    tokenizer.save_pretrained(tuned_dir)
    write_json(tuned_dir / "finetune_log.json", result.log)
    shutil.rmtree(checkpoints)
    stage.finish()
    return result.model.eval()


class _Clock:
    """Wall-clock seconds per pipeline step, for the benchmark."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


def _base_dictionaries(stage: Stage, base: Any, tokens: TokenSet, hooks: Sequence[str], cfg: LFPConfig) -> list[tuple[SAE, SAE]]:
    """Per hook, an n-dictionary of the *base* model trained exactly as the tuned model's (same
    token rows, source and seed) and a control with another seed, reused when ``stage`` is done."""
    control_cfg = replace(cfg.dictionary, seed=cfg.dictionary.seed + 1000)
    if not stage.done():
        stage.start()
        # one pass over the base model for every hook (the activations path)
        collected = collect_activations(replace(tokens, model=base), hooks) if cfg.dictionary_source == "activations" else {}
        for hook in hooks:
            for name, config in (("n", cfg.dictionary), ("control", control_cfg)):
                out_dir = stage.directory / hook / name
                if cfg.dictionary_source == "activations":
                    acts = collected[hook]
                    train_dictionary(acts, acts.shape[1], hook_name=hook, config=config, model_name=base.cfg.model_name, out_dir=out_dir)
                else:
                    train_dictionary_on_model(base, token_dataset(tokens.tokens), hook, hook_width(base, hook), config=config, out_dir=out_dir)
        stage.finish()
    return [(SAE.load_from_disk(stage.directory / hook / "n"), SAE.load_from_disk(stage.directory / hook / "control")) for hook in hooks]


def _split(tokens: TokenSet) -> tuple[TokenSet, TokenSet]:
    """Rows to train the dictionaries on, and the last tenth (at least one row) to report their
    L0 and explained variance on."""
    if tokens.n_rows < 2:
        raise ValueError(f"The texts give {tokens.n_rows} row(s) of tokens; give more texts (dictionaries need rows to train on and rows to be judged on).")
    held = max(1, tokens.n_rows // 10)
    return tokens.subset(slice(0, tokens.n_rows - held)), tokens.subset(slice(tokens.n_rows - held, tokens.n_rows))


def run_lfp(
    model: str | Path | ModelRef,
    data: FeedbackData,
    out_dir: str | Path,
    cfg: LFPConfig | None = None,
    *,
    explainer: Explainer | None = None,
    relatedness: Relatedness | None = None,
) -> dict:
    """Run LFP on ``model`` with ``data``: part 1, then part 2 when ``data`` has triples.

    Writes ``out_dir/{tuned_model/ (with finetune_log.json), divergence.json,
    divergence.{html,png}, activations/, dictionaries/layer_L/{n,2n}/, part2.json,
    word_table.{csv,json}, preference_table.{csv,json}, part2_steps/, diffing/, summary.json,
    index.html}`` and PNG plots (``activations/`` only with ``dictionary_source="activations"``,
    the tables only with their triples). A rerun into the same
    ``out_dir`` reuses each step made from the same model, data and config, and redoes the rest.

    Returns:
        The summary: chosen layers, their divergence (and how it was aggregated), and per layer
        each dictionary's L0 and explained variance on held-out tokens (the last tenth of the
        rows, never trained on) and the overlap figures with the ranked shared features as
        indices into *each* dictionary; ``part2`` holds what ``part2.json`` holds.

    Raises:
        HubUnavailableError: a hub model that cannot be downloaded (e.g. offline).
        ValueError: an unknown model name (with close names), a bad config value, or a
            ``top_k`` above the model's number of layers (all before any training).
    """
    cfg = cfg or LFPConfig()
    ref, out = resolve_model(model), prepare_out_dir(out_dir)
    base, tokenizer = load_causal_lm(ref)
    n_layers = base.config.num_hidden_layers
    if cfg.top_k > n_layers:
        raise ValueError(f"top_k={cfg.top_k} but {ref.requested} has {n_layers} layers; choose top_k <= {n_layers}.")
    finetune = Stage.of(out / "tuned_model", {"model": ref.fingerprint(), "data": data.fingerprint(), "finetune": cfg.finetune_key()})
    clock = _Clock()
    tuned = _finetune(base, tokenizer, data, finetune, cfg)
    clock.lap("finetune")

    divergence = layer_divergence(base, tuned, part=cfg.divergence_part, aggregate=cfg.divergence_aggregate)
    layers = top_layers(divergence, cfg.top_k)
    method = {"part": cfg.divergence_part, "aggregate": cfg.divergence_aggregate}
    write_json(out / "divergence.json", {"divergence": divergence, "method": method, "top_layers": layers})
    plot_divergence(divergence, out / "divergence.html", top=layers)

    # Activations of the *tuned* model (the reference code read the base model's).
    hooked = hooked_from_hf(ref, tuned.float(), tokenizer, cls=HookedSAETransformer, model_name=cfg.model_name)
    hooks = [cfg.hook.format(layer=layer) for layer in layers]
    tokens, held_out = _split(TokenSet(hooked, pack_texts(tokenizer, list(data.texts), min(hooked.cfg.n_ctx, cfg.context_size))))
    source = {"tuned_model": finetune.key, "tokens": tokens.fingerprint()}
    if cfg.dictionary_source == "activations":
        collected = Stage.of(out / "activations", {**source, "hooks": hooks})
        if not collected.done():
            collected.start()
            save_activations(tokens, hooks, collected.directory)
            collected.finish()
        source = {"activations": collected.key}
    held_out_acts = collect_activations(held_out, hooks)
    clock.lap("divergence_and_activations")

    dictionaries, shared, dictionary_keys = [], [], []  # n-dictionaries, their top-overlap features (best first), their stages' keys
    summary = {
        "config": asdict(cfg), "model": ref.requested, "data": data.name, "top_layers": layers,
        "divergence": {str(k): v for k, v in divergence.items()}, "divergence_method": method, "layers": {},
    }
    for layer, hook in zip(layers, hooks):
        trained = Stage.of(out / "dictionaries" / f"layer_{layer}", {**source, "hook": hook, "dictionary": asdict(cfg.dictionary), "source": cfg.dictionary_source})
        if trained.done():
            small, large = SAE.load_from_disk(trained.directory / "n"), SAE.load_from_disk(trained.directory / "2n")
        else:
            trained.start()
            if cfg.dictionary_source == "activations":
                acts = load_activations(out / "activations", hook)[0]
                small, large = train_dictionary_pair(acts, hook_name=hook, config=cfg.dictionary, model_name=hooked.cfg.model_name, out_dir=trained.directory)
            else:
                small, large = train_dictionary_pair_on_model(hooked, token_dataset(tokens.tokens), hook, config=cfg.dictionary, out_dir=trained.directory)
            trained.finish()
        overlap = dictionary_overlap(small, large)
        dictionaries.append(small)
        dictionary_keys.append(trained.key)
        shared.append([int(i) for i in overlap.small_index])
        summary["layers"][str(layer)] = {
            "hook": hook,
            "d_in": small.cfg.d_in,
            "dictionaries": {name: dictionary_stats(sae, held_out_acts[hook]) for name, sae in (("n", small), ("2n", large))},
            "mean_max_cosine": overlap.mean_max_cosine,
            "mean_assigned_cosine": overlap.mean_assigned_cosine,
            "shared_features": [
                {"small_index": int(s), "large_index": int(l), "cosine": float(c)}
                for s, l, c in zip(overlap.small_index, overlap.large_index, overlap.cosine)
            ],
        }
    clock.lap("dictionaries")
    base_hooked = hooked_from_hf(ref, base.float(), tokenizer, model_name=cfg.model_name)
    if data.triples or data.preference_triples:
        validation = Validation(
            shared, held_out, list(data.prompts), get_reward("vader"), cfg.reward_scope,
            **{k: v for k, v in (("explainer", explainer), ("relatedness", relatedness)) if v is not None},
        )
        key = {"tuned": finetune.key, "base": ref.fingerprint(), "dictionaries": dictionary_keys}
        summary["part2"] = run_part2(
            hooked, base_hooked, dictionaries, data.triples, out, cfg.part2, validation, preference_triples=data.preference_triples, key=key
        )
    else:
        logger.info("%s brings no contrastive triples: part 2 (probes) skipped.", data.name)
    clock.lap("part2")
    if cfg.diffing:
        part2 = summary.get("part2", {})
        related = [[r["feature"] for r in part2.get("features", []) if r["layer"] == k and r["related"]] for k in range(len(layers))]
        attributed = (part2.get("attribution") or {}).get("top_features") or [[] for _ in layers]
        key = {"base_model": ref.fingerprint(), "tokens": tokens.fingerprint(), "hooks": hooks, "dictionary": asdict(cfg.dictionary), "source": cfg.dictionary_source}
        base_dicts = _base_dictionaries(Stage.of(out / "diffing", key), base_hooked, tokens, hooks, cfg)
        summary["model_diff"] = {
            str(layer): model_diff(b, tuned_n, control, related=rel, attributed=att)
            for layer, (b, control), tuned_n, rel, att in zip(layers, base_dicts, dictionaries, related, attributed)
        }
        clock.lap("model_diff")
    summary["seconds"] = clock.laps  # reused steps take about no time
    write_json(out / "summary.json", summary)
    write_lfp_report(out, summary)
    return summary
