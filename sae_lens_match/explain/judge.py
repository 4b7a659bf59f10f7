"""LLM explainer and judge over a chat-completions endpoint, and judging a whole matching.

The paper's protocol: describe both features of a matched pair from their top-activating
contexts, then ask a language model whether the descriptions are the SAME feature,
MAYBE the same, or DIFFERENT. :func:`judge_matching` runs it on a sample of pairs with any
:class:`~sae_lens_match.explain.base.Explainer` / :class:`~sae_lens_match.explain.base.Judge`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.evaluation.data import TokenSet
from sae_lens_match.explain.base import LABELS, Explainer, Explanation, FeatureContexts, Judge, Label, Verdict, top_activating_contexts
from sae_lens_match.explain.openai_client import ChatClient, ChatHTTPError, ChatResponseError
from sae_lens_match.matching import Matching

EXPLAIN_SYSTEM = (
    "You are an interpretability researcher. You are shown text excerpts on which one feature of a "
    "language model's sparse autoencoder activates; the token where it activates most is marked "
    "<<like this>>. Describe in one short sentence what the feature detects. Answer with the "
    "description only."
)
JUDGE_SYSTEM = (
    "You compare two features of a language model, each given by a short description. Decide whether "
    "they describe the SAME concept, MAYBE the same (overlapping or related), or DIFFERENT concepts. "
    'Answer with JSON only: {"label": "SAME" | "MAYBE" | "DIFFERENT", "reason": "<one sentence>"}'
)


def parse_label(text: str) -> tuple[Label | None, str]:
    """Read a SAME / MAYBE / DIFFERENT label from a judge's answer.

    Accepts a JSON object with a ``label`` field (also inside a Markdown code fence or
    surrounded by text), else a single label word in the text. Returns ``(None, why)``
    when there is no label or the text names several different ones.

    Returns:
        ``(label, reason)``.
    """
    for candidate in _json_objects(text):
        label = str(candidate.get("label", "")).strip().upper()
        if label in LABELS:
            return label, str(candidate.get("reason", "")).strip()  # type: ignore[return-value]
    found = {w for w in re.findall(r"\b(SAME|MAYBE|DIFFERENT)\b", text.upper())}
    if len(found) == 1:
        return found.pop(), text.strip()  # type: ignore[return-value]
    if not found:
        return None, "no SAME/MAYBE/DIFFERENT label in the answer"
    return None, f"ambiguous answer naming {sorted(found)}"


def _json_objects(text: str) -> list[dict[str, Any]]:
    out = []
    for match in re.finditer(r"\{[^{}]*\}", text, flags=re.S):
        try:
            value = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def format_contexts(contexts: FeatureContexts, max_examples: int = 10) -> str:
    """The user message for the explainer: numbered excerpts with the max token marked."""
    lines = [f"Excerpt {i + 1} (activation {e.activation:.3g}): {e.text()}" for i, e in enumerate(contexts.examples[:max_examples])]
    return "\n".join(lines) + f"\n\nThe feature fires on {contexts.frequency:.2%} of tokens."


@dataclass
class LLMExplainer:
    """Explains a feature with a chat model from its top-activating contexts."""

    client: ChatClient
    max_examples: int = 10
    temperature: float = 0.0

    @property
    def name(self) -> str:
        return f"llm:{self.client.model}"

    def explain(self, contexts: FeatureContexts) -> Explanation:
        if not contexts.examples:
            return Explanation("never fires on this data", f"{self.name} (not asked: no contexts)")
        messages = [{"role": "system", "content": EXPLAIN_SYSTEM}, {"role": "user", "content": format_contexts(contexts, self.max_examples)}]
        text = self.client.complete(messages, temperature=self.temperature)
        return Explanation(text.strip(), self.name)


@dataclass
class LLMJudge:
    """Labels a pair of explained features with a chat model (paper protocol).

    A malformed response (not a chat completion, or no parseable label) yields a
    :class:`Verdict` with ``label=None`` and the reason in ``error``, so one bad answer does
    not stop a run; an unreachable endpoint raises
    :class:`~sae_lens_match.explain.openai_client.ChatUnreachableError`.
    """

    client: ChatClient
    temperature: float = 0.0
    needs_explanations: bool = True

    @property
    def name(self) -> str:
        return f"llm:{self.client.model}"

    def judge(
        self,
        a: FeatureContexts,
        b: FeatureContexts,
        explanation_a: Explanation | None = None,
        explanation_b: Explanation | None = None,
    ) -> Verdict:
        if explanation_a is None or explanation_b is None:
            raise ValueError("LLMJudge compares descriptions: pass explanation_a and explanation_b.")
        if not a.examples or not b.examples:
            return Verdict(None, self.name, error="a feature never fired on this data; nothing to compare")
        prompt = f"Feature A: {explanation_a.text}\nFeature B: {explanation_b.text}"
        messages = [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": prompt}]
        try:
            text = self.client.complete(messages, temperature=self.temperature)
        except (ChatResponseError, ChatHTTPError) as err:
            return Verdict(None, self.name, error=f"{type(err).__name__}: {err}")
        label, reason = parse_label(text)
        if label is None:
            return Verdict(None, self.name, error=f"unparseable answer: {reason}", raw=text)
        return Verdict(label, self.name, reason=reason, raw=text)


def judge_matching(
    data: TokenSet,
    sae_a: SAE,
    sae_b: SAE,
    matching: Matching,
    judge: Judge,
    *,
    explainer: Explainer | None = None,
    features: Sequence[int] | None = None,
    n_features: int = 20,
    seed: int = 0,
    k: int = 10,
) -> list[dict[str, Any]]:
    """Judge matched pairs: top contexts of both features, explanations, then a verdict.

    Args:
        data: model and tokens (both SAEs' contexts come from the same tokens).
        sae_a, sae_b, matching: the pairs to judge (``matching`` maps A to B).
        judge: e.g. :class:`LLMJudge` or the offline
            :class:`~sae_lens_match.explain.heuristic.ContextOverlapJudge`.
        explainer: needed when ``judge.needs_explanations``; also recorded otherwise.
        features: A features to judge (default: ``n_features`` matched ones drawn with ``seed``).
        k: top contexts per feature.

    Returns:
        One row per pair: ``feature_a``, ``feature_b``, ``cost``, ``label``, ``judge``,
        ``reason``, ``error``, ``score``, ``explanation_a``/``_b`` and their ``explainer``.
    """
    if judge.needs_explanations and explainer is None:
        raise ValueError(f"Judge {judge.name!r} compares explanations: pass an explainer.")
    if matching.d_sae_a != sae_a.cfg.d_sae or matching.d_sae_b != sae_b.cfg.d_sae:
        raise ValueError(f"Matching is {matching.d_sae_a} -> {matching.d_sae_b} features but the SAEs have {sae_a.cfg.d_sae} -> {sae_b.cfg.d_sae}.")
    if features is None:
        candidates = matching.matched.nonzero().squeeze(1)
        g = torch.Generator().manual_seed(seed)
        features = candidates[torch.randperm(candidates.numel(), generator=g)[:n_features]].sort().values.tolist()
    features = [int(f) for f in features]
    unmatched = [f for f in features if matching.permutation[f] < 0]
    if unmatched:
        raise ValueError(f"A features {unmatched[:5]} have no match; judge matched features only.")
    targets = [int(matching.permutation[f]) for f in features]
    ctx_a = top_activating_contexts(data, sae_a, features, k=k, label="A")
    ctx_b = top_activating_contexts(data, sae_b, targets, k=k, label="B")
    rows = []
    for fa, fb, ca, cb in tqdm(list(zip(features, targets, ctx_a, ctx_b)), desc=f"judging ({judge.name})", disable=not data.progress):
        ea = explainer.explain(ca) if explainer is not None else None
        eb = explainer.explain(cb) if explainer is not None else None
        verdict = judge.judge(ca, cb, ea, eb)
        rows.append(
            {
                "feature_a": fa,
                "feature_b": fb,
                "cost": float(matching.cost[fa]),
                "label": verdict.label,
                "judge": verdict.source,
                "reason": verdict.reason,
                "error": verdict.error,
                "score": verdict.score,
                "explanation_a": ea.text if ea else None,
                "explanation_b": eb.text if eb else None,
                "explainer": ea.source if ea else None,
                "frequency_a": ca.frequency,
                "frequency_b": cb.frequency,
            }
        )
    return rows


def summarize_verdicts(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Fractions of SAME / MAYBE / DIFFERENT among labelled pairs, plus counts and who judged."""
    labels = Counter(r["label"] for r in rows)
    labelled = sum(labels[l] for l in LABELS)
    judges = sorted({r["judge"] for r in rows})
    return {
        "judge": ", ".join(judges),
        "heuristic": all(j.startswith("heuristic:") for j in judges),
        "n_pairs": len(rows),
        "n_labelled": labelled,
        "n_unlabelled": len(rows) - labelled,
        **{f"frac_{l.lower()}": (labels[l] / labelled if labelled else float("nan")) for l in LABELS},
    }
