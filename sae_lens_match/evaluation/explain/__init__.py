"""Feature explanations and SAME / MAYBE / DIFFERENT judgements of matched features.

- ``contexts.py``: the types and interfaces, and :func:`top_activating_contexts`.
- ``heuristic.py``: offline (no network) :class:`TopTokensExplainer` and
  :class:`ContextOverlapJudge`, heuristics whose ``source`` says ``"heuristic:..."``.
- ``client.py``, ``llm.py``: any OpenAI-compatible endpoint: :class:`ChatClient`,
  :class:`LLMExplainer`, :class:`LLMJudge`.
- ``judging.py``: :func:`judge_matching` / :func:`run_judging` judge a sample of matched
  pairs; :data:`JUDGES` names the judges.
"""

from sae_lens_match.evaluation.explain.client import (
    ChatClient,
    ChatConfigError,
    ChatError,
    ChatHTTPError,
    ChatResponseError,
    ChatUnreachableError,
)
from sae_lens_match.evaluation.explain.contexts import (
    LABELS,
    Example,
    Explainer,
    Explanation,
    FeatureContexts,
    Judge,
    Label,
    Verdict,
    top_activating_contexts,
)
from sae_lens_match.evaluation.explain.heuristic import ContextOverlapJudge, TopTokensExplainer
from sae_lens_match.evaluation.explain.judging import JUDGES, JudgementRow, JudgingConfig, judge_matching, run_judging, summarize_verdicts
from sae_lens_match.evaluation.explain.llm import LLMExplainer, LLMJudge, parse_label

__all__ = [
    "JUDGES",
    "LABELS",
    "ChatClient",
    "ChatConfigError",
    "ChatError",
    "ChatHTTPError",
    "ChatResponseError",
    "ChatUnreachableError",
    "ContextOverlapJudge",
    "Example",
    "Explainer",
    "Explanation",
    "FeatureContexts",
    "JudgementRow",
    "JudgingConfig",
    "Judge",
    "LLMExplainer",
    "LLMJudge",
    "Label",
    "TopTokensExplainer",
    "Verdict",
    "judge_matching",
    "parse_label",
    "run_judging",
    "summarize_verdicts",
    "top_activating_contexts",
]
