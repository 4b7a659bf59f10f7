"""LLM explainer and judge over a chat-completions endpoint (the paper's protocol).

Describe both features of a matched pair from their top-activating contexts, then ask a
language model whether the descriptions are the SAME feature, MAYBE the same, or DIFFERENT.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sae_lens_match.evaluation.explain.client import ChatClient, ChatHTTPError, ChatResponseError
from sae_lens_match.evaluation.explain.contexts import LABELS, Explanation, FeatureContexts, Label, Verdict

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
    :class:`~sae_lens_match.evaluation.explain.client.ChatUnreachableError`.
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
