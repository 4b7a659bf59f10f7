"""Hidden-state approximation / layer pruning through TransformerLens hooks."""

import copy

import pytest
import torch

from sae_lens import HookedSAETransformer

from sae_lens_match import Matching, UnmatchedRule, fold, match, permute
from sae_lens_match.evaluation import (
    LayerPruningConfig,
    Replacement,
    ReplacementConfig,
    current_reconstruction,
    evaluate_replacements,
    explained_variance,
    layer_drop,
    matched_replacement,
    run_layer_pruning,
)
from sae_lens_match.matching.matchers import run_matcher
from sae_lens_match.sources import TokenSet
from tests.planted_model import BOS, D_MODEL, planted, sampled_tokens, tiny_model
from tests.helpers import random_sae


@pytest.fixture(scope="module")
def world():
    p = planted()
    return p, TokenSet(p.model, p.tokens, bos_token_id=BOS, progress=False)


def _matching(perm: torch.Tensor, d_b: int | None = None, one_to_one: bool = True) -> Matching:
    return Matching(perm.long(), torch.zeros(len(perm), dtype=torch.float64), d_b or len(perm), one_to_one=one_to_one)


def _by_method(rows):
    return {r["method"]: r for r in rows}


KEEP_ALL = UnmatchedRule()  # the plain bijection: paper Eq. 5


def layer_pruning(data, saes, matchings, baselines=("layer_drop", "current", "previous"), **replacement):
    config = LayerPruningConfig(ReplacementConfig(**{"unmatched_rule": KEEP_ALL, **replacement}), tuple(baselines))
    return run_layer_pruning(data, saes, matchings, config).rows()


def replacement(a, b, m, **options):
    return matched_replacement(a, b, m, config=ReplacementConfig(**{"unmatched_rule": KEEP_ALL, **options}))


def test_true_permutation_beats_random_ones_and_the_baselines(world):
    p, data = world
    g = torch.Generator().manual_seed(0)
    randoms = {f"random{k}": [_matching(torch.randperm(2 * D_MODEL, generator=g))] for k in range(3)}
    rows = _by_method(layer_pruning(data, [p.sae_a, p.sae_b], {"true": [_matching(p.truth)], **randoms}))
    true = rows["true"]
    # with the planted matching the approximation is the affine fit itself: EV = its R^2
    assert true["explained_variance"] == pytest.approx(p.fit_r2, abs=1e-4)
    assert rows["layer_drop"]["explained_variance"] == pytest.approx(p.drop_r2, abs=1e-4)
    # planted SAEs are exact autoencoders: the "current" baseline loses nothing
    assert rows["current"]["explained_variance"] == pytest.approx(1.0, abs=1e-5)
    assert rows["current"]["delta_loss"] == pytest.approx(0.0, abs=1e-4)
    for name in randoms:
        assert rows[name]["explained_variance"] < true["explained_variance"] - 0.5
        assert rows[name]["delta_loss"] > true["delta_loss"] + 0.5
    assert true["explained_variance"] > rows["layer_drop"]["explained_variance"]
    assert 0 < true["delta_loss"] < rows["layer_drop"]["delta_loss"]
    # BOS is excluded: 24 rows x 11 non-BOS positions
    assert {r["n_positions"] for r in rows.values()} == {24 * 11}
    assert true["pair"] == 0 and true["source_hook"] == "blocks.0.hook_resid_post" and true["kind"] == "matcher"


def test_sae_match_recovers_the_planted_approximation(world):
    p, data = world
    rows = _by_method(layer_pruning(data, [p.sae_a, p.sae_b], {"sae_match": [match(p.sae_a, p.sae_b)]}, baselines=()))
    assert list(rows) == ["sae_match"]
    assert rows["sae_match"]["explained_variance"] == pytest.approx(p.fit_r2, abs=1e-4)


@torch.no_grad()
def test_error_term_splicing_recovers_the_clean_model_exactly():
    model = tiny_model()
    tokens = sampled_tokens(model, n_rows=8)
    sae = random_sae("standard", d_in=D_MODEL, d_sae=48, seed=3)  # a poor SAE: errors are large
    sae.cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    clean_logits = model(tokens)
    clean_loss = model(tokens, return_type="loss")
    # SAELens's own splice with the error term is exact ...
    torch.testing.assert_close(model.run_with_saes(tokens, saes=[sae], use_error_term=True), clean_logits, atol=1e-5, rtol=0)
    spliced_loss = model.run_with_saes(tokens, saes=[sae], use_error_term=False, return_type="loss")
    assert float(spliced_loss - clean_loss) > 0.05
    # ... and our hook-based splice agrees with it, with and without the error term
    data = TokenSet(model, tokens, bos_token_id=None, progress=False)  # every position, like SAELens
    plain, exact = evaluate_replacements(data, [current_reconstruction(sae, data=data), current_reconstruction(sae, data=data, error_term=True)])
    assert plain.clean_loss == pytest.approx(float(clean_loss), abs=1e-5)
    assert plain.loss == pytest.approx(float(spliced_loss), abs=1e-5)
    assert exact.delta_loss == pytest.approx(0.0, abs=1e-5)
    assert exact.explained_variance == pytest.approx(1.0, abs=1e-6) and exact.mse < 1e-10
    # the error term also turns a matched replacement into the clean model when the matching
    # is SAE t+1's own identity (A = B at the same hook)
    same = matched_replacement(sae, sae, _matching(torch.arange(48)), data=data, config=ReplacementConfig(fold=False, error_term=True, unmatched_rule=KEEP_ALL))
    assert evaluate_replacements(data, [same])[0].delta_loss == pytest.approx(0.0, abs=1e-5)


def test_bos_positions_are_never_replaced_or_scored(world):
    p, data = world
    seen = []

    def wreck(xs, xt):
        seen.append(xt.shape[0])
        return xt + 100.0

    hook = "blocks.1.hook_resid_post"
    wrecked = Replacement("wreck", hook, wreck, d_in=D_MODEL)
    identity = Replacement("identity", hook, lambda xs, xt: xt.clone())
    r_wreck, r_id = evaluate_replacements(data, [wrecked, identity])
    assert sum(seen) == int((p.tokens != BOS).sum()) == r_wreck.n_positions
    assert r_id.delta_loss == 0.0 and r_id.explained_variance == 1.0
    # a constant offset keeps the (centred) explained variance at 1 but not the MSE
    assert r_wreck.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert r_wreck.mse == pytest.approx(100.0**2 * D_MODEL, rel=1e-6)
    # the BOS position's own prediction is excluded: replacing only there changes nothing
    with_bos = TokenSet(p.model, p.tokens, bos_token_id=None, progress=False)
    assert with_bos.n_positions() == p.tokens.numel() > data.n_positions()


def test_explained_variance_definition():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g) * 3 + 5
    assert explained_variance(x, x) == 1.0
    assert explained_variance(x + 7.0, x) == pytest.approx(1.0)  # offsets are not variance
    assert explained_variance(x.mean(0).expand_as(x), x) == pytest.approx(0.0, abs=1e-6)
    noise = torch.randn(200, 8, generator=g)
    expected = 1 - (noise - noise.mean(0)).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert explained_variance(x + noise, x) == pytest.approx(float(expected))


def _scaled_twin(sae, factor: float):
    """The same JumpReLU SAE in other units: pre-activations and threshold x factor, decoder / factor."""
    twin = copy.deepcopy(sae)
    with torch.no_grad():
        twin.W_enc.mul_(factor)
        twin.b_enc.mul_(factor)
        twin.threshold.mul_(factor)
        twin.W_dec.div_(factor)
    return twin


def test_folded_inference_undoes_threshold_scale_differences():
    a = random_sae("jumprelu", d_in=D_MODEL, d_sae=32, seed=1)
    a.cfg.metadata.hook_name = "blocks.0.hook_resid_post"
    shuffle = torch.randperm(32, generator=torch.Generator().manual_seed(2))
    b = permute(_scaled_twin(a, 2.0), shuffle)  # B fires exactly where A does, with 2x the activation
    b.cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    truth = torch.empty_like(shuffle)
    truth[shuffle] = torch.arange(32)
    m = _matching(truth)
    x = torch.randn(64, D_MODEL, generator=torch.Generator().manual_seed(3)) * 2
    recon = a.decode(a.encode(x))
    torch.testing.assert_close(a.decode(a.encode(x)), b.decode(b.encode(x)), atol=1e-5, rtol=1e-5)
    folded = replacement(a, b, m, fold=True).fn(x, None)
    unfolded = replacement(a, b, m, fold=False).fn(x, None)
    # folded: A's activation arrives in units of its threshold, B's decoder carries B's threshold
    torch.testing.assert_close(folded, recon, atol=1e-5, rtol=1e-5)
    # unfolded: A's raw activation meets B's raw decoder, half the size
    torch.testing.assert_close(unfolded - a.b_dec, 0.5 * (recon - a.b_dec), atol=1e-5, rtol=1e-5)
    assert torch.equal(fold(a).W_dec, fold(b).W_dec[shuffle.argsort()])  # folding made them one SAE


def test_quantile_rule_and_many_to_one_transfer():
    a = random_sae("standard", d_in=D_MODEL, d_sae=6, seed=4)
    b = random_sae("standard", d_in=D_MODEL, d_sae=5, seed=5)
    a.cfg.metadata.hook_name, b.cfg.metadata.hook_name = "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"
    perm = torch.tensor([3, 3, 0, -1, 4, 1])  # A0 and A1 both go to B3; A3 has no match
    cost = torch.tensor([0.1, 0.2, 0.9, float("nan"), 0.3, 0.8], dtype=torch.float64)
    m = Matching(perm, cost, 5, one_to_one=False)
    x = torch.randn(40, D_MODEL, generator=torch.Generator().manual_seed(6)) * 2
    f = a.encode(x)
    to_b = torch.zeros(40, 5)
    for i, j in enumerate(perm.tolist()):
        if j >= 0:
            to_b[:, j] += f[:, i]
    # without a threshold, the unmatched A3 keeps its own decoder row (or is dropped)
    own = to_b @ b.W_dec + b.b_dec + f[:, [3]] @ a.W_dec[[3]]
    torch.testing.assert_close(replacement(a, b, m, fold=False).fn(x, None), own, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(replacement(a, b, m, fold=False, unmatched="drop").fn(x, None), to_b @ b.W_dec + b.b_dec, atol=1e-5, rtol=1e-5)
    # quantile 0.5 of the matched costs (0.1, 0.2, 0.3, 0.8, 0.9) is 0.3: A2 and A5 become unmatched
    kept = to_b.clone()
    kept[:, 0] -= f[:, 2]
    kept[:, 1] -= f[:, 5]
    rule = kept @ b.W_dec + b.b_dec + f[:, [2, 3, 5]] @ a.W_dec[[2, 3, 5]]
    rep = replacement(a, b, m, fold=False, unmatched_rule=UnmatchedRule(quantile=0.5))
    torch.testing.assert_close(rep.fn(x, None), rule, atol=1e-5, rtol=1e-5)
    assert rep.meta["n_matched"] == 3 and "0.5 quantile" in rep.meta["unmatched_rule"] and rep.meta["one_to_one"] is False
    # the package-wide default rule needs the matching's chance level, which this one lacks
    with pytest.raises(ValueError, match="records no random_pair_cost"):
        matched_replacement(a, b, m)


def test_bad_input_fails_clearly(world):
    p, data = world
    nameless = copy.deepcopy(p.sae_b)
    nameless.cfg.metadata.hook_name = None
    with pytest.raises(ValueError, match="has no hook name"):
        layer_drop(p.sae_a, nameless, data=data)
    elsewhere = copy.deepcopy(p.sae_b)
    elsewhere.cfg.metadata.hook_name = "blocks.7.hook_resid_post"
    with pytest.raises(ValueError, match="'blocks.7.hook_resid_post' is not a hook"):
        layer_pruning(data, [p.sae_a, elsewhere], {})
    narrow = random_sae("standard", d_in=8, d_sae=16)
    narrow.cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    with pytest.raises(ValueError, match="d_in=8 but hook 'blocks.1.hook_resid_post' gives vectors of width 16"):
        evaluate_replacements(data, [current_reconstruction(narrow, data=data)])
    backwards = replacement(p.sae_b, p.sae_a, _matching(p.truth))  # B's hook runs after A's
    with pytest.raises(RuntimeError, match="did not run before"):
        evaluate_replacements(data, [backwards])
    with pytest.raises(ValueError, match="was it made for these SAEs"):
        replacement(p.sae_a, p.sae_b, _matching(torch.arange(10)))
    with pytest.raises(ValueError, match="not BOS"):
        TokenSet(p.model, p.tokens[:, 1:], bos_token_id=BOS)
    with pytest.raises(ValueError, match="needs a model with a tokenizer"):
        TokenSet(p.model, p.tokens)  # "auto" BOS, but this model has no tokenizer
    spliced = HookedSAETransformer(p.model.cfg)
    spliced.add_sae(p.sae_a)
    with pytest.raises(ValueError, match="reset_saes"):
        TokenSet(spliced, p.tokens, bos_token_id=BOS)


def test_matchings_of_other_layer_pairs_or_directions_are_refused():
    """Each Matching records its SAEs; layer pruning checks them (ΔL 7.2 instead of 0.48 before)."""
    model = tiny_model()
    saes = []
    for layer in range(3):
        sae = random_sae("jumprelu", d_in=D_MODEL, d_sae=32, seed=layer)
        sae.cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_post"
        saes.append(sae)
    data = TokenSet(model, sampled_tokens(model, n_rows=4), bos_token_id=BOS, progress=False)
    m01, m12 = match(saes[0], saes[1]), match(saes[1], saes[2])
    layer_pruning(data, saes, {"sae_match": [m01, m12]}, baselines=())  # in order: fine
    with pytest.raises(ValueError, match=r"matchings\['sae_match'\]\[0\].*source has hook_name='blocks.1.hook_resid_post'"):
        layer_pruning(data, saes, {"sae_match": [m12, m01]}, baselines=())
    with pytest.raises(ValueError, match="was it made for these SAEs, in this direction"):
        layer_pruning(data, saes[:2], {"sae_match": [m01.inverse()]}, baselines=())


def test_layer_pruning_refuses_sae_off_the_residual_stream(world):
    p, data = world
    a, b = copy.deepcopy(p.sae_a), copy.deepcopy(p.sae_b)
    a.cfg.metadata.hook_name, b.cfg.metadata.hook_name = "blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"
    with pytest.raises(ValueError, match=r"replaces the residual stream \(paper Eq. 5\), but SAEs read \['blocks.0.hook_mlp_out'"):
        layer_pruning(data, [a, b], {"true": [_matching(p.truth)]})


def test_a_data_based_matcher_is_never_judged_on_the_tokens_it_was_fitted_on(world):
    p, data = world
    fitted = run_matcher("activation_correlation", p.sae_a, p.sae_b, data=data)
    with pytest.raises(ValueError, match="fitted on the very tokens they would be judged on"):
        layer_pruning(data, [p.sae_a, p.sae_b], {"corr": [fitted]})
    held_out = data.subset(slice(0, 12))
    refit = run_matcher("activation_correlation", p.sae_a, p.sae_b, data=data.subset(slice(12, 24)))
    assert layer_pruning(held_out, [p.sae_a, p.sae_b], {"corr": [refit]}, baselines=())[0]["method"] == "corr"
