"""LFP part 2 end to end: probes on the tuned model's contrastive codes, against VADER, with the
two comparisons that say what the figure means: an untrained Xavier probe (the paper's
baseline) and the *base* model's activations through the same dictionaries (which the paper
skipped; it shows what tuning changed).

Words, not rows, are split into train and test, so a test word's value is never seen in
fitting; the reported agreement is over the test words. With a :class:`Validation`, the
top-overlap features are explained and labelled related or not, and the related ones are
checked by their activation frequency and by ablation (:mod:`~sae_lens_match.lfp.validation`).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from sae_lens import SAE

from sae_lens_match.atomic import write_json
from sae_lens_match.evaluation.explain.contexts import Explainer
from sae_lens_match.evaluation.explain.heuristic import TopTokensExplainer
from sae_lens_match.lfp.contrastive import Triple
from sae_lens_match.lfp.probes import delta_dataset, feedback_agreement, fit_linear_probe, per_word, word_codes, xavier_probe
from sae_lens_match.lfp.reward import RewardFn, RewardScope
from sae_lens_match.lfp.validation import Relatedness, VaderTokenRelatedness, ablation_effect, activation_frequency, related_features
from sae_lens_match.report.tables import write_table
from sae_lens_match.sources.tokens import TokenSet
from sae_lens_match.sources.vader import vader_lexicon

MODELS = ("tuned", "base", "xavier")


@dataclass(frozen=True)
class Part2Config:
    """How the probes are fitted and judged.

    Attributes:
        test_fraction: share of the words held out from fitting (the reported figures are theirs).
        ridge: ridge penalty of the linear probe. 0 is the paper's plain least squares, which
            on the world fits the training words perfectly and held-out words at chance (rarely
            active features get huge weights that fit the deltas' noise); any ridge from 1 to
            1000 gives the same held-out figures there, so the default is 1.
        n_boot: bootstrap resamples (over test words, or prompts) for the 95 % intervals.
        seed: the word split, the Xavier baseline, the random ablations and the bootstrap.
        n_explained: top-overlap features explained per layer.
        frequency_threshold: Table 7's threshold on the predicted feedback.
        ablation_prompts, completion_tokens, n_random: the ablation's prefixes, completion
            length, and draws of random features for the control.
    """

    test_fraction: float = 0.3
    ridge: float = 1.0
    n_boot: int = 1000
    seed: int = 0
    n_explained: int = 20
    frequency_threshold: float = 3.0
    ablation_prompts: int = 64
    completion_tokens: int = 24
    n_random: int = 3

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}.")
        if self.ridge < 0 or self.n_boot < 1:
            raise ValueError(f"Need ridge >= 0 and n_boot >= 1, got {self.ridge}, {self.n_boot}.")


@dataclass(frozen=True)
class Validation:
    """What the validation steps need.

    Attributes:
        shared: per layer, the n-dictionary's top-overlap features, best first.
        contexts: tokens (on the tuned model) to find each feature's top-activating contexts on.
        prompts: prefixes whose completions are rewarded before and after ablation (none: no ablation).
        reward, reward_scope: the fine-tuning reward, and whether it scores the prefix too.
        explainer, relatedness: who explains a feature and who labels it related
            (default: the offline heuristics, labelled as such).
    """

    shared: Sequence[Sequence[int]]
    contexts: TokenSet
    prompts: Sequence[str]
    reward: RewardFn
    reward_scope: RewardScope = "prefix+completion"
    explainer: Explainer = field(default_factory=TopTokensExplainer)
    relatedness: Relatedness = field(default_factory=VaderTokenRelatedness)


def split_words(words: Sequence[str], test_fraction: float, seed: int) -> set[str]:
    """The test words: a seeded ``test_fraction`` of the distinct ``words`` (at least 3)."""
    distinct = sorted(set(words))
    random.Random(f"word-split/{seed}").shuffle(distinct)
    n_test = max(3, round(len(distinct) * test_fraction))
    if n_test >= len(distinct):
        raise ValueError(f"{len(distinct)} distinct words are too few to hold out {n_test} and fit on the rest; give more texts.")
    return set(distinct[:n_test])


def run_part2(
    tuned: Any,
    base: Any,
    saes: Sequence[SAE],
    triples: Sequence[Triple],
    out_dir: str | Path,
    cfg: Part2Config | None = None,
    validation: Validation | None = None,
) -> dict[str, Any]:
    """Probe the tuned model (and the base model, and the Xavier baseline) on ``triples``.

    Args:
        tuned, base: the tuned and the base model as TransformerLens models with tokenizers
            (the tuned one a ``HookedSAETransformer`` when ``validation`` ablates).
        saes: the n-dictionaries of the chosen layers (trained on the tuned model).
        triples: from :func:`~sae_lens_match.lfp.contrastive.contrastive_triples`.
        validation: explain, label, count and ablate the top-overlap features (see
            :class:`Validation`); ``part2.json`` then also holds ``features``,
            ``activation_frequency`` and ``ablation``.

    Writes ``out_dir/part2.json`` (per model: ``kendall_tau``, ``kendall_p``,
    ``sign_accuracy_positive``, ``sign_accuracy_negative`` with intervals, over test words) and
    ``out_dir/word_table.{csv,json}`` (one row per word: ``word``, ``split``, ``vader_value``,
    ``predicted_tuned``, ``predicted_base``, ``predicted_xavier``).

    Returns:
        What ``part2.json`` holds.
    """
    cfg = cfg or Part2Config()
    lexicon = vader_lexicon()
    codes = {"tuned": word_codes(tuned, saes, triples), "base": word_codes(base, saes, triples)}
    _, _, words = delta_dataset(codes["tuned"], triples)
    test = split_words(words, cfg.test_fraction, cfg.seed)
    is_test = torch.tensor([w in test for w in words])
    truth = {w: lexicon[w.lower()] for w in set(words)}
    scale_to = max(abs(truth[w]) for w in set(words) - test)

    predictions: dict[str, dict[str, float]] = {}
    row_predictions: dict[str, torch.Tensor] = {}
    for name in ("tuned", "base"):
        x, y, _ = delta_dataset(codes[name], triples)
        train = ~is_test
        y = y * (scale_to / y[train].abs().max().clamp_min(1e-12))  # deltas in VADER's range
        probe = fit_linear_probe(x[train], y[train], ridge=cfg.ridge)
        row_predictions[name] = probe(x)
        predictions[name] = per_word(row_predictions[name], words)
    x, _, _ = delta_dataset(codes["tuned"], triples)
    predictions["xavier"] = per_word(xavier_probe(x.shape[1], cfg.seed)(x), words)

    results: dict[str, Any] = {"config": asdict(cfg), "n_triples": len(triples), "n_words": len(truth), "n_test_words": len(test)}
    for name in MODELS:
        held_out = {w: v for w, v in predictions[name].items() if w in test}
        results[name] = feedback_agreement(held_out, truth, n_boot=cfg.n_boot, seed=cfg.seed)
    if validation is not None:
        results.update(_validate(tuned, saes, validation, delta_dataset(codes["tuned"], triples)[0], row_predictions["tuned"], cfg))
    out = Path(out_dir)
    write_json(out / "part2.json", results)
    rows = [
        {"word": w, "split": "test" if w in test else "train", "vader_value": truth[w], **{f"predicted_{m}": predictions[m][w] for m in MODELS}}
        for w in sorted(truth)
    ]
    write_table(out, "word_table", rows)
    return results


def _validate(tuned: Any, saes: Sequence[SAE], v: Validation, x: torch.Tensor, predicted: torch.Tensor, cfg: Part2Config) -> dict[str, Any]:
    """Explanations and labels of the top-overlap features, their activation frequency, and the ablation."""
    chosen = [list(s)[: cfg.n_explained] for s in v.shared]
    rows = related_features(v.contexts, saes, chosen, v.explainer, v.relatedness)
    related = [[r["feature"] for r in rows if r["layer"] == layer and r["related"]] for layer in range(len(saes))]
    offsets = [sum(sae.cfg.d_sae for sae in saes[:layer]) for layer in range(len(saes))]
    columns = [offsets[layer] + f for layer, fs in enumerate(related) for f in fs]
    out: dict[str, Any] = {
        "features": rows,
        "activation_frequency": activation_frequency(x, predicted, columns, threshold=cfg.frequency_threshold),
    }
    if not columns or not v.prompts:
        out["ablation"] = None  # nothing labelled related, or no prompts to complete
        return out
    prompts = list(v.prompts)[: cfg.ablation_prompts]
    out["ablation"] = ablation_effect(
        tuned, saes, related, prompts, v.reward, n_random=cfg.n_random, max_new_tokens=cfg.completion_tokens, n_boot=cfg.n_boot,
        seed=cfg.seed, with_prompt=v.reward_scope == "prefix+completion",
    )
    return out
