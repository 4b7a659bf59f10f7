"""Contrastive triples for LFP part 2 (paper §3.3): the same text with its sentiment word
swapped for a positive, a neutral and a negative word (:func:`contrastive_triples`), or a
preference pair's chosen and rejected answer with a neutral one between
(:func:`preference_triples`).

Rules for word swaps (the paper leaves them open):

- The swapped word is the first word of the text that is in one of the ``swaps`` lists (a
  VADER word of a known part of speech). VADER words of no listed part of speech are left
  alone, so a replacement always has the swapped word's part of speech.
- Its replacements are drawn (seeded, per text) from the same part of speech: a positive and a
  negative VADER word, and a neutral word that VADER does not score.
- The text is cut right after the swapped word. The model is causal, so the activations at
  the word do not depend on what follows; this keeps inputs short.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sae_lens_match.sources.vader import vader_lexicon

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


@dataclass(frozen=True)
class SwapWords:
    """Replacement words of one part of speech.

    Attributes:
        positive, negative: VADER words of that part of speech with valence > 0 / < 0.
        neutral: words of that part of speech that VADER does not score.
    """

    positive: tuple[str, ...]
    negative: tuple[str, ...]
    neutral: tuple[str, ...]

    def __post_init__(self) -> None:
        lexicon = vader_lexicon()
        for name, words, ok in (
            ("positive", self.positive, lambda v: v is not None and v > 0),
            ("negative", self.negative, lambda v: v is not None and v < 0),
            ("neutral", self.neutral, lambda v: v is None),
        ):
            if not words:
                raise ValueError(f"SwapWords needs at least one {name} word.")
            wrong = [w for w in words if not ok(lexicon.get(w.lower()))]
            if wrong:
                raise ValueError(f"{name} swap words {wrong[:5]} have the wrong VADER valence ({name} words must {'not be scored' if name == 'neutral' else 'have that sign'}).")


@dataclass(frozen=True)
class Triple:
    """One contrastive triple: ``texts[k]`` ends with ``words[k]`` (k = positive, neutral, negative).

    Attributes:
        texts: the positive, neutral and negative version, each cut after the swapped word.
        words: the word each version ends with.
        original: the word the source text had there.
        role: its part of speech (the ``swaps`` key).
    """

    texts: tuple[str, str, str]
    words: tuple[str, str, str]
    original: str
    role: str

    def span(self, k: int) -> tuple[int, int]:
        """Character span of the swapped word in ``texts[k]``."""
        return len(self.texts[k]) - len(self.words[k]), len(self.texts[k])


def contrastive_triples(texts: Sequence[str], swaps: Mapping[str, SwapWords], *, seed: int = 0) -> list[Triple]:
    """One triple per text that holds a swappable word (see the module docstring); others are skipped.

    Args:
        texts: source texts (IMDb reviews in the paper; the world's reviews offline).
        swaps: part of speech -> its replacement words, e.g. ``{"adj": SwapWords(...)}``.
        seed: seeds the choice of replacements (a text's choice depends only on it and its index).
    """
    if not swaps:
        raise ValueError("contrastive_triples needs at least one part of speech in swaps.")
    role_of = {w.lower(): role for role, s in swaps.items() for w in (*s.positive, *s.negative)}
    triples = []
    for index, text in enumerate(texts):
        found = next((m for m in _WORD.finditer(text) if m.group().lower() in role_of), None)
        if found is None:
            continue
        role = role_of[found.group().lower()]
        rng = random.Random(f"triples/{seed}/{index}")
        s = swaps[role]
        words = (rng.choice(s.positive), rng.choice(s.neutral), rng.choice(s.negative))
        prefix = text[: found.start()]
        triples.append(Triple(tuple(prefix + w for w in words), words, found.group(), role))  # type: ignore[arg-type]
    return triples


@dataclass(frozen=True)
class PreferenceTriple:
    """The chosen, a neutral and the rejected answer to one prompt, each as prompt + answer; the
    probes read their codes averaged over all tokens (the feedback is not tied to one word)."""

    texts: tuple[str, str, str]


_SPLIT_WORDS = re.compile(r"([A-Za-z][A-Za-z'-]*)")


def preference_triples(pairs: Any, neutral_words: Sequence[str], *, seed: int = 0) -> list[PreferenceTriple]:
    """One triple per preference pair (``prompt``, ``chosen``, ``rejected`` columns, e.g. a
    ``datasets.Dataset``).

    The neutral answer of a *minimal pair* (the two answers differ only in some words, the rest
    and the punctuation equal) is the chosen answer with each differing word replaced by one of
    ``neutral_words`` (seeded per pair). Other pairs get the prompt alone as the neutral text:
    the paper had an LLM write neutral rewrites, which needs a model this package cannot fetch.
    """
    if not neutral_words:
        raise ValueError("preference_triples needs at least one neutral word.")
    missing = {"prompt", "chosen", "rejected"} - set(pairs.column_names)
    if missing:
        raise ValueError(f"Preference pairs need columns prompt, chosen and rejected; missing {sorted(missing)}.")
    triples = []
    for index, (prompt, chosen, rejected) in enumerate(zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])):
        rng = random.Random(f"preference-triples/{seed}/{index}")
        a, b = _SPLIT_WORDS.split(chosen), _SPLIT_WORDS.split(rejected)
        minimal = len(a) == len(b) and a[0::2] == b[0::2] and a != b  # same separators, some words differ
        neutral = "".join(rng.choice(neutral_words) if k % 2 and x != y else x for k, (x, y) in enumerate(zip(a, b))) if minimal else ""
        triples.append(PreferenceTriple((prompt + chosen, prompt + neutral, prompt + rejected)))
    return triples
