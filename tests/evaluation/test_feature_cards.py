"""Feature cards on a tiny HookedSAETransformer with planted SAEs, checked against independent computations."""

import copy
import importlib
import json

import pytest
import torch
from sae_lens import SAE
from sae_lens.loading.pretrained_sae_loaders import handle_config_defaulting

from sae_lens_match import Matching
from sae_lens_match.evaluation import FeatureCardConfig, feature_cards, neuronpedia_url, pair_verdicts
from sae_lens_match.evaluation.explain import LABELS, ContextOverlapJudge, TopTokensExplainer, top_activating_contexts
from sae_lens_match.sources import TokenSet
from tests.helpers import random_sae
from tests.planted_model import BOS, planted

# the module, not the function of the same name that sae_lens_match.evaluation exports
feature_cards_module = importlib.import_module("sae_lens_match.evaluation.feature_cards")
CONFIG = FeatureCardConfig(k_contexts=4, left=3, right=1, histogram_bins=5, top_logits=3)


@pytest.fixture(scope="module")
def world():
    p = planted()
    return p, TokenSet(p.model, p.tokens, bos_token_id=BOS, batch_size=7, progress=False)


@pytest.fixture(scope="module")
def cards_a(world):
    p, data = world
    return feature_cards(data, p.sae_a, CONFIG, explainer=TopTokensExplainer(), label="A")


@torch.no_grad()
def _encoded(p, sae) -> torch.Tensor:
    """``[n_non_bos_positions, d_sae]`` feature activations from an independent ``run_with_cache``."""
    hook = sae.cfg.metadata.hook_name
    _, cache = p.model.run_with_cache(p.tokens, names_filter=[hook])
    return sae.encode(cache[hook][p.tokens != BOS])


def test_cards_agree_with_an_independent_encode_and_the_shared_contexts(world, cards_a):
    p, data = world
    acts = _encoded(p, p.sae_a)
    assert (cards_a.label, cards_a.hook, cards_a.d_sae, cards_a.n_positions) == ("A", "blocks.0.hook_resid_post", 32, acts.shape[0])
    assert [c.feature for c in cards_a.cards] == list(range(32))
    assert cards_a.neuronpedia_id is None
    contexts = top_activating_contexts(data, p.sae_a, range(32), k=4, left=3, right=1, label="A")
    fired = 0
    for card, ctx in zip(cards_a.cards, contexts):
        assert card.contexts == ctx  # the shared collector, not a second copy
        a = acts[:, card.feature]
        positive = a[a > 0]
        fired += positive.numel() > 0
        assert card.frequency == pytest.approx(positive.numel() / a.numel())
        assert card.max_activation == pytest.approx(float(a.max().clamp(min=0)), rel=1e-5)
        assert len(card.histogram_edges) == 6 and card.histogram_edges[0] == 0.0
        assert card.histogram_edges[-1] == pytest.approx(card.max_activation)
        assert sum(card.histogram_counts) == positive.numel()
        if positive.numel():
            expected = torch.histogram(positive, bins=5, range=(0.0, card.max_activation)).hist
            assert list(card.histogram_counts) == expected.long().tolist()
        assert card.explanation == TopTokensExplainer().explain(ctx) and card.explanation.source == "heuristic:top-tokens"
    assert fired > 10  # the histograms were tested on real activations
    assert cards_a.card(5) is cards_a.cards[5]
    with pytest.raises(KeyError, match="No card for feature 99"):
        cards_a.card(99)
    # a subset, in the order asked, gives the same cards
    some = feature_cards(data, p.sae_a, CONFIG, features=[31, 2], explainer=TopTokensExplainer(), label="A")
    assert [c.feature for c in some.cards] == [31, 2] and some.cards == (cards_a.card(31), cards_a.card(2))


@torch.no_grad()
def test_top_logits_are_the_direct_effect_and_show_a_planted_token_first(world, monkeypatch):
    p, data = world
    W_U = p.model.W_U  # [d_model, d_vocab]
    token = int(W_U.norm(dim=0).argmax())  # the longest column: W_U[:, t] . W_U[:, j] <= |W_U[:, t]|^2 for every j
    sae = copy.deepcopy(p.sae_a)
    sae.W_dec[3] = W_U[:, token]
    sae.W_dec[4] = -W_U[:, token]
    monkeypatch.setattr(feature_cards_module, "_LOGIT_BLOCK", 3 * W_U.shape[1])  # several blocks of 3 features
    cards = feature_cards(data, sae, CONFIG, progress=False)
    assert cards.card(3).top_logits[0][0] == f"<{token}>" and cards.card(4).bottom_logits[0][0] == f"<{token}>"
    logits = sae.W_dec @ W_U  # [d_sae, d_vocab]
    for card in cards.cards:
        top, bottom = logits[card.feature].topk(3), logits[card.feature].topk(3, largest=False)
        assert [t for t, _ in card.top_logits] == [f"<{i}>" for i in top.indices.tolist()]
        assert [v for _, v in card.top_logits] == pytest.approx(top.values.tolist(), rel=1e-5)
        assert [t for t, _ in card.bottom_logits] == [f"<{i}>" for i in bottom.indices.tolist()]
        assert [v for _, v in card.bottom_logits] == pytest.approx(bottom.values.tolist(), rel=1e-5)
    # an SAE that does not write to the residual stream has no direct logit effect, but still a card
    mlp = random_sae("standard", d_in=32, d_sae=8)
    mlp.cfg.metadata.hook_name = "blocks.0.mlp.hook_post"
    mlp_cards = feature_cards(data, mlp, CONFIG, progress=False)
    assert all(c.top_logits == () and c.bottom_logits == () for c in mlp_cards.cards)
    assert sum(sum(c.histogram_counts) for c in mlp_cards.cards) > 0


def test_to_dict_is_compact_json_that_round_trips_the_tokens(world, cards_a):
    p, data = world
    d = json.loads(json.dumps(cards_a.to_dict(), allow_nan=False))
    assert list(d) == ["label", "hook", "d_sae", "n_positions", "neuronpedia_id", "tokens", "features"]
    assert len(d["tokens"]) == len(set(d["tokens"]))  # each string once
    assert [f["feature"] for f in d["features"]] == list(range(32))
    r = lambda x: float(f"{x:.3g}")  # noqa: E731
    for f, card in zip(d["features"], cards_a.cards):
        assert f["max"] == r(card.max_activation) and f["frequency"] == r(card.frequency)
        assert len(f["contexts"]) == len(card.contexts.examples)
        for c, e in zip(f["contexts"], card.contexts.examples):
            assert [d["tokens"][i] for i in c["tokens"]] == list(e.tokens)
            assert c["acts"] == [r(a) for a in e.activations] and c["center"] == e.center
        assert [[d["tokens"][i], v] for i, v in f["top_logits"]] == [[t, r(v)] for t, v in card.top_logits]
        assert [[d["tokens"][i], v] for i, v in f["bottom_logits"]] == [[t, r(v)] for t, v in card.bottom_logits]
        assert f["histogram"] == {"edges": [r(x) for x in card.histogram_edges], "counts": list(card.histogram_counts)}
        assert f["explanation"] == {"text": card.explanation.text, "source": "heuristic:top-tokens"}
        assert f["neuronpedia"] is None
    assert all(len(str(v)) <= 10 for f in d["features"] for c in f["contexts"] for v in c["acts"])  # 3 digits, not 8
    bare = feature_cards(data, p.sae_a, FeatureCardConfig(digits=1), features=[0], progress=False).to_dict()
    assert bare["features"][0]["explanation"] is None
    assert bare["features"][0]["max"] == float(f"{cards_a.card(0).max_activation:.1g}")


def test_neuronpedia_links_come_from_the_sae_config(world):
    p, data = world
    assert neuronpedia_url("gpt2-small/0-res-jb", 7) == "https://www.neuronpedia.org/gpt2-small/0-res-jb/7"
    assert neuronpedia_url(None, 7) is None
    # the path SAE.from_pretrained takes: the release's id goes into the config's metadata
    cfg = handle_config_defaulting({"d_in": 16, "d_sae": 32, "hook_name": "blocks.0.hook_resid_post", "neuronpedia_id": "tiny/0-res", "architecture": "standard"})
    sae = SAE.get_sae_class_for_architecture("standard")(SAE.get_sae_config_class_for_architecture("standard").from_dict(cfg))
    sae.load_state_dict(p.sae_a.state_dict())
    cards = feature_cards(data, sae, CONFIG, features=[3, 9], progress=False)
    assert cards.neuronpedia_id == "tiny/0-res"
    assert [f["neuronpedia"] for f in cards.to_dict()["features"]] == ["https://www.neuronpedia.org/tiny/0-res/3", "https://www.neuronpedia.org/tiny/0-res/9"]


def test_pair_verdicts_judge_matched_pairs_and_skip_the_rest(world, cards_a):
    p, data = world
    permutation = p.truth.clone()
    permutation[[1, 2]] = -1
    matching = Matching(permutation, torch.zeros(32, dtype=torch.float64), 32)
    targets = [int(p.truth[f]) for f in range(8)]
    cards_b = feature_cards(data, p.sae_b, CONFIG, features=targets[:6], label="B", progress=False)
    verdicts = pair_verdicts(cards_a, cards_b, matching, ContextOverlapJudge())
    assert len(verdicts) == 32
    none = [f for f, v in enumerate(verdicts) if v is None]
    assert none == [1, 2, *range(6, 32)]  # unmatched, or the match has no card
    judge = ContextOverlapJudge()
    for f in (0, 3, 4, 5):
        assert verdicts[f] == judge.judge(cards_a.card(f).contexts, cards_b.card(int(p.truth[f])).contexts)
        assert verdicts[f].label in LABELS and verdicts[f].source == "heuristic:context-overlap"
    with pytest.raises(ValueError, match="compares explanations"):
        pair_verdicts(cards_a, cards_b, matching, ContextOverlapJudge(needs_explanations=True))
    with pytest.raises(ValueError, match="32 -> 32 features but the cards are of 32 -> 8"):
        pair_verdicts(cards_a, feature_cards(data, random_sae("standard", d_sae=8), CONFIG, progress=False), matching, judge)


def test_bad_input_is_refused_clearly(world):
    p, data = world
    with pytest.raises(ValueError, match=r"\[0, 32\); got \[32\]"):
        feature_cards(data, p.sae_a, CONFIG, features=[0, 32], progress=False)
    with pytest.raises(ValueError, match="distinct"):
        feature_cards(data, p.sae_a, CONFIG, features=[1, 1], progress=False)
    with pytest.raises(ValueError, match="d_in=8"):
        feature_cards(data, random_sae("standard", d_in=8), CONFIG, progress=False)
    with pytest.raises(ValueError, match="'k_contexts': 0, 'histogram_bins': 0"):
        FeatureCardConfig(k_contexts=0, histogram_bins=0)
    with pytest.raises(ValueError, match=">= 0"):
        FeatureCardConfig(left=-1)
