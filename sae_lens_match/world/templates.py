"""Sentence templates of the world corpus and the renderer that records word spans.

A template is a plain string with ``{slot}`` fields. Sentiment slots name a word class
and a polarity *relative to the sentence*: ``{adj+}`` takes an adjective agreeing with
the sentence's sentiment, ``{adj-}`` one of the opposite sign (used after a negation,
"was not {adj-}", or in the second half of a mixed sentence). Other slots are neutral
fillers (``{aspect}``, ``{title}``, ...). ``{a}`` becomes "a" or "an" from the next word.

``render_template`` is public so that later work (contrastive triples for Learned
Feedback Patterns) can put a chosen word into a chosen template and know exactly where
the word sits in the text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sae_lens_match.world.lexicon import SentimentWord

# Sentiment slot names -> (word class, relative polarity).
SENTIMENT_SLOTS: dict[str, tuple[str, int]] = {
    f"{cls}{sign}": (cls, polarity)
    for cls in ("adj", "adj2", "adj3", "noun", "verb", "vbase", "advice")
    for sign, polarity in (("+", 1), ("-", -1))
}

_FIELD = re.compile(r"\{([a-z0-9_]+[+-]?)\}")

# Opinion sentences: their sentiment is the sentence polarity p.
OPINION_TEMPLATES: tuple[str, ...] = (
    "The {aspect} was {adj+}.",
    "The {aspect} was {adj+} and {adj2+}.",
    "The {aspect} is {adj+}, {adj2+} and {adj3+}.",
    "It is {a} {adj+}, {adj2+} {film}.",
    "{adj+}, {adj2+} and {boost} {adj3+}.",
    "The {aspect} was {adj+}, {boost} {adj2+}.",
    "The {aspect} is {adj+}.",
    "The {aspect} was {boost} {adj+}.",
    "The {aspect} is {boost} {adj+}.",
    "I thought the {aspect} was {adj+}.",
    "I found the {aspect} {boost} {adj+}.",
    "The {aspect} was {neg} {adj-}.",
    "The {aspect} is {neg} {adj-}.",
    "The {aspect} was {adj+} and the {aspect2} was {adj2+}.",
    "Both the {aspect} and the {aspect2} were {adj+}.",
    "It is {a} {adj+} {film}.",
    "What {a} {adj+} {film}.",
    "{title} is {a} {boost} {adj+} {film}.",
    "I {verb+} the {aspect}.",
    "I {verb+} this {film}.",
    "I didn't {vbase-} the {aspect}.",
    "This {film} is {a} {noun+}.",
    "The {aspect} is {a} {noun+}.",
    "The {aspect} felt {adj+}.",
    "The {aspect} was {adj+}, and the {aspect2} was {boost} {adj2+}.",
)

# Mixed sentences: one half agrees with p, the other does not.
MIXED_TEMPLATES: tuple[str, ...] = (
    "The {aspect} was {adj+} but {adj2-}.",
    "The {aspect} was {adj+}, but the {aspect2} was {adj2-}.",
    "Although the {aspect} was {adj-}, the {aspect2} was {adj2+}.",
    "The {aspect} is {adj+}, while the {aspect2} is {adj2-}.",
    "I {verb+} the {aspect}, but the {aspect2} was {adj2-}.",
    "The {aspect} was {adj-}, yet the {aspect2} was {boost} {adj2+}.",
)

# Sentences that carry no VADER word.
NEUTRAL_TEMPLATES: tuple[str, ...] = (
    "It runs for {minutes} minutes.",
    "The {film} is set in {place}.",
    "The story follows {a} {character} in {place}.",
    "It was directed by {person}.",
    "The {aspect} is {nadj}.",
    "The {film} is {a} {nadj} {genre}.",
    "Most of it takes place in {place}.",
)

OPENER_TEMPLATES: tuple[str, ...] = (
    "I watched {title} {when}.",
    "I saw {title} {when} with my {companion}.",
    "{title} is the new {genre} from {person}.",
    "{title} is {a} {genre} about {a} {character} in {place}.",
    "This is my review of {title}.",
    "I went to see {title} {when}.",
    "My {companion} and I watched {title} {when}.",
)

# Closing verdicts, with sentence polarity p.
VERDICT_TEMPLATES: tuple[str, ...] = (
    "Overall, {a} {adj+} {film}.",
    "I would {advice+} it.",
    "In the end, it is {a} {noun+}.",
    "All in all, {a} {boost} {adj+} {film}.",
)

MIXED_VERDICT_TEMPLATES: tuple[str, ...] = (
    "It has its moments.",
    "In the end, it is {a} {nadj} {film} with ups and downs.",
    "Overall, {a} {film} of two halves.",
)

RATING_TEMPLATES: tuple[str, ...] = (
    "I give it {rating} out of 10.",
    "{rating} out of 10.",
    "My rating: {rating}/10.",
)

# Neutral fillers. None of these is in the VADER lexicon (checked by the tests), so the
# only scored words of a review are the ones the renderer records.
FILLERS: dict[str, tuple[str, ...]] = {
    "aspect": tuple(
        """acting plot story script dialogue soundtrack music score cinematography
        direction pacing ending cast camera editing setting premise writing finale
        photography animation lighting""".split()
    ),
    "film": ("film", "movie", "picture"),
    "genre": ("drama", "western", "musical", "documentary", "mystery", "fantasy", "film"),
    "character": tuple(
        "detective soldier doctor teacher pilot musician farmer student painter sailor".split()
    ),
    "place": (
        "Paris",
        "Tokyo",
        "London",
        "Rome",
        "a small town",
        "the desert",
        "a big city",
        "a village",
        "the mountains",
        "an island",
    ),
    "when": ("last night", "yesterday", "on Sunday", "this weekend", "at the cinema", "at home"),
    "companion": ("sister", "brother", "wife", "husband", "mother", "father", "roommate", "cousin"),
    "title_word1": tuple(
        "Silent Hidden Distant Northern Midnight Iron Glass Paper Winter Summer Silver Blue".split()
    ),
    "title_word2": tuple(
        "Harbor River Garden Station Mountain Letter Road Island Machine Mirror Tower Bridge".split()
    ),
    "first_name": tuple("Anna Tom Maria David Lena Paul Sara Hugo Nina Omar".split()),
    "last_name": tuple("Berg Reyes Novak Tanaka Moreau Lindqvist Okafor Rossi Walsh Kim".split()),
}


@dataclass(frozen=True)
class WordSpan:
    """A sentiment word placed in a text.

    ``start``/``end`` are character offsets into the rendered text (where the word may
    be capitalised, at a sentence start); ``negated`` says a VADER negation precedes it
    in its clause, ``booster`` names the intensifier or dampener right before it (or is
    None).
    """

    word: str
    valence: float
    start: int
    end: int
    negated: bool
    booster: str | None


@dataclass(frozen=True)
class Rendered:
    """A rendered template: the text and its sentiment words in order."""

    text: str
    words: tuple[WordSpan, ...]


def template_fields(template: str) -> list[str]:
    """The slot names of a template, in order (``{a}`` included)."""
    return _FIELD.findall(template)


def render_template(template: str, slots: Mapping[str, str | SentimentWord]) -> Rendered:
    """Fill a template and record where each sentiment word lands.

    Args:
        template: text with ``{slot}`` fields, e.g. ``"The {aspect} was {neg} {adj-}."``.
        slots: a value for every field except ``{a}``; sentiment slots (``adj+``, ...)
            take a ``SentimentWord``, the others a string.

    Returns:
        ``Rendered`` with the text (first letter capitalised) and one ``WordSpan`` per
        sentiment slot.

    Raises:
        KeyError: a field has no value.
        TypeError: a sentiment slot got a plain string.
    """
    pieces = _FIELD.split(template)  # literal, field, literal, field, ..., literal
    values: list[str] = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            values.append(piece)
        elif piece == "a":
            values.append("\0a")  # resolved below, once the next word is known
        else:
            if piece not in slots:
                raise KeyError(f"template {template!r} needs a value for {{{piece}}}")
            value = slots[piece]
            if piece in SENTIMENT_SLOTS:
                if not isinstance(value, SentimentWord):
                    raise TypeError(f"slot {{{piece}}} needs a SentimentWord, got {value!r}")
                values.append(value.word)
            else:
                values.append(str(value))
    for i, value in enumerate(values):
        if value == "\0a":
            following = "".join(values[i + 1 :]).lstrip()
            values[i] = "an" if following[:1].lower() in set("aeiou") else "a"

    text = ""
    spans: list[WordSpan] = []
    negated = False
    booster: str | None = None
    for i, value in enumerate(values):
        if i % 2 == 1:
            field = pieces[i]
            if field in SENTIMENT_SLOTS:
                word = slots[field]
                assert isinstance(word, SentimentWord)
                spans.append(
                    WordSpan(word.word, word.valence, len(text), len(text) + len(value), negated, booster)
                )
                negated, booster = False, None
            elif field == "neg":
                negated = True
            elif field == "boost":
                booster = value
        elif "didn't" in value or " not " in value:
            negated = True
        if i % 2 == 0 and value.strip(" "):
            booster = None  # an intensifier only counts right before its word
        text += value
    if text:
        text = text[0].upper() + text[1:]
    return Rendered(text, tuple(spans))
