"""LFP part 2 end to end: probes on the tuned model's contrastive codes, against the true
feedback, with the two comparisons that say what the figure means: an untrained Xavier probe
(the paper's baseline) and the *base* model's activations through the same dictionaries
(which the paper skipped; it shows what tuning changed).

- Word triples (VADER task): a linear probe of the activation deltas, judged per word against
  VADER (Kendall tau, sign accuracy). Words, not rows, are split into train and test, so a
  test word's value is never seen in fitting; the reported agreement is over the test words.
- Preference triples (HH / toxic tasks): a logistic probe of chosen against rejected codes,
  judged by its accuracy on held-out triples.
- With a :class:`Validation`: the top-overlap features are explained and labelled related or
  not; every feature's attribution to the reward is estimated without a probe
  (:mod:`~sae_lens_match.lfp.attribution`) and compared with the labels; the related and the
  most attributed features are checked by activation frequency and by ablation against random
  features (:mod:`~sae_lens_match.lfp.validation`).

Each costly step (codes, labels, attribution, ablation) is a
:class:`~sae_lens_match.stages.Stage` under ``out_dir/part2_steps/``: a rerun after an
interruption redoes only the steps not finished with the same models, data and config.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, save_file
from sae_lens import SAE

from sae_lens_match.atomic import atomic_path, write_json
from sae_lens_match.evaluation.explain.contexts import Explainer
from sae_lens_match.evaluation.explain.heuristic import TopTokensExplainer
from sae_lens_match.fingerprints import sha256_json, sha256_tensors
from sae_lens_match.lfp.attribution import attribution_agreement, reward_attribution, top_attributed
from sae_lens_match.lfp.contrastive import PreferenceTriple, Triple
from sae_lens_match.lfp.probes import (
    classification_accuracy,
    delta_dataset,
    feedback_agreement,
    fit_linear_probe,
    fit_logistic_probe,
    per_word,
    preference_dataset,
    text_codes,
    word_codes,
    xavier_probe,
)
from sae_lens_match.lfp.reward import RewardFn, RewardScope
from sae_lens_match.lfp.validation import Relatedness, VaderTokenRelatedness, ablation_effect, activation_frequency, related_features
from sae_lens_match.report.tables import write_table
from sae_lens_match.sources.tokens import TokenSet
from sae_lens_match.sources.vader import vader_lexicon
from sae_lens_match.stages import Stage

MODELS = ("tuned", "base", "xavier")


@dataclass(frozen=True)
class Part2Config:
    """How the probes are fitted and judged.

    Attributes:
        test_fraction: share of the words held out from fitting (the reported figures are theirs).
        ridge: ridge penalty of the linear probe (and of the logistic probe). 0 is the paper's plain least squares, which
            on the world fits the training words perfectly and held-out words at chance (rarely
            active features get huge weights that fit the deltas' noise); any ridge from 1 to
            1000 gives the same held-out figures there, so the default is 1.
        n_boot: bootstrap resamples (over test words, or prompts) for the 95 % intervals.
        seed: the word split, the Xavier baseline, the random ablations and the bootstrap.
        n_explained: top-overlap features explained per layer.
        frequency_threshold: Table 7's threshold on the predicted feedback.
        ablation_prompts, completion_tokens, n_random: the ablation's (and the attribution's)
            prefixes, completion length, and draws of random features for the control.
        attribution: estimate every feature's attribution to the reward, and ablate the most
            attributed features beside the related ones.
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
    attribution: bool = True

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


def split_items(n: int, test_fraction: float, seed: int) -> torch.Tensor:
    """``[n]`` bool, True for the seeded ``test_fraction`` of ``n`` items held out (at least 1, and 1 left to fit)."""
    n_test = max(1, round(n * test_fraction))
    if n < 2 or n_test >= n:
        raise ValueError(f"{n} preference triples are too few to hold out {n_test} and fit on the rest; give more pairs.")
    order = list(range(n))
    random.Random(f"item-split/{seed}").shuffle(order)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[:n_test]] = True
    return mask


@dataclass(frozen=True)
class _Steps:
    """Part 2's resumable steps: each a stage under ``directory`` keyed on ``key`` (the models and
    dictionaries) and the step's own inputs; its result is stored as JSON or safetensors and
    always returned as read back, so a first run and a rerun return the same thing."""

    directory: Path
    key: Any

    def run(self, name: str, inputs: dict[str, Any], compute: Callable[[], Any], *, tensors: bool = False) -> Any:
        stage = Stage.of(self.directory / name, {"models": self.key, **inputs})
        path = stage.directory / ("result.safetensors" if tensors else "result.json")
        if not stage.done():
            stage.start(resume=False)
            value = compute()
            if tensors:
                with atomic_path(path) as tmp:
                    save_file({k: v.contiguous() for k, v in value.items()}, str(tmp))
            else:
                write_json(path, value)
            stage.finish()
        return load_file(str(path)) if tensors else json.loads(path.read_text())


def run_part2(
    tuned: Any,
    base: Any,
    saes: Sequence[SAE],
    triples: Sequence[Triple],
    out_dir: str | Path,
    cfg: Part2Config | None = None,
    validation: Validation | None = None,
    *,
    preference_triples: Sequence[PreferenceTriple] = (),
    key: Any = None,
) -> dict[str, Any]:
    """Probe the tuned model (and the base model, and the Xavier baseline) on ``triples`` and
    ``preference_triples`` (at least one of them).

    Args:
        tuned, base: the tuned and the base model as TransformerLens models with tokenizers
            (the tuned one a ``HookedSAETransformer`` when ``validation`` ablates).
        saes: the n-dictionaries of the chosen layers (trained on the tuned model).
        triples: from :func:`~sae_lens_match.lfp.contrastive.contrastive_triples`.
        validation: explain, label, attribute, count and ablate (see :class:`Validation`);
            ``part2.json`` then also holds ``features``, ``attribution``,
            ``activation_frequency`` and ``ablation``.
        preference_triples: from :func:`~sae_lens_match.lfp.contrastive.preference_triples`.
        key: what identifies the models and dictionaries for resuming (the pipeline passes its
            stages' keys); default: a hash of their weights.

    Writes ``out_dir/part2.json`` (per model: ``kendall_tau``, ``kendall_p``,
    ``sign_accuracy_positive``, ``sign_accuracy_negative`` with intervals, over test words;
    ``preference`` per model: held-out ``accuracy``), ``out_dir/word_table.{csv,json}`` (one row
    per word: ``word``, ``split``, ``vader_value``, ``predicted_tuned``, ``predicted_base``,
    ``predicted_xavier``) and ``out_dir/preference_table.{csv,json}`` (one row per answer).

    Returns:
        What ``part2.json`` holds.
    """
    cfg = cfg or Part2Config()
    if not triples and not preference_triples:
        raise ValueError("run_part2 needs word triples or preference triples (or both).")
    out = Path(out_dir)
    if key is None:
        key = [sha256_tensors(m.state_dict()) for m in (tuned, base, *saes)]
    steps = _Steps(out / "part2_steps", key)
    texts = [list(t.texts) for t in triples], [list(t.texts) for t in preference_triples]

    def all_codes() -> dict[str, torch.Tensor]:
        codes = {}
        for name, model in (("tuned", tuned), ("base", base)):
            if triples:
                codes[f"words_{name}"] = word_codes(model, saes, triples)
            if preference_triples:
                flat = [text for t in preference_triples for text in t.texts]
                codes[f"preference_{name}"] = text_codes(model, saes, flat).view(len(preference_triples), 3, -1)
        return codes

    codes = steps.run("codes", {"texts": sha256_json(texts)}, all_codes, tensors=True)
    results: dict[str, Any] = {"config": asdict(cfg)}
    x = predicted = None
    if triples:
        word_results, x, predicted = _word_probes(codes, triples, cfg, out)
        results.update(word_results)
    if preference_triples:
        results["preference"] = _preference_probes(codes, cfg, out)
    if validation is not None:
        results.update(_validate(tuned, saes, validation, x, predicted, cfg, steps))
    write_json(out / "part2.json", results)
    return results


def _word_probes(codes: dict[str, torch.Tensor], triples: Sequence[Triple], cfg: Part2Config, out: Path) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """The VADER task's figures and word table; also the tuned probe's inputs and predictions."""
    lexicon = vader_lexicon()
    _, _, words = delta_dataset(codes["words_tuned"], triples)
    test = split_words(words, cfg.test_fraction, cfg.seed)
    is_test = torch.tensor([w in test for w in words])
    truth = {w: lexicon[w.lower()] for w in set(words)}
    scale_to = max(abs(truth[w]) for w in set(words) - test)

    predictions: dict[str, dict[str, float]] = {}
    row_predictions: dict[str, torch.Tensor] = {}
    for name in ("tuned", "base"):
        x, y, _ = delta_dataset(codes[f"words_{name}"], triples)
        train = ~is_test
        y = y * (scale_to / y[train].abs().max().clamp_min(1e-12))  # deltas in VADER's range
        probe = fit_linear_probe(x[train], y[train], ridge=cfg.ridge)
        row_predictions[name] = probe(x)
        predictions[name] = per_word(row_predictions[name], words)
    x, _, _ = delta_dataset(codes["words_tuned"], triples)
    predictions["xavier"] = per_word(xavier_probe(x.shape[1], cfg.seed)(x), words)

    results: dict[str, Any] = {"n_triples": len(triples), "n_words": len(truth), "n_test_words": len(test)}
    for name in MODELS:
        held_out = {w: v for w, v in predictions[name].items() if w in test}
        results[name] = feedback_agreement(held_out, truth, n_boot=cfg.n_boot, seed=cfg.seed)
    rows = [
        {"word": w, "split": "test" if w in test else "train", "vader_value": truth[w], **{f"predicted_{m}": predictions[m][w] for m in MODELS}}
        for w in sorted(truth)
    ]
    write_table(out, "word_table", rows)
    return results, x, row_predictions["tuned"]


def _preference_probes(codes: dict[str, torch.Tensor], cfg: Part2Config, out: Path) -> dict[str, Any]:
    """The preference tasks' figures (logistic probes, held-out triples) and their table."""
    n = len(codes["preference_tuned"])
    test = split_items(n, cfg.test_fraction, cfg.seed)
    held = torch.cat([test, test])  # each triple's chosen and rejected rows
    results: dict[str, Any] = {"n_triples": n, "n_test_triples": int(test.sum())}
    logits: dict[str, torch.Tensor] = {}
    for name in ("tuned", "base"):
        x, labels, deltas = preference_dataset(codes[f"preference_{name}"])
        logits[name] = fit_logistic_probe(x[~held], labels[~held], ridge=cfg.ridge)(x)
        results[name] = {
            **classification_accuracy(logits[name][held], labels[held], n_boot=cfg.n_boot, seed=cfg.seed),
            "mean_delta_chosen": float(deltas[:n].mean()), "mean_delta_rejected": float(deltas[n:].mean()),
        }
    x, labels, _ = preference_dataset(codes["preference_tuned"])
    logits["xavier"] = xavier_probe(x.shape[1], cfg.seed)(x)
    results["xavier"] = classification_accuracy(logits["xavier"][held], labels[held], n_boot=cfg.n_boot, seed=cfg.seed)
    rows = [
        {"triple": i % n, "answer": "chosen" if i < n else "rejected", "split": "test" if held[i] else "train", "label": int(labels[i]),
         **{f"logit_{m}": float(logits[m][i]) for m in MODELS}}
        for i in range(2 * n)
    ]
    write_table(out, "preference_table", rows)
    return results


def _validate(tuned: Any, saes: Sequence[SAE], v: Validation, x: torch.Tensor | None, predicted: torch.Tensor | None, cfg: Part2Config, steps: _Steps) -> dict[str, Any]:
    """Labels of the top-overlap features, the reward attribution, activation frequency and ablation."""
    chosen = [list(s)[: cfg.n_explained] for s in v.shared]
    label_inputs = {"contexts": v.contexts.fingerprint(), "chosen": chosen, "explainer": v.explainer.name, "judge": v.relatedness.name}
    rows = steps.run("labels", label_inputs, lambda: related_features(v.contexts, saes, chosen, v.explainer, v.relatedness))
    related = [[r["feature"] for r in rows if r["layer"] == layer and r["related"]] for layer in range(len(saes))]
    out: dict[str, Any] = {"features": rows, "activation_frequency": None, "attribution": None, "ablation": None}
    if x is not None and predicted is not None:
        offsets = [sum(sae.cfg.d_sae for sae in saes[:layer]) for layer in range(len(saes))]
        columns = [offsets[layer] + f for layer, fs in enumerate(related) for f in fs]
        out["activation_frequency"] = activation_frequency(x, predicted, columns, threshold=cfg.frequency_threshold)
    prompts = list(v.prompts)[: cfg.ablation_prompts]
    if len(prompts) < 2:
        return out  # no prompts to complete: nothing to attribute or ablate
    sampling = {"prompts": prompts, "reward": getattr(v.reward, "__qualname__", repr(v.reward)), "scope": v.reward_scope, "tokens": cfg.completion_tokens, "seed": cfg.seed}
    with_prompt = v.reward_scope == "prefix+completion"
    groups: dict[str, list[list[int]]] = {"related": related} if any(related) else {}
    if cfg.attribution:
        scores = steps.run(
            "attribution", sampling,
            lambda: {str(k): a for k, a in enumerate(reward_attribution(tuned, saes, prompts, v.reward, max_new_tokens=cfg.completion_tokens, seed=cfg.seed, with_prompt=with_prompt))},
            tensors=True,
        )
        attribution = [scores[str(k)] for k in range(len(saes))]
        groups["attributed"] = top_attributed(attribution, sum(map(len, related)) or cfg.n_explained)
        out["attribution"] = {
            "method": "score-function gradient x activation of completion log-likelihood, weighted by reward advantage",
            "top_features": groups["attributed"],
            "agreement_related": attribution_agreement(attribution, related),
            "agreement_top_overlap": attribution_agreement(attribution, chosen),
            "per_dictionary": [{"max": float(a.max()), "min": float(a.min()), "mean_abs": float(a.abs().mean())} for a in attribution],
        }
    if groups:
        out["ablation"] = steps.run(
            "ablation", {**sampling, "groups": groups, "n_random": cfg.n_random, "n_boot": cfg.n_boot},
            lambda: ablation_effect(tuned, saes, groups, prompts, v.reward, n_random=cfg.n_random, max_new_tokens=cfg.completion_tokens,
                                    n_boot=cfg.n_boot, seed=cfg.seed, with_prompt=with_prompt),
        )
    return out
