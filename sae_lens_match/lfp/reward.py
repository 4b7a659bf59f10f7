"""Reward functions over texts, in a registry, and their adapter to TRL's ``reward_funcs``.

The paper's sentiment reward is ``clip(sum_token VADER(token) / 5, -10, 10)``: each token's
mean human valence from the VADER lexicon (in [-4, 4], 0 for words not in it), summed over
the text. Tokenisation (ours, documented because it changes the number): lower-cased, then
split into words (letters, digits, inner apostrophes: ``don't``) and runs of punctuation
(so emoticons such as ``:)`` score as VADER scores them). The paper used spaCy tokens;
words are the same, contractions may differ.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Literal, Sequence

from sae_lens_match.registry import Registry
from sae_lens_match.sources.vader import vader_lexicon

RewardFn = Callable[[Sequence[str]], list[float]]
"""Texts in, one float per text out."""

REWARDS: Registry[str, RewardFn] = Registry("reward")

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*|[^\sa-z0-9]+")


def register_reward(name: str, fn: RewardFn) -> None:
    """Register a reward function under ``name``."""
    REWARDS.register(name, fn)


def get_reward(name: str) -> RewardFn:
    """The reward registered as ``name`` (``ValueError`` listing the registered names otherwise)."""
    return REWARDS.get(name)


def vader_tokens(text: str) -> list[str]:
    """The tokens the VADER reward scores (see the module docstring)."""
    return _TOKEN.findall(text.lower())


def vader_reward(texts: Sequence[str], *, scale: float = 5.0, clip: float = 10.0) -> list[float]:
    """``clip(sum_token VADER(token) / scale, -clip, clip)`` for each text."""
    lexicon = vader_lexicon()
    out = []
    for text in texts:
        total = sum(lexicon.get(token, 0.0) for token in vader_tokens(text)) / scale
        out.append(max(-clip, min(clip, total)))
    return out


RewardScope = Literal["prefix+completion", "completion"]


def trl_reward(name_or_fn: str | RewardFn, scope: RewardScope = "prefix+completion") -> Callable[..., list[float]]:
    """Wrap a text reward for TRL's ``reward_funcs``.

    ``scope="prefix+completion"`` scores each prompt with its completion, as the LFP paper's
    reference code does; ``"completion"`` scores the completion alone. TRL calls reward
    functions as ``fn(prompts=..., completions=..., **columns)``; prompts and completions are
    strings for plain-text datasets, or lists of ``{"role", "content"}`` messages for
    conversational ones.
    """
    if scope not in ("prefix+completion", "completion"):
        raise ValueError(f"scope must be 'prefix+completion' or 'completion', got {scope!r}.")
    fn = get_reward(name_or_fn) if isinstance(name_or_fn, str) else name_or_fn

    def text(value: Any) -> str:
        return value if isinstance(value, str) else " ".join(m["content"] for m in value)

    def reward(completions: Sequence[Any], prompts: Sequence[Any] | None = None, **_: Any) -> list[float]:
        texts = [text(c) for c in completions]
        if scope == "prefix+completion":
            if prompts is None:
                raise ValueError("The prefix+completion reward needs the prompts; TRL passes them as prompts=...")
            # plain-text completions continue their prompt directly (no separator added)
            texts = [text(p) + (c if isinstance(p, str) else " " + c) for p, c in zip(prompts, texts)]
        return fn(texts)

    reward.__name__ = getattr(fn, "__name__", "reward")
    return reward


register_reward("vader", vader_reward)
