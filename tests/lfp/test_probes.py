"""LFP part 2 on planted data and on the world: triples, codes, deltas, probes, agreement."""

import pytest
import torch

from sae_lens_match import world
from sae_lens_match.lfp.contrastive import SwapWords, contrastive_triples
from sae_lens_match.lfp.probes import delta_dataset, feedback_agreement, fit_linear_probe, per_word, word_codes, xavier_probe

ADJ = SwapWords(positive=("great", "wonderful"), negative=("awful", "boring"), neutral=("long", "quiet"))


def test_triples_swap_the_first_listed_word_for_the_same_part_of_speech_and_cut_after_it():
    texts = ["I think the plot was great and the music was awful.", "Nothing good to see here.", "A boring, boring film."]
    triples = contrastive_triples(texts, {"adj": ADJ}, seed=1)
    assert len(triples) == 2  # "good" is a VADER word, but not one of the listed adjectives
    t = triples[0]
    assert t.original == "great" and t.role == "adj"
    for k, (text, word) in enumerate(zip(t.texts, t.words)):
        assert text == "I think the plot was " + word and text[slice(*t.span(k))] == word
    assert t.words[0] in ADJ.positive and t.words[1] in ADJ.neutral and t.words[2] in ADJ.negative
    assert triples[1].texts[1].startswith("A ") and triples[1].original == "boring"
    assert contrastive_triples(texts, {"adj": ADJ}, seed=1) == triples  # seeded
    with pytest.raises(ValueError, match="neutral swap words .*'fun'"):
        SwapWords(positive=("great",), negative=("awful",), neutral=("fun",))
    with pytest.raises(ValueError, match="negative swap words"):
        SwapWords(positive=("great",), negative=("nice",), neutral=("long",))


def test_kendall_tau_correlates_values_per_word_not_strings():
    """The reference code sorted word strings and correlated the lists (alphabetical ranks).
    Here words whose alphabetical order runs against their values still get tau = 1."""
    true = {"a": 3.0, "b": 2.0, "c": 1.0, "d": -1.0, "e": -2.5}
    result = feedback_agreement(dict(true), true, n_boot=50)
    assert result["kendall_tau"] == pytest.approx(1.0) and result["kendall_p"] < 0.05
    assert result["sign_accuracy_positive"] == result["sign_accuracy_negative"] == 1.0
    flipped = feedback_agreement({w: -v for w, v in true.items()}, true, n_boot=50)
    assert flipped["kendall_tau"] == pytest.approx(-1.0) and flipped["sign_accuracy_positive"] == 0.0
    low, high = result["kendall_tau_ci"]
    assert low <= 1.0 <= high + 1e-12


def test_linear_probe_recovers_planted_weights_and_ridge_shrinks_them():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    w = torch.tensor([1.0, -2.0, 0.0, 0.5, 3.0], dtype=torch.float64)
    y = x.double() @ w + 0.7
    probe = fit_linear_probe(x, y)
    torch.testing.assert_close(probe.weight, w)
    assert probe.bias == pytest.approx(0.7)
    assert fit_linear_probe(x, y, ridge=100.0).weight.norm() < w.norm()
    a, b = xavier_probe(5, seed=3), xavier_probe(5, seed=3)
    assert torch.equal(a.weight, b.weight) and a.bias == 0.0 and a.weight.abs().max() <= (6 / 6) ** 0.5


def test_deltas_are_signed_distances_to_the_neutral_version():
    codes = torch.tensor([[[3.0, 4.0], [0.0, 0.0], [0.0, 1.0]]])  # +, 0, - of one triple
    triple = contrastive_triples(["It was great"], {"adj": ADJ})[0]
    x, y, words = delta_dataset(codes, [triple])
    assert torch.equal(x, torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
    assert y.tolist() == [5.0, -1.0] and words == [triple.words[0], triple.words[2]]
    assert per_word(torch.tensor([1.0, 3.0, 5.0]), ["a", "a", "b"]) == {"a": 2.0, "b": 5.0}


def test_codes_at_the_swapped_word_are_what_the_model_and_sae_give_there(world_root):
    model = world.load_model("hooked")
    sae = world.load_saes("resid_post", layers=[1])[0]
    triples = contrastive_triples(world.corpus("test", 5), {"adj": _world_swaps()})
    codes = word_codes(model, [sae], triples, progress=False)
    t = triples[0]
    ids = torch.tensor([[0, *model.tokenizer(t.texts[0], add_special_tokens=False)["input_ids"]]])
    _, cache = model.run_with_cache(ids)
    n_word = len(model.tokenizer(" " + t.words[0], add_special_tokens=False)["input_ids"])
    expected = sae.encode(cache["blocks.1.hook_resid_post"][0, -n_word:]).mean(0)
    torch.testing.assert_close(codes[0, 0], expected.detach())
    # causal: the text cut after the word gives the codes the whole text gives there
    longer = torch.tensor([[*ids[0].tolist(), *model.tokenizer(" and the rest.", add_special_tokens=False)["input_ids"]]])
    _, whole = model.run_with_cache(longer)
    at_word = sae.encode(whole["blocks.1.hook_resid_post"][0, ids.shape[1] - n_word : ids.shape[1]]).mean(0)
    torch.testing.assert_close(codes[0, 0], at_word.detach())


@pytest.mark.parametrize("padding_side", ["left", "right"])  # left: TransformerLens builds a mask from pad ids
def test_batched_word_codes_equal_one_text_at_a_time(world_root, padding_side):
    model = world.load_model("hooked_sae")
    model.tokenizer.padding_side = padding_side
    saes = world.load_saes("mlp_out", layers=[0, 1])
    long = "We watched it on a Sunday night with friends and family at home after a big dinner, and we talked about it for hours; in the end we all agreed it was good."
    texts = ["A good one.", *world.corpus("test", 5), long]
    triples = contrastive_triples(texts, {"adj": _world_swaps()}, seed=2)
    lengths = [len(model.tokenizer(text)["input_ids"]) for t in triples for text in t.texts]
    assert len(triples) == 7 and max(lengths) > 5 * min(lengths)
    expected = torch.zeros(len(triples), 3, sum(sae.cfg.d_sae for sae in saes))
    for i, t in enumerate(triples):  # one text per forward pass, as before batching
        for k, text in enumerate(t.texts):
            encoded = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            (start, end), offsets = t.span(k), encoded["offset_mapping"]
            positions = [1 + j for j, (s, e) in enumerate(offsets) if s < end and start < e]
            _, cache = model.run_with_cache(torch.tensor([[0, *encoded["input_ids"]]]))
            expected[i, k] = torch.cat([sae.encode(cache[sae.cfg.metadata.hook_name][0, positions]).mean(0) for sae in saes])
    codes = word_codes(model, saes, triples, batch_size=4, progress=False)  # 21 texts: batches of 4, 4, 4, 4, 4, 1
    torch.testing.assert_close(codes, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="batch_size"):
        word_codes(model, saes, triples, batch_size=0, progress=False)


def _world_swaps():
    vocab = world.vocabulary()
    return SwapWords(
        positive=tuple(w.word for w in vocab.adjectives[1]),
        negative=tuple(w.word for w in vocab.adjectives[-1]),
        neutral=vocab.neutral_adjectives,
    )
