"""The world corpus, templates and tokenizer (fast: nothing is trained here)."""

import random
import re

import pytest
from vaderSentiment import vaderSentiment as vs

from sae_lens_match.world import corpus, make_review, render_template, review_prefixes, reviews
from sae_lens_match.world.corpus import fill_slots
from sae_lens_match.sources import load_tokenizer, vader_lexicon
from sae_lens_match.world.lexicon import vocabulary
from sae_lens_match.world.templates import FILLERS, OPINION_TEMPLATES, SENTIMENT_SLOTS
from sae_lens_match.world.tokenizer import BOS_TOKEN, PAD_TOKEN, train_tokenizer


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def test_vocabulary_comes_from_the_vader_lexicon():
    lexicon, vocab = vader_lexicon(), vocabulary()
    assert len(lexicon) > 7000 and lexicon["great"] == pytest.approx(3.1)
    for word in vocab.sentiment_words():
        assert lexicon[word.word] == word.valence
    for polarity in (1, -1):
        assert all(w.valence * polarity > 0 for w in vocab.adjectives[polarity])
    assert not set(vocab.neutral_adjectives) & set(lexicon)
    assert set(vocab.negations) <= set(vs.NEGATE)
    assert set(vocab.intensifiers) | set(vocab.dampeners) <= set(vs.BOOSTER_DICT)
    assert len(vocab.adjectives[1]) >= 50 and len(vocab.adjectives[-1]) >= 40


def test_fillers_carry_no_vader_word():
    lexicon = vader_lexicon()
    for name, values in FILLERS.items():
        scored = [w for v in values for w in _words(v) if w in lexicon]
        assert not scored, f"filler {name} has VADER words {scored}"


def test_recorded_words_are_exactly_the_vader_words_of_each_review():
    lexicon = vader_lexicon()
    for review in reviews(500, seed=3):
        assert [review.text[w.start : w.end].lower() for w in review.words] == [w.word for w in review.words]
        assert sorted(w for w in _words(review.text) if w in lexicon) == sorted(w.word for w in review.words)


def test_reviews_are_deterministic_prefix_stable_and_seeded():
    assert corpus(n=20, seed=1) == corpus(n=20, seed=1)
    assert corpus(n=50, seed=1)[:20] == corpus(n=20, seed=1)
    assert corpus(n=20, seed=1) != corpus(n=20, seed=2)
    assert corpus("train", 20) != corpus("test", 20)
    assert make_review(0, "test", 7) == reviews(1, 0, "test", start=7)[0]
    with pytest.raises(ValueError, match="split"):
        corpus("validation", 3)


def test_labels_agree_with_vader_and_ratings():
    analyzer = vs.SentimentIntensityAnalyzer()
    rs = reviews(300, seed=0, split="test")
    by_label = {lab: [r for r in rs if r.label == lab] for lab in ("positive", "negative", "mixed")}
    assert all(len(v) > 20 for v in by_label.values())
    compound = {lab: [analyzer.polarity_scores(r.text)["compound"] for r in v] for lab, v in by_label.items()}
    assert sum(c > 0 for c in compound["positive"]) / len(compound["positive"]) > 0.95
    assert sum(c < 0 for c in compound["negative"]) / len(compound["negative"]) > 0.95
    assert all(r.rating >= 7 for r in by_label["positive"])
    assert all(r.rating <= 4 for r in by_label["negative"])
    assert all(re.search(rf"\b{r.rating}( out of 10|/10)\.$", r.text) for r in rs)
    # the structure the model has to learn: negations, intensifiers, mixed sentences
    spans = [w for r in rs for w in r.words]
    assert sum(w.negated for w in spans) > 50 and sum(w.booster is not None for w in spans) > 100


def test_render_template_places_a_chosen_word():
    vocab = vocabulary()
    awful = next(w for w in vocab.adjectives[-1] if w.word == "awful")
    out = render_template("It is {a} {adj+} film.", {"adj+": awful})
    assert out.text == "It is an awful film."
    (span,) = out.words
    assert out.text[span.start : span.end] == "awful" and span.valence == awful.valence
    neg = render_template("The {aspect} was {neg} {adj-}.", {"aspect": "plot", "neg": "not", "adj-": awful})
    assert neg.text == "The plot was not awful." and neg.words[0].negated
    boosted = render_template("the {aspect} was {boost} {adj+}.", {"aspect": "plot", "boost": "very", "adj+": awful})
    assert boosted.text.startswith("The plot") and boosted.words[0].booster == "very"
    with pytest.raises(KeyError):
        render_template("The {aspect} was {adj+}.", {"adj+": awful})
    with pytest.raises(TypeError):
        render_template("The {aspect} was {adj+}.", {"aspect": "plot", "adj+": "awful"})


def test_fill_slots_differs_between_polarities_only_in_sentiment_words():
    for template in OPINION_TEMPLATES:
        pos = fill_slots(template, +1, random.Random(5))
        neg = fill_slots(template, -1, random.Random(5))
        assert all(w.valence > 0 for w in pos.words if not w.negated)
        strip = lambda r: re.sub(r"\ban?\b", "a", "".join(  # noqa: E731
            r.text[i] for i in range(len(r.text)) if not any(w.start <= i < w.end for w in r.words)))
        assert strip(pos) == strip(neg)
    assert len(SENTIMENT_SLOTS) == 14


def test_review_prefixes_are_openings_of_held_out_reviews():
    prefixes = review_prefixes(30, seed=0)
    texts = corpus("test", 30, seed=0)
    for prefix, text in zip(prefixes, texts):
        assert text.startswith(prefix) and 2 <= len(prefix.split()) <= 8
    with pytest.raises(ValueError):
        review_prefixes(3, min_words=5, max_words=2)


def test_tokenizer_roundtrips_prepends_bos_and_is_deterministic(tmp_path):
    texts = corpus(n=400, seed=0)
    tok = train_tokenizer(texts, vocab_size=600)
    assert tok.backend_tokenizer.to_str() == train_tokenizer(texts, vocab_size=600).backend_tokenizer.to_str()
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (BOS_TOKEN, BOS_TOKEN, PAD_TOKEN)
    assert (tok.bos_token_id, tok.pad_token_id) == (0, 1)
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    for text in texts[:20] + ["Unseen words: zebra, 42%!"]:
        ids = again(text)["input_ids"]
        assert ids[0] == 0 and again.decode(ids, skip_special_tokens=True) == text
    assert again.name_or_path == str(tmp_path)
