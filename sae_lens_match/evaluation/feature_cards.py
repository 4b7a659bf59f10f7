"""Feature cards: what a report shows when a researcher clicks one feature of one SAE.

A card holds the feature's top-activating contexts with per-token activations
(:func:`~sae_lens_match.evaluation.explain.contexts.top_activating_contexts`), a histogram of
its positive activations, the output tokens its decoder row raises and lowers directly
through the unembedding, its explanation (with its source, ``"heuristic:..."`` or
``"llm:..."``) and a Neuronpedia link when SAELens knows the SAE's Neuronpedia id.
:meth:`FeatureCards.to_dict` is the compact JSON the report page reads; :func:`pair_verdicts`
judges the matched pairs of two SAEs' cards.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Sequence

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.evaluation.explain.contexts import (
    Explainer,
    Explanation,
    FeatureContexts,
    Judge,
    Verdict,
    _token_decoder,
    top_activating_contexts,
)
from sae_lens_match.matching.matching import Matching
from sae_lens_match.sources.activations import check_sae_fits, hidden_states
from sae_lens_match.sources.hooks import is_residual
from sae_lens_match.sources.tokens import TokenSet

logger = logging.getLogger(__name__)

NEURONPEDIA_URL = "https://www.neuronpedia.org"
# Elements of one [features, d_vocab] block of direct logits (64 MB in float32): d_sae x d_vocab
# at once would be gigabytes for a 16k-feature SAE on a 50k-token vocabulary.
_LOGIT_BLOCK = 1 << 24
# Hooks whose vectors are (or are added to) the residual stream, so W_dec @ W_U is a direct effect.
_WRITES_RESIDUAL = ("hook_attn_out", "hook_mlp_out")


@dataclass(frozen=True)
class FeatureCardConfig:
    """What a card holds.

    Attributes:
        k_contexts: top-activating contexts per feature.
        left, right: tokens before / after the max-activating token of each context.
        histogram_bins: equal-width bins over ``(0, max activation]`` of the feature's positive activations.
        top_logits: output tokens kept at each end (raised most, lowered most) of the direct logit effect.
        digits: significant digits kept for activations and logit values by :meth:`FeatureCards.to_dict`.
    """

    k_contexts: int = 5
    left: int = 8
    right: int = 3
    histogram_bins: int = 16
    top_logits: int = 6
    digits: int = 3

    def __post_init__(self) -> None:
        counts = {"k_contexts": self.k_contexts, "histogram_bins": self.histogram_bins, "top_logits": self.top_logits, "digits": self.digits}
        small = {name: value for name, value in counts.items() if value < 1}
        if small:
            raise ValueError(f"FeatureCardConfig values must be >= 1, got {small}.")
        if self.left < 0 or self.right < 0:
            raise ValueError(f"FeatureCardConfig.left and .right must be >= 0, got {self.left}, {self.right}.")


@dataclass(frozen=True)
class FeatureCard:
    """One feature's card.

    Attributes:
        feature: the feature index.
        frequency: fraction of evaluated (non-BOS) positions where it fires (activation > 0).
        max_activation: its largest activation on the data (0 if it never fires).
        contexts: its top-activating contexts, highest first.
        histogram_edges: ``histogram_bins + 1`` equal-width edges from 0 to ``max_activation``.
        histogram_counts: ``histogram_bins`` counts of its positive activations; bin ``i`` holds
            ``edges[i] <= a < edges[i + 1]``, the last bin also the maximum. They add up to
            ``frequency * n_positions``.
        top_logits: ``(token, logit)`` pairs its decoder row raises most through the unembedding,
            largest first; empty when the SAE's hook does not write to the residual stream.
        bottom_logits: ``(token, logit)`` pairs it lowers most, most negative first (empty likewise).
        explanation: the explainer's text and source, or ``None`` without an explainer.
    """

    feature: int
    frequency: float
    max_activation: float
    contexts: FeatureContexts
    histogram_edges: tuple[float, ...]
    histogram_counts: tuple[int, ...]
    top_logits: tuple[tuple[str, float], ...]
    bottom_logits: tuple[tuple[str, float], ...]
    explanation: Explanation | None


@dataclass(frozen=True)
class FeatureCards:
    """The cards of some features of one SAE, on one token set.

    Attributes:
        label: the SAE's name in the report (default: its hook name).
        hook: the hook the SAE reads.
        d_sae: the SAE's number of features.
        n_positions: evaluated (non-BOS) positions the statistics run over.
        neuronpedia_id: the SAE's Neuronpedia id (``sae.cfg.metadata.neuronpedia_id``, set by
            ``SAE.from_pretrained`` for releases Neuronpedia hosts), else ``None``.
        cards: one card per requested feature, in the requested order.
        config: what the cards hold; :meth:`to_dict` rounds to its ``digits``.
    """

    label: str
    hook: str
    d_sae: int
    n_positions: int
    neuronpedia_id: str | None
    cards: tuple[FeatureCard, ...]
    config: FeatureCardConfig = field(default_factory=FeatureCardConfig)

    @cached_property
    def _by_feature(self) -> dict[int, FeatureCard]:
        return {c.feature: c for c in self.cards}

    def card(self, feature: int) -> FeatureCard:
        """The card of ``feature``; ``KeyError`` if it has none."""
        try:
            return self._by_feature[int(feature)]
        except KeyError:
            raise KeyError(f"No card for feature {feature} of {self.label!r} ({len(self.cards)} features have cards).") from None

    def to_dict(self) -> dict[str, Any]:
        """The compact JSON of the report page.

        Token strings are stored once, in ``tokens``, and referenced by index (contexts and
        logits of thousands of features repeat the same few thousand tokens); floats keep
        ``config.digits`` significant digits.
        """
        index: dict[str, int] = {}
        ref = lambda token: index.setdefault(token, len(index))  # noqa: E731
        r = lambda x: _round(x, self.config.digits)  # noqa: E731
        features = []
        for c in self.cards:
            features.append(
                {
                    "feature": c.feature,
                    "frequency": r(c.frequency),
                    "max": r(c.max_activation),
                    "contexts": [
                        {"tokens": [ref(t) for t in e.tokens], "acts": [r(a) for a in e.activations], "center": e.center}
                        for e in c.contexts.examples
                    ],
                    "histogram": {"edges": [r(x) for x in c.histogram_edges], "counts": list(c.histogram_counts)},
                    "top_logits": [[ref(t), r(v)] for t, v in c.top_logits],
                    "bottom_logits": [[ref(t), r(v)] for t, v in c.bottom_logits],
                    "explanation": {"text": c.explanation.text, "source": c.explanation.source} if c.explanation else None,
                    "neuronpedia": neuronpedia_url(self.neuronpedia_id, c.feature),
                }
            )
        return {
            "label": self.label,
            "hook": self.hook,
            "d_sae": self.d_sae,
            "n_positions": self.n_positions,
            "neuronpedia_id": self.neuronpedia_id,
            "tokens": list(index),
            "features": features,
        }


def feature_cards(
    data: TokenSet,
    sae: SAE,
    config: FeatureCardConfig = FeatureCardConfig(),
    *,
    features: Sequence[int] | None = None,
    explainer: Explainer | None = None,
    label: str | None = None,
    progress: bool = True,
) -> FeatureCards:
    """Cards of ``features`` of ``sae`` on ``data``: contexts, histogram, direct logits, explanation.

    Two streaming passes over ``data``, each for all features at once: the top-activating
    contexts (which give each feature's maximum), then the histograms (whose bins need it).

    Args:
        data: model and tokens; ``sae`` reads its ``cfg.metadata.hook_name``.
        sae: the SAE.
        config: :class:`FeatureCardConfig`.
        features: distinct feature indices (default: all ``d_sae``).
        explainer: e.g. :class:`~sae_lens_match.evaluation.explain.heuristic.TopTokensExplainer`;
            ``None`` leaves explanations out.
        label: the SAE's name in the cards (default: its hook name).
        progress: progress bars (shown only if ``data.progress`` too).

    Raises:
        ValueError: a feature index out of range or repeated, or an SAE whose ``d_in`` is not
            the width of its hook.
    """
    d_sae = sae.cfg.d_sae
    chosen = list(range(d_sae)) if features is None else [int(f) for f in features]
    outside = [f for f in chosen if not 0 <= f < d_sae]
    if outside:
        raise ValueError(f"feature indices must lie in [0, {d_sae}); got {outside[:5]}.")
    if len(set(chosen)) != len(chosen):
        raise ValueError("features must be distinct (a card per feature).")
    if data.progress and not progress:
        data = replace(data, progress=False)
    hook = data.sae_hook(sae)
    label = label or hook
    neuronpedia_id = getattr(sae.cfg.metadata, "neuronpedia_id", None) or None
    if not chosen:
        return FeatureCards(label, hook, d_sae, data.n_positions(), neuronpedia_id, (), config)
    start = time.perf_counter()
    contexts = top_activating_contexts(data, sae, chosen, k=config.k_contexts, left=config.left, right=config.right, label=label)
    maxima = torch.tensor([c.examples[0].activation if c.examples else 0.0 for c in contexts])  # [F]
    counts = _positive_histograms(data, sae, hook, chosen, maxima, config.histogram_bins, label)  # [F, bins]
    edges = maxima[:, None] * torch.linspace(0.0, 1.0, config.histogram_bins + 1)  # [F, bins + 1]
    top, bottom = _direct_logits(data.model, sae, hook, chosen, config.top_logits)
    explanations: list[Explanation | None] = [None] * len(chosen)
    if explainer is not None:
        explanations = [explainer.explain(c) for c in tqdm(contexts, desc=f"explaining {label}", disable=not data.progress)]
    cards = tuple(
        FeatureCard(
            feature=f, frequency=ctx.frequency, max_activation=float(maxima[j]), contexts=ctx,
            histogram_edges=tuple(edges[j].tolist()), histogram_counts=tuple(counts[j].tolist()),
            top_logits=top[j], bottom_logits=bottom[j], explanation=explanations[j],
        )
        for j, (f, ctx) in enumerate(zip(chosen, contexts))
    )
    logger.info("feature cards of %s: %d features over %d positions in %.1fs", label, len(cards), contexts[0].n_positions, time.perf_counter() - start)
    return FeatureCards(label, hook, d_sae, contexts[0].n_positions, neuronpedia_id, cards, config)


def neuronpedia_url(neuronpedia_id: str | None, feature: int) -> str | None:
    """The Neuronpedia page of ``feature`` (``https://www.neuronpedia.org/{id}/{feature}``), or ``None`` without an id."""
    return f"{NEURONPEDIA_URL}/{neuronpedia_id}/{int(feature)}" if neuronpedia_id else None


def pair_verdicts(a: FeatureCards, b: FeatureCards, matching: Matching, judge: Judge) -> list[Verdict | None]:
    """The judge's verdict on each carded A feature and its match in B, from the cards' contexts and explanations.

    Args:
        a, b: cards of the matching's source and target SAEs, built on the same token set
            (context-overlap judges compare positions).
        matching: A -> B (its widths and recorded hook names are checked against the cards).
        judge: e.g. :class:`~sae_lens_match.evaluation.explain.heuristic.ContextOverlapJudge`.

    Returns:
        One entry per card of ``a``, in its order: ``None`` where the feature is unmatched
        (permutation ``-1``) or its match has no card in ``b``.

    Raises:
        ValueError: a matching of other SAEs, or a judge that compares explanations given cards without them.
    """
    if (matching.d_sae_a, matching.d_sae_b) != (a.d_sae, b.d_sae):
        raise ValueError(f"The matching is {matching.d_sae_a} -> {matching.d_sae_b} features but the cards are of {a.d_sae} -> {b.d_sae}.")
    for side, desc, cards in (("source", matching.source, a), ("target", matching.target, b)):
        if desc.get("hook_name") not in (None, cards.hook):
            raise ValueError(f"The matching's {side} reads {desc['hook_name']!r} but its cards are of {cards.hook!r}.")
    verdicts: list[Verdict | None] = []
    for card in a.cards:
        target = int(matching.permutation[card.feature])
        other = b._by_feature.get(target) if target >= 0 else None
        if other is None:
            verdicts.append(None)
            continue
        if judge.needs_explanations and (card.explanation is None or other.explanation is None):
            raise ValueError(f"Judge {judge.name!r} compares explanations: build both cards with an explainer.")
        verdicts.append(judge.judge(card.contexts, other.contexts, card.explanation, other.explanation))
    return verdicts


def _positive_histograms(data: TokenSet, sae: SAE, hook: str, features: list[int], maxima: torch.Tensor, bins: int, label: str) -> torch.Tensor:
    """``[F, bins]`` counts of each feature's positive activations in ``bins`` equal-width bins over ``(0, maxima[j]]``.

    One ``bincount`` per batch over the (position, feature) pairs that fire: never a Python loop over features.
    """
    device = sae.W_dec.device
    feats = torch.tensor(features, device=device)
    n_f = len(features)
    scale = torch.where(maxima > 0, bins / maxima.clamp(min=torch.finfo(torch.float32).tiny), 0.0).to(device)  # bins per unit activation
    counts = torch.zeros(n_f * bins, dtype=torch.long, device=device)
    with torch.no_grad():
        for acts, _ in hidden_states(data, [hook], desc=f"histograms {label}"):
            x = acts[hook]
            check_sae_fits(sae, x.shape[-1], hook)
            f = sae.encode(x)[:, feats].float()  # [n, F]
            fires = f > 0
            col = fires.nonzero()[:, 1]  # the feature of each firing (position, feature), row-major like f[fires]
            # a value at the maximum lands on `bins`; it belongs to the last (closed) bin
            bucket = (f[fires] * scale[col]).long().clamp_(max=bins - 1)
            counts += torch.bincount(col * bins + bucket, minlength=n_f * bins)
    return counts.view(n_f, bins).cpu()


def _direct_logits(model: Any, sae: SAE, hook: str, features: list[int], n: int) -> tuple[list[tuple[tuple[str, float], ...]], list[tuple[tuple[str, float], ...]]]:
    """Per feature, the ``n`` output tokens its decoder row raises most and lowers most.

    The direct effect ``W_dec[f] @ W_U`` (``[d_vocab]``), the top positive / negative logits
    Neuronpedia shows; it ignores the final LayerNorm's normalisation. It only means something
    for an SAE whose output is added to the residual stream, so other hooks get no logits.

    Returns:
        ``(top, bottom)``: per feature, ``(token, logit)`` pairs, largest first / most negative first.
    """
    W_U = model.W_U  # [d_model, d_vocab]
    if not (is_residual(hook) or hook.endswith(_WRITES_RESIDUAL)) or sae.cfg.d_in != W_U.shape[0]:
        logger.warning("SAE at %r does not write to the residual stream (d_in=%d, d_model=%d): its cards have no top logits.", hook, sae.cfg.d_in, W_U.shape[0])
        return [()] * len(features), [()] * len(features)
    decode = _token_decoder(model)
    n = min(n, W_U.shape[1])
    block = max(1, _LOGIT_BLOCK // W_U.shape[1])
    device = sae.W_dec.device
    W_U = W_U.detach().float().to(device)
    feats = torch.tensor(features, device=device)
    top: list[tuple[tuple[str, float], ...]] = []
    bottom: list[tuple[tuple[str, float], ...]] = []
    with torch.no_grad():
        for start in range(0, len(features), block):
            logits = sae.W_dec[feats[start : start + block]].float() @ W_U  # [block, d_vocab]
            for out, largest in ((top, True), (bottom, False)):
                values, ids = (v.cpu().tolist() for v in logits.topk(n, dim=1, largest=largest))
                out.extend(tuple((decode(t), v) for t, v in zip(row_ids, row_values)) for row_ids, row_values in zip(ids, values))
    return top, bottom


def _round(x: float, digits: int) -> float | int:
    """``x`` to ``digits`` significant digits (0 as the integer 0: most context activations are 0, and "0" is a third of "0.0")."""
    return float(f"{x:.{digits}g}") if x != 0 else 0
