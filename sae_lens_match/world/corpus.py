"""The world corpus: deterministic movie-review-like text built on the VADER lexicon.

A review has a label (positive, negative or mixed), a neutral opener naming a film, two
to four opinion sentences whose sentiment follows the label (with intensifiers,
negations and the odd dissenting remark), sometimes a neutral remark, a verdict and a
rating out of 10 that agrees with the label. Review ``i`` of a split depends only on
``(seed, split, i)``, so ``corpus(n=100)`` is a prefix of ``corpus(n=1000)``.

Hub text datasets (IMDb, ...) are loaded by :func:`sae_lens_match.sources.texts.load_texts`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from sae_lens_match.world.lexicon import SentimentWord, Vocabulary, vocabulary
from sae_lens_match.world.templates import (
    FILLERS,
    MIXED_TEMPLATES,
    MIXED_VERDICT_TEMPLATES,
    NEUTRAL_TEMPLATES,
    OPENER_TEMPLATES,
    OPINION_TEMPLATES,
    RATING_TEMPLATES,
    SENTIMENT_SLOTS,
    VERDICT_TEMPLATES,
    Rendered,
    WordSpan,
    render_template,
    template_fields,
)

Label = Literal["positive", "negative", "mixed"]
SPLITS = ("train", "test")
_LABELS: tuple[Label, ...] = ("positive", "negative", "mixed")
_LABEL_WEIGHTS = (0.4, 0.4, 0.2)
_RATINGS = {"positive": (7, 8, 9, 10), "negative": (1, 2, 3, 4), "mixed": (5, 6)}
_DISSENT = 0.05  # share of opinion sentences that go against a one-sided review
_ZIPF = 0.7  # sampling weight of the k-th word of a list is 1 / k**_ZIPF
_CANDIDATES = 4  # draws per sentiment slot, to avoid repeating a word within a sentence


@dataclass(frozen=True)
class Review:
    """One generated review.

    ``words`` lists every VADER word of ``text`` with character offsets.
    """

    text: str
    label: Label
    rating: int
    words: tuple[WordSpan, ...]


def _sentiment_candidates(
    slot: str, polarity: int, vocab: Vocabulary, rng: random.Random
) -> list[SentimentWord]:
    # A fixed number of Zipf-weighted draws whatever the polarity or the pool size, so
    # the same rng state renders a template identically for +1 and -1 except for the
    # sentiment words; the caller takes the first candidate not already in the sentence
    # ("funny, smart and funny" reads wrong).
    cls, relative = SENTIMENT_SLOTS[slot]
    groups = {
        "adj": vocab.adjectives,
        "adj2": vocab.adjectives,
        "adj3": vocab.adjectives,
        "noun": vocab.nouns,
        "verb": vocab.verbs,
        "vbase": vocab.verb_bases,
        "advice": vocab.advice,
    }
    pool = groups[cls][polarity * relative]
    weights = [1.0 / (k + 1) ** _ZIPF for k in range(len(pool))]
    return rng.choices(pool, weights, k=_CANDIDATES)


def fill_slots(template: str, polarity: int, rng: random.Random, **fixed: str | SentimentWord) -> Rendered:
    """Render ``template`` with random slot values for a sentence of sign ``polarity``.

    Args:
        template: a template string (see ``sae_lens_match.world.templates``).
        polarity: +1 or -1, the sentiment of the sentence.
        rng: source of randomness.
        **fixed: values that override the random choice, e.g. ``title="The Blue Road"``.
            Sentiment slots need a ``SentimentWord``; pass them via a dict since their
            names contain ``+``/``-``: ``fill_slots(t, 1, rng, **{"adj+": word})``.
    """
    if polarity not in (1, -1):
        raise ValueError(f"polarity must be +1 or -1, got {polarity}")
    vocab = vocabulary()
    slots: dict[str, str | SentimentWord] = {}
    for field in template_fields(template):
        if field in fixed:
            slots[field] = fixed[field]
        elif field in SENTIMENT_SLOTS:
            used = {w.word for w in slots.values() if isinstance(w, SentimentWord)}
            candidates = _sentiment_candidates(field, polarity, vocab, rng)
            slots[field] = next((w for w in candidates if w.word not in used), candidates[0])
        elif field in ("aspect", "aspect2"):
            other = slots.get("aspect2" if field == "aspect" else "aspect")
            slots[field] = rng.choice([a for a in FILLERS["aspect"] if a != other])
        elif field == "boost":
            slots[field] = rng.choice(vocab.intensifiers if rng.random() < 0.8 else vocab.dampeners)
        elif field == "neg":
            slots[field] = rng.choice(vocab.negations)
        elif field == "nadj":
            slots[field] = rng.choice(vocab.neutral_adjectives)
        elif field == "title":
            slots[field] = f"The {rng.choice(FILLERS['title_word1'])} {rng.choice(FILLERS['title_word2'])}"
        elif field == "person":
            slots[field] = f"{rng.choice(FILLERS['first_name'])} {rng.choice(FILLERS['last_name'])}"
        elif field == "minutes":
            slots[field] = str(rng.randrange(80, 180, 5))
        elif field in FILLERS:
            slots[field] = rng.choice(FILLERS[field])
        elif field != "a":
            raise KeyError(f"no value for slot {{{field}}} of {template!r}")
    return render_template(template, slots)


def _review_rng(seed: int, split: str, index: int) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`, independent of PYTHONHASHSEED.
    return random.Random(f"sae-lens-match-world/{seed}/{split}/{index}")


def make_review(seed: int, split: str, index: int) -> Review:
    """Generate review ``index`` of ``split`` for ``seed`` (pure function of the three)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = _review_rng(seed, split, index)
    label: Label = rng.choices(_LABELS, _LABEL_WEIGHTS)[0]
    polarity = {"positive": 1, "negative": -1, "mixed": rng.choice((1, -1))}[label]
    title = f"The {rng.choice(FILLERS['title_word1'])} {rng.choice(FILLERS['title_word2'])}"
    rating = rng.choice(_RATINGS[label])

    sentences = [fill_slots(rng.choice(OPENER_TEMPLATES), polarity, rng, title=title)]
    for k in range(rng.randint(2, 4)):
        if label == "mixed":
            if k == 0 or rng.random() < 0.4:
                template, sign = rng.choice(MIXED_TEMPLATES), rng.choice((1, -1))
            else:
                template, sign = rng.choice(OPINION_TEMPLATES), (1 if k % 2 else -1) * polarity
        else:
            template = rng.choice(OPINION_TEMPLATES)
            sign = -polarity if rng.random() < _DISSENT else polarity
        sentences.append(fill_slots(template, sign, rng, title=title))
        if rng.random() < 0.2:
            sentences.append(fill_slots(rng.choice(NEUTRAL_TEMPLATES), polarity, rng, title=title))
    verdicts = MIXED_VERDICT_TEMPLATES if label == "mixed" else VERDICT_TEMPLATES
    sentences.append(fill_slots(rng.choice(verdicts), polarity, rng, title=title))
    sentences.append(fill_slots(rng.choice(RATING_TEMPLATES), polarity, rng, rating=str(rating)))
    return _join(sentences, label, rating)


def _join(sentences: list[Rendered], label: Label, rating: int) -> Review:
    text, words = "", []
    for sentence in sentences:
        if text:
            text += " "
        offset = len(text)
        words.extend(
            WordSpan(w.word, w.valence, w.start + offset, w.end + offset, w.negated, w.booster)
            for w in sentence.words
        )
        text += sentence.text
    return Review(text, label, rating, tuple(words))


def reviews(n: int, seed: int = 0, split: str = "train", start: int = 0) -> list[Review]:
    """Reviews ``start .. start+n-1`` of ``split`` with their labels and word spans."""
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0, got n={n}, start={start}")
    return [make_review(seed, split, i) for i in range(start, start + n)]


def corpus(split: str = "train", n: int = 1000, seed: int = 0) -> list[str]:
    """The texts of reviews ``0 .. n-1`` of ``split`` ("train" or "test") for corpus ``seed``."""
    return [r.text for r in reviews(n, seed, split)]


def review_prefixes(
    n: int,
    seed: int = 0,
    split: str = "test",
    min_words: int = 2,
    max_words: int = 8,
) -> list[str]:
    """Opening words of held-out reviews, the prompts for generation and RL fine-tuning.

    The k-th prefix is the first ``min_words..max_words`` whitespace-separated words of
    review k (mirroring the short IMDb prefixes of the LFP paper). Shapes: a list of n
    strings.
    """
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    out = []
    for i, review in enumerate(reviews(n, seed, split)):
        k = random.Random(f"prefix/{seed}/{split}/{i}").randint(min_words, max_words)
        out.append(" ".join(review.text.split()[:k]))
    return out
