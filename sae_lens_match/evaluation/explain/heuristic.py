"""Offline explainer and judge: rules on top-activating contexts, no network, no language model.

These are heuristics, and say so: their ``source`` is ``"heuristic:..."``, never ``"llm:..."``.
They are useful as a fast, reproducible sanity check and as the default when no LLM
endpoint is configured; they are not the paper's LLM judgement.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sae_lens_match.evaluation.explain.contexts import Explanation, FeatureContexts, Label, Verdict


@dataclass
class TopTokensExplainer:
    """Describes a feature by the tokens it fires most strongly on and how often it fires.

    Example output: ``"top tokens: ' great' (4/10), ' good' (3/10); fires on 1.2% of tokens"``.
    """

    n_tokens: int = 5
    name: str = "heuristic:top-tokens"

    def explain(self, contexts: FeatureContexts) -> Explanation:
        if not contexts.examples:
            return Explanation("never fires on this data", self.name)
        counts = Counter(contexts.top_tokens).most_common(self.n_tokens)
        n = len(contexts.examples)
        tokens = ", ".join(f"{t!r} ({c}/{n})" for t, c in counts)
        return Explanation(f"top tokens: {tokens}; fires on {contexts.frequency:.2%} of tokens", self.name)


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


@dataclass
class ContextOverlapJudge:
    """Labels a pair by how much the two features' top-activating contexts overlap.

    ``score = max(position overlap, token overlap)`` where position overlap is the Jaccard
    index of the two sets of (row, position) maxima (both features must have been collected
    on the same token set, as :func:`~sae_lens_match.evaluation.explain.judging.run_judging` does) and
    token overlap is the Jaccard index of the two sets of max-activating token strings.
    ``SAME`` if ``score >= same``, ``MAYBE`` if ``score >= maybe``, else ``DIFFERENT``; no
    label when either feature never fired.
    """

    same: float = 0.5
    maybe: float = 0.2
    name: str = "heuristic:context-overlap"
    needs_explanations: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.maybe <= self.same <= 1.0:
            raise ValueError(f"need 0 <= maybe <= same <= 1, got maybe={self.maybe}, same={self.same}.")

    def judge(
        self,
        a: FeatureContexts,
        b: FeatureContexts,
        explanation_a: Explanation | None = None,
        explanation_b: Explanation | None = None,
    ) -> Verdict:
        if not a.examples or not b.examples:
            return Verdict(None, self.name, error="a feature never fired on this data; nothing to compare")
        positions = _jaccard({(e.row, e.position) for e in a.examples}, {(e.row, e.position) for e in b.examples})
        tokens = _jaccard(set(a.top_tokens), set(b.top_tokens))
        score = max(positions, tokens)
        label: Label = "SAME" if score >= self.same else "MAYBE" if score >= self.maybe else "DIFFERENT"
        reason = f"top-context position overlap {positions:.2f}, top-token overlap {tokens:.2f}"
        return Verdict(label, self.name, reason=reason, score=score)
