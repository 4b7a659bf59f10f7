"""Part 2 for the preference tasks: chosen / neutral / rejected triples and logistic probes."""

import pytest
import torch
from datasets import Dataset

from sae_lens_match import world
from sae_lens_match.lfp.contrastive import preference_triples
from sae_lens_match.lfp.probes import classification_accuracy, fit_logistic_probe, preference_dataset, text_codes


def test_minimal_pairs_get_a_neutral_answer_and_other_pairs_the_prompt_alone():
    pairs = Dataset.from_dict({
        "prompt": ["Q1:", "Q2:"],
        "chosen": [" The film was great, truly great.", " Sure, here is how."],
        "rejected": [" The film was awful, truly dull.", " No."],
    })
    triples = preference_triples(pairs, ["long", "quiet"], seed=3)
    first, second = triples
    assert first.texts[0] == "Q1: The film was great, truly great." and first.texts[2] == "Q1: The film was awful, truly dull."
    neutral = first.texts[1]
    assert neutral.startswith("Q1: The film was ") and neutral.endswith(".") and ", truly " in neutral
    swapped = neutral[len("Q1: The film was ") : -1].split(", truly ")
    assert all(w in ("long", "quiet") for w in swapped)  # only the differing words, punctuation kept
    assert second.texts == ("Q2: Sure, here is how.", "Q2:", "Q2: No.")  # not a minimal pair
    assert preference_triples(pairs, ["long", "quiet"], seed=3) == triples  # seeded
    with pytest.raises(ValueError, match="missing \\['rejected'\\]"):
        preference_triples(Dataset.from_dict({"prompt": ["a"], "chosen": ["b"]}), ["long"])


def test_world_preference_pairs_are_minimal_pairs():
    triples = preference_triples(world.preference_pairs(20, split="test"), ["long"])
    assert all(t.texts[1] != pair_prompt for t, pair_prompt in zip(triples, world.preference_pairs(20, split="test")["prompt"]))


def test_logistic_probe_separates_planted_classes_and_ridge_shrinks_weights():
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(8, generator=g)
    x = torch.randn(200, 8, generator=g)
    labels = (x @ direction > 0).float()
    probe = fit_logistic_probe(x[:150], labels[:150], ridge=0.1)
    result = classification_accuracy(probe(x[150:]), labels[150:], n_boot=100)
    assert result["accuracy"] >= 0.95 and result["n"] == 50
    assert torch.nn.functional.cosine_similarity(probe.weight.float(), direction, dim=0) > 0.9
    assert fit_logistic_probe(x, labels, ridge=100.0).weight.norm() < probe.weight.norm()
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic_probe(x, torch.ones(200))


def test_classification_accuracy_counts_the_right_side_of_zero():
    result = classification_accuracy(torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1.0, 0.0, 0.0, 1.0]), n_boot=200)
    assert result["accuracy"] == 0.5
    low, high = result["accuracy_ci"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0


def test_preference_dataset_labels_chosen_1_and_rejected_0_with_signed_deltas():
    codes = torch.tensor([[[3.0, 4.0], [0.0, 0.0], [0.0, 1.0]]])
    x, labels, deltas = preference_dataset(codes)
    assert torch.equal(x, torch.tensor([[3.0, 4.0], [0.0, 1.0]])) and labels.tolist() == [1.0, 0.0] and deltas.tolist() == [5.0, -1.0]


def test_text_codes_average_every_token_after_bos(world_root):
    model = world.load_model("hooked")
    sae = world.load_saes("mlp_out", layers=[1])[0]
    text = "The film was great."
    codes = text_codes(model, [sae], [text], progress=False)
    ids = torch.tensor([[0, *model.tokenizer(text, add_special_tokens=False)["input_ids"]]])
    _, cache = model.run_with_cache(ids)
    expected = sae.encode(cache["blocks.1.hook_mlp_out"][0, 1:]).mean(0)
    torch.testing.assert_close(codes[0], expected.detach())


@pytest.mark.parametrize("padding_side", ["left", "right"])  # left: TransformerLens builds a mask from pad ids
def test_batched_text_codes_equal_one_text_at_a_time(world_root, padding_side):
    model = world.load_model("hooked_sae")
    model.tokenizer.padding_side = padding_side
    saes = world.load_saes("mlp_out", layers=[0, 1])
    corpus = world.corpus("test", 4)
    texts = ["Good.", corpus[0], " ".join(corpus), "The film was great.", corpus[1], "No."]  # the third is cut to the context
    expected = torch.zeros(len(texts), sum(sae.cfg.d_sae for sae in saes))
    for i, text in enumerate(texts):  # one text per forward pass, as before batching
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][: model.cfg.n_ctx - 1]
        _, cache = model.run_with_cache(torch.tensor([[0, *ids]]))
        expected[i] = torch.cat([sae.encode(cache[sae.cfg.metadata.hook_name][0, 1:]).mean(0) for sae in saes])
    assert len(model.tokenizer(texts[2])["input_ids"]) > model.cfg.n_ctx
    codes = text_codes(model, saes, texts, batch_size=4, progress=False)  # batches of 4 and 2
    torch.testing.assert_close(codes, expected, atol=1e-5, rtol=1e-4)


def test_pairs_are_split_by_seed_with_at_least_one_on_each_side():
    from sae_lens_match.lfp.part2 import run_part2, split_items

    mask = split_items(10, 0.3, seed=1)
    assert mask.sum() == 3 and torch.equal(mask, split_items(10, 0.3, seed=1)) and not torch.equal(mask, split_items(10, 0.3, seed=2))
    assert split_items(2, 0.1, seed=0).sum() == 1
    with pytest.raises(ValueError, match="too few"):
        split_items(1, 0.3, seed=0)
    with pytest.raises(ValueError, match="word triples or preference triples"):
        run_part2(None, None, [], [], "unused")
