"""Top-activating contexts, the offline heuristic explainer/judge, and judging a matching."""

import pytest
import torch

from sae_lens_match import Matching
from sae_lens_match.evaluation.explain import (
    ContextOverlapJudge,
    Example,
    Explainer,
    FeatureContexts,
    Judge,
    TopTokensExplainer,
    JudgingConfig,
    judge_matching,
    run_judging,
    summarize_verdicts,
    top_activating_contexts,
)
from sae_lens_match.matching import random_matching
from sae_lens_match.sources import TokenSet
from tests.planted_model import BOS, planted


@pytest.fixture(scope="module")
def world():
    p = planted()
    return p, TokenSet(p.model, p.tokens, bos_token_id=BOS, batch_size=7, progress=False)


@torch.no_grad()
def test_top_contexts_are_the_true_maxima_with_windows(world):
    p, data = world
    features = [0, 5, 31]
    contexts = top_activating_contexts(data, p.sae_a, features, k=4, left=3, right=1)
    _, cache = p.model.run_with_cache(p.tokens, names_filter=[p.sae_a.cfg.metadata.hook_name])
    acts = p.sae_a.encode(cache[p.sae_a.cfg.metadata.hook_name])  # [rows, seq, d_sae]
    acts[p.tokens == BOS] = 0.0
    for feature, ctx in zip(features, contexts):
        assert ctx.feature == feature and ctx.sae == "blocks.0.hook_resid_post"
        flat = acts[..., feature].flatten()
        top = flat.topk(4).values
        assert [e.activation for e in ctx.examples] == pytest.approx(top.tolist(), rel=1e-5)
        assert ctx.frequency == pytest.approx(float((flat > 0).double().sum() / (p.tokens != BOS).sum()))
        for e in ctx.examples:
            assert p.tokens[e.row, e.position] != BOS
            assert e.activations[e.center] == pytest.approx(e.activation, rel=1e-5)
            lo = max(0, e.position - 3)
            assert list(e.token_ids) == p.tokens[e.row, lo : e.position + 2].tolist()
            assert e.activations == pytest.approx(acts[e.row, lo : e.position + 2, feature].tolist(), rel=1e-5, abs=1e-6)
            assert e.tokens[e.center] == f"<{int(p.tokens[e.row, e.position])}>"  # no tokenizer: ids
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        top_activating_contexts(data, p.sae_a, [32])


def _ctx(feature, spots, tokens):
    examples = tuple(Example(r, q, 1.0, (t,), (1.0,), (0,), 0) for (r, q), t in zip(spots, tokens))
    return FeatureContexts("x", feature, examples, 0.1, 100)


def test_heuristics_label_by_overlap_and_say_they_are_heuristics():
    judge, explainer = ContextOverlapJudge(), TopTokensExplainer()
    assert isinstance(judge, Judge) and isinstance(explainer, Explainer)
    a = _ctx(0, [(0, 1), (0, 2), (1, 3), (2, 4)], [" good", " good", " great", " fine"])
    same = _ctx(1, [(0, 1), (0, 2), (1, 3), (5, 5)], [" good", " good", " great", " nice"])
    maybe = _ctx(2, [(7, 1), (7, 2), (8, 3), (9, 4)], [" good", " great", " awful", " dull"])
    other = _ctx(3, [(7, 1), (7, 2), (8, 3), (9, 4)], [" the", " a", " of", " and"])
    labels = [judge.judge(a, b) for b in (same, maybe, other)]
    assert [v.label for v in labels] == ["SAME", "MAYBE", "DIFFERENT"]
    assert labels[0].score == pytest.approx(3 / 5) and labels[2].score == 0.0
    assert all(v.source == "heuristic:context-overlap" for v in labels)
    dead = FeatureContexts("x", 9, (), 0.0, 100)
    assert judge.judge(a, dead).label is None and "never fired" in judge.judge(a, dead).error
    text = explainer.explain(a)
    assert text.source == "heuristic:top-tokens" and text.text.startswith("top tokens: ' good' (2/4)")
    assert explainer.explain(dead).text == "never fires on this data"
    with pytest.raises(ValueError):
        ContextOverlapJudge(same=0.1, maybe=0.5)


def test_judging_a_matching_separates_planted_pairs_from_random_ones(world):
    p, data = world
    truth = Matching(p.truth, torch.zeros(32, dtype=torch.float64), 32)
    shuffled = random_matching(truth, seed=3)
    judge = ContextOverlapJudge()
    config = JudgingConfig(n_features=12, seed=0)
    rows = judge_matching(data, p.sae_a, p.sae_b, truth, judge, explainer=TopTokensExplainer(), config=config)
    chance = judge_matching(data, p.sae_a, p.sae_b, shuffled, judge, config=config)
    assert len(rows) == 12 and rows == sorted(rows, key=lambda r: r["feature_a"])
    assert all(r["feature_b"] == int(p.truth[r["feature_a"]]) for r in rows)
    assert all(r["judge"] == "heuristic:context-overlap" and r["explainer"] == "heuristic:top-tokens" for r in rows)
    ours, theirs = summarize_verdicts(rows), summarize_verdicts(chance)
    assert ours["heuristic"] is True and ours["n_labelled"] == 12
    mean = lambda rs: sum(r["score"] for r in rs) / len(rs)  # noqa: E731
    assert mean(rows) > mean(chance) + 0.2
    assert ours["frac_same"] + ours["frac_maybe"] > theirs["frac_same"] + theirs["frac_maybe"]
    with pytest.raises(ValueError, match="no match"):
        judge_matching(data, p.sae_a, p.sae_b, truth.with_unmatched(max_cost=-1.0), judge, features=[0])
    # the whole stack at once: one typed row per judged pair
    result = run_judging(data, [p.sae_a, p.sae_b], {"truth": [truth]}, judge, explainer=TopTokensExplainer(), config=config)
    assert [r["feature_a"] for r in result.rows()] == [r["feature_a"] for r in rows] and {r["method"] for r in result.rows()} == {"truth"}
