"""Feature explanations and SAME / MAYBE / DIFFERENT judgements of matched features.

- :func:`top_activating_contexts`: a feature's top-activating contexts on a token set.
- Offline (default, no network): :class:`TopTokensExplainer`, :class:`ContextOverlapJudge`,
  heuristics whose ``source`` says ``"heuristic:..."``.
- Any OpenAI-compatible endpoint: :class:`ChatClient`, :class:`LLMExplainer`, :class:`LLMJudge`.
- :func:`judge_matching` / :func:`summarize_verdicts`: judge a sample of matched pairs.
"""

from sae_lens_match.explain.base import (
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
from sae_lens_match.explain.heuristic import ContextOverlapJudge, TopTokensExplainer
from sae_lens_match.explain.judge import LLMExplainer, LLMJudge, judge_matching, parse_label, summarize_verdicts
from sae_lens_match.explain.openai_client import (
    ChatClient,
    ChatConfigError,
    ChatError,
    ChatHTTPError,
    ChatResponseError,
    ChatUnreachableError,
)

__all__ = [
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
    "Judge",
    "LLMExplainer",
    "LLMJudge",
    "Label",
    "TopTokensExplainer",
    "Verdict",
    "judge_matching",
    "parse_label",
    "summarize_verdicts",
    "top_activating_contexts",
]
