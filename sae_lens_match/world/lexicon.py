"""The word classes the world's corpus is written with.

Every sentiment-bearing word of the corpus comes from the lexicon shipped inside the
``vaderSentiment`` package, with its mean human valence in [-4, 4]. The word lists
below only choose *which* lexicon entries fit a movie-review slot (an adjective after
"was", a verb after "I"); their valences are always read from the lexicon, and a word
missing from it is an error, not a silent default. Negations and intensifiers come
from VADER's own ``NEGATE`` list and ``BOOSTER_DICT``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from vaderSentiment import vaderSentiment as _vader

from sae_lens_match.sources.vader import vader_lexicon

WordRole = Literal["adj", "noun", "verb", "verb_base", "advice"]

# Ordered roughly by how often a reviewer uses them: the corpus samples with Zipf-like
# weights over this order, so common words are frequent and rare words still appear.
_POSITIVE_ADJECTIVES = """
good great excellent brilliant wonderful amazing beautiful perfect fun funny
fantastic enjoyable superb lovely nice impressive entertaining clever delightful
charming powerful stunning gorgeous engaging hilarious strong smart fresh inspiring
pleasant satisfying fabulous marvelous magnificent remarkable outstanding terrific
splendid awesome sweet elegant heartwarming admirable adorable creative thrilling
exciting intelligent interesting fascinating breathtaking honest sincere joyful
cheerful playful lively energetic confident ambitious brave bold rich flawless
wise graceful glorious cool compelling warm solid
""".split()

_NEGATIVE_ADJECTIVES = """
bad awful terrible boring horrible dull weak poor stupid disappointing
annoying ridiculous lame dumb pathetic painful ugly dreadful messy lazy confusing
awkward depressing useless worthless miserable irritating frustrating exhausting
embarrassing offensive disgusting nasty unpleasant incompetent obnoxious insulting
careless clueless mindless joyless humorless charmless heartless dreary dismal
hopeless shameful horrendous harsh grim cruel gloomy
""".split()

_POSITIVE_NOUNS = "masterpiece delight joy pleasure triumph treasure success winner".split()
_NEGATIVE_NOUNS = "mess disaster failure waste disappointment bore flop catastrophe".split()

# (past tense, base form): "I loved the music." / "I didn't love the music."
_POSITIVE_VERBS = [
    ("loved", "love"),
    ("enjoyed", "enjoy"),
    ("liked", "like"),
    ("adored", "adore"),
    ("admired", "admire"),
]
_NEGATIVE_VERBS = [
    ("hated", "hate"),
    ("disliked", "dislike"),
    ("despised", "despise"),
    ("loathed", "loathe"),
]

# "I would recommend it." / "I would avoid it."
_POSITIVE_ADVICE = ["recommend"]
_NEGATIVE_ADVICE = ["avoid"]

# Adjectives a reviewer uses without judging: absent from the lexicon, so VADER scores
# them 0. They are the neutral member of the contrastive triples of later LFP work.
NEUTRAL_ADJECTIVES: tuple[str, ...] = tuple(
    """
long short slow fast quiet loud dark colorful old new modern historical political
foreign simple unusual familiar black white silent recent typical animated
""".split()
)

_INTENSIFIERS = "very really extremely incredibly quite so totally utterly absolutely".split()
_DAMPENERS = "somewhat slightly barely kinda".split()
_NEGATIONS = ["not", "never"]


@dataclass(frozen=True)
class SentimentWord:
    """A lexicon word usable in one kind of slot.

    ``valence`` is VADER's mean rating in [-4, 4]; ``role`` is the slot kind.
    """

    word: str
    valence: float
    role: WordRole


@dataclass(frozen=True)
class Vocabulary:
    """The words of the world corpus, grouped by slot and polarity (+1 / -1)."""

    adjectives: dict[int, tuple[SentimentWord, ...]]
    nouns: dict[int, tuple[SentimentWord, ...]]
    verbs: dict[int, tuple[SentimentWord, ...]]
    verb_bases: dict[int, tuple[SentimentWord, ...]]
    advice: dict[int, tuple[SentimentWord, ...]]
    neutral_adjectives: tuple[str, ...]
    intensifiers: tuple[str, ...]
    dampeners: tuple[str, ...]
    negations: tuple[str, ...]

    def sentiment_words(self) -> tuple[SentimentWord, ...]:
        """Every sentiment word of the corpus, each once."""
        out: dict[str, SentimentWord] = {}
        for group in (self.adjectives, self.nouns, self.verbs, self.verb_bases, self.advice):
            for polarity in (1, -1):
                for w in group[polarity]:
                    out.setdefault(w.word, w)
        return tuple(out.values())


def _lookup(words: list[str], role: WordRole, polarity: int) -> tuple[SentimentWord, ...]:
    lexicon = vader_lexicon()
    out = []
    for word in words:
        if word not in lexicon:
            raise ValueError(f"world vocabulary word {word!r} is not in the VADER lexicon")
        valence = lexicon[word]
        if valence * polarity <= 0:
            raise ValueError(f"{word!r} has VADER valence {valence}, expected sign {polarity:+d}")
        out.append(SentimentWord(word, valence, role))
    return tuple(out)


def _check_vader_list(words: list[str], allowed: set[str] | dict[str, float], what: str) -> None:
    missing = [w for w in words if w not in allowed]
    if missing:
        raise ValueError(f"{what} {missing} are not in VADER's list")


@functools.lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    """Build the corpus vocabulary, checking every word against VADER.

    Raises ValueError if a sentiment word is missing from the lexicon or has the wrong
    sign, or if a neutral word has a valence.
    """
    lexicon = vader_lexicon()
    scored_neutral = [w for w in NEUTRAL_ADJECTIVES if w in lexicon]
    if scored_neutral:
        raise ValueError(f"neutral adjectives {scored_neutral} have a VADER valence")
    _check_vader_list(_INTENSIFIERS + _DAMPENERS, _vader.BOOSTER_DICT, "intensifiers")
    _check_vader_list(_NEGATIONS + ["didn't"], set(_vader.NEGATE), "negations")
    return Vocabulary(
        adjectives={
            1: _lookup(_POSITIVE_ADJECTIVES, "adj", 1),
            -1: _lookup(_NEGATIVE_ADJECTIVES, "adj", -1),
        },
        nouns={1: _lookup(_POSITIVE_NOUNS, "noun", 1), -1: _lookup(_NEGATIVE_NOUNS, "noun", -1)},
        verbs={
            1: _lookup([p for p, _ in _POSITIVE_VERBS], "verb", 1),
            -1: _lookup([p for p, _ in _NEGATIVE_VERBS], "verb", -1),
        },
        verb_bases={
            1: _lookup([b for _, b in _POSITIVE_VERBS], "verb_base", 1),
            -1: _lookup([b for _, b in _NEGATIVE_VERBS], "verb_base", -1),
        },
        advice={
            1: _lookup(_POSITIVE_ADVICE, "advice", 1),
            -1: _lookup(_NEGATIVE_ADVICE, "advice", -1),
        },
        neutral_adjectives=NEUTRAL_ADJECTIVES,
        intensifiers=tuple(_INTENSIFIERS),
        dampeners=tuple(_DAMPENERS),
        negations=tuple(_NEGATIONS),
    )
