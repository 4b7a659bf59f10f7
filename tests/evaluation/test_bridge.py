"""The evaluations give the same numbers on a TransformerBridge as on a HookedTransformer.

Both wrap one tiny random Hugging Face GPT-NeoX model built offline (with a word-level
tokenizer), so this also checks that hooks are found through the bridge's
``blocks.L.hook_resid_post`` aliases (whose ``hook.name`` is the bridge's own name).
"""

import pytest
import torch


from sae_lens_match import UnmatchedRule, match
from sae_lens_match.evaluation import LayerPruningConfig, MatchingScoreConfig, ReplacementConfig, run_layer_pruning, run_matching_score
from sae_lens_match.matching.matchers import run_matcher
from sae_lens_match.sources import TokenSet, hooked_from_hf, load_bridge, pack_texts
from tests.helpers import random_sae

D_MODEL, VOCAB = 32, 40


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tokenizers import Tokenizer, models as tok_models, pre_tokenizers
    from transformers import AutoTokenizer, GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("neox")
    vocab = {"<bos>": 0, "<unk>": 1, **{f"w{i}": i + 2 for i in range(VOCAB - 2)}}
    word_level = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=word_level, bos_token="<bos>", eos_token="<bos>", unk_token="<unk>", pad_token="<unk>").save_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))  # TransformerLens needs name_or_path
    config = GPTNeoXConfig(
        vocab_size=VOCAB, hidden_size=D_MODEL, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=32, rotary_pct=0.25, bos_token_id=0, eos_token_id=0, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    hf = GPTNeoXForCausalLM(config).eval()
    hf.save_pretrained(directory)
    bridge = load_bridge(directory, hf_model=hf, tokenizer=tokenizer)
    hooked = hooked_from_hf(directory, hf, tokenizer)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(2, VOCAB, (6, 10), generator=g)
    tokens[:, 0] = 0
    return {"bridge": bridge, "hooked": hooked}, tokens


def test_layer_pruning_and_matchers_agree_on_bridge_and_hooked_transformer(models):
    by_kind, tokens = models
    saes = []
    for layer in range(3):
        sae = random_sae("jumprelu", d_in=D_MODEL, d_sae=48, seed=layer)
        sae.cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_post"
        saes.append(sae)
    matchings = {"sae_match": [match(saes[i], saes[i + 1]) for i in range(2)]}
    results = {}
    for kind, model in by_kind.items():
        data = TokenSet(model, tokens, progress=False)  # BOS from the tokenizer ("auto")
        assert data.bos_token_id == 0
        corr = run_matcher("activation_correlation", saes[0], saes[1], data=data)
        results[kind] = (
            run_layer_pruning(data, saes, matchings, LayerPruningConfig(ReplacementConfig(unmatched_rule=UnmatchedRule()))).rows(),
            run_matching_score(data, saes, matchings, MatchingScoreConfig(UnmatchedRule())).rows()[0],
            corr.permutation,
        )
    (rows_b, score_b, corr_b), (rows_h, score_h, corr_h) = results["bridge"], results["hooked"]
    assert len(rows_b) == len(rows_h) == 2 * 4
    for rb, rh in zip(rows_b, rows_h):
        assert (rb["pair"], rb["method"]) == (rh["pair"], rh["method"])
        for key in ("delta_loss", "explained_variance", "clean_loss", "mse"):
            assert rb[key] == pytest.approx(rh[key], rel=1e-4, abs=1e-4), (rb["method"], key)
    # the replacement changed something (so agreement is not trivially about identical clean runs)
    assert all(abs(r["delta_loss"]) > 1e-4 for r in rows_b if r["method"] != "current")
    for key, value in score_b.items():
        assert value == pytest.approx(score_h[key], abs=1e-5) if isinstance(value, float) else value == score_h[key]
    assert torch.equal(corr_b, corr_h)


def test_pack_texts_makes_bos_rows_that_token_sets_accept(models):
    by_kind, _ = models
    bridge = by_kind["bridge"]
    texts = ["w1 w2 w3", "w4 w5", "w6 w7 w8 w9 w10", "w11"]  # 3 + 2 + 5 + 1 tokens, 4 BOS
    rows = pack_texts(bridge.tokenizer, texts, seq_len=5)
    assert rows.shape == (3, 5) and (rows[:, 0] == 0).all()
    assert rows[0].tolist() == [0, 0, 3, 4, 5]  # row BOS, then the first text with its own BOS
    assert rows[1].tolist() == [0, 0, 6, 7, 0]
    data = TokenSet(bridge, rows, progress=False)
    assert data.n_positions() == int((rows != 0).sum()) == 9
    with pytest.raises(ValueError, match="fewer than one row"):
        pack_texts(bridge.tokenizer, ["w1"], seq_len=10)
