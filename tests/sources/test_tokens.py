import pytest
import torch
from transformers import AutoTokenizer

from sae_lens_match.sources import TokenSet, pack_texts, token_dataset


@pytest.fixture(scope="module")
def tokenizer(world_root):
    return AutoTokenizer.from_pretrained(world_root / "model")


def test_packing_joins_texts_behind_bos_and_starts_every_row_with_it(tokenizer):
    texts = ["a good film", "a bad one, really", "fine"]
    rows = pack_texts(tokenizer, texts, 5)
    stream = [t for text in texts for t in [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]]
    assert rows.shape == (len(stream) // 4, 5)
    assert (rows[:, 0] == tokenizer.bos_token_id).all()
    assert rows[:, 1:].reshape(-1).tolist() == stream[: rows.shape[0] * 4]
    assert token_dataset(rows)["tokens"] == rows.tolist()
    with pytest.raises(ValueError, match="fewer than one row of 64"):
        pack_texts(tokenizer, ["short"], 64)


def test_packing_falls_back_to_eos_where_there_is_no_bos(tokenizer):
    class NoBos:
        bos_token_id, eos_token_id = None, 7

        def __call__(self, texts, add_special_tokens):
            return {"input_ids": [[1, 2, 3] for _ in texts]}

    assert pack_texts(NoBos(), ["x", "y"], 4).tolist() == [[7, 7, 1, 2], [7, 3, 7, 1]]


def test_token_sets_check_their_rows_and_fingerprint_them():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    model = HookedTransformer(HookedTransformerConfig(n_layers=1, d_model=8, d_head=4, n_heads=2, d_mlp=16, n_ctx=6, d_vocab=10, act_fn="gelu", device="cpu"))
    tokens = torch.tensor([[0, 3, 4, 5], [0, 6, 0, 7]])
    data = TokenSet(model, tokens, bos_token_id=0, progress=False)
    assert data.n_positions() == 5
    assert data.subset(slice(1, 2)).tokens.tolist() == [[0, 6, 0, 7]]
    assert data.fingerprint() == TokenSet(model, tokens.clone(), bos_token_id=0).fingerprint()
    assert data.fingerprint() != data.subset(slice(0, 1)).fingerprint()
    assert data.fingerprint() != TokenSet(model, tokens, bos_token_id=None).fingerprint()
    with pytest.raises(ValueError, match="Row 0 starts with token 3, not BOS"):
        TokenSet(model, tokens[:, 1:], bos_token_id=0)
    with pytest.raises(ValueError, match="needs a model with a tokenizer"):
        TokenSet(model, tokens)
