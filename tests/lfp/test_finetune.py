import shutil

import pytest
import torch
from datasets import Dataset
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from sae_lens_match.lfp.finetune import dpo, sentiment_rl
from sae_lens_match.world.tokenizer import train_tokenizer

TEXTS = ["the film was great and i loved it", "the film was awful and i hated it", "a good movie", "a bad movie"] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=300)


def tiny_lm(tok, seed=0):
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    return GPTNeoXForCausalLM(cfg)


PAIRS = Dataset.from_dict({"prompt": ["the film was"] * 16, "chosen": [" great"] * 16, "rejected": [" awful"] * 16})


def test_sentiment_rl_learns_from_the_vader_reward(tmp_path, tokenizer):
    result = sentiment_rl(tiny_lm(tokenizer), tokenizer, ["the film was", "a"] * 8, output_dir=tmp_path, batch_size=4, num_generations=2, max_completion_length=6, steps=2)
    assert [e["step"] for e in result.log if "rewards/vader_reward/mean" in e] == [1, 2]


@pytest.mark.parametrize("trust_region", [False, True])
def test_tr_dpo_moves_the_reference_and_dpo_does_not(tmp_path, tokenizer, trust_region):
    model = tiny_lm(tokenizer)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    result = dpo(model, tokenizer, PAIRS, output_dir=tmp_path, trust_region=trust_region, sync_steps=2, steps=4, batch_size=4, learning_rate=1e-3)
    changed = lambda m: any(not torch.equal(start[k], v) for k, v in m.state_dict().items())  # noqa: E731
    assert changed(result.model)
    assert changed(result.ref_model) is trust_region
    losses = [entry["loss"] for entry in result.log if "loss" in entry]
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_sentiment_rl_resumes_an_interrupted_run_and_never_another(tmp_path, tokenizer):
    def length(texts):  # differs between completions, so every step moves the weights
        return [float(len(t)) for t in texts]

    model, prompts = tiny_lm(tokenizer), ["the film was", "a"] * 8
    kw = dict(batch_size=4, num_generations=2, max_completion_length=6, save_steps=2, steps=3, reward=length)
    weights = lambda result: {k: v.clone() for k, v in result.model.state_dict().items()}  # noqa: E731
    first = sentiment_rl(model, tokenizer, prompts, output_dir=tmp_path / "run", **kw)
    expected = weights(first)
    shutil.rmtree(tmp_path / "run" / "checkpoint-3")  # killed after step 2's checkpoint
    resumed = sentiment_rl(model, tokenizer, prompts, output_dir=tmp_path / "run", **kw)
    assert [e["step"] for e in resumed.log if "reward" in e] == [1, 2, 3]  # 1-2 restored, 3 trained
    # exactly the uninterrupted run: every weight restored (transformers alone skips the LM
    # head, saved under its legacy name), and the sampling stream with it
    assert all(torch.equal(v, expected[k]) for k, v in weights(resumed).items())
    # rerunning the finished run trains nothing more (transformers alone trains one extra step)
    finished = sentiment_rl(model, tokenizer, prompts, output_dir=tmp_path / "run", **kw)
    assert [e["step"] for e in finished.log if "reward" in e] == [1, 2, 3]
    assert all(torch.equal(v, expected[k]) for k, v in weights(finished).items())
    # Other settings into the same folder: trained afresh, never resumed from the old checkpoints.
    other = sentiment_rl(model, tokenizer, prompts, output_dir=tmp_path / "run", **{**kw, "learning_rate": 1e-3})
    fresh = sentiment_rl(model, tokenizer, prompts, output_dir=tmp_path / "fresh", **{**kw, "learning_rate": 1e-3})
    fresh_weights = weights(fresh)
    assert all(torch.equal(v, fresh_weights[k]) for k, v in weights(other).items())
    assert any(not torch.equal(v, expected[k]) for k, v in fresh_weights.items())


def test_recipes_refuse_bad_input(tmp_path, tokenizer):
    model = tiny_lm(tokenizer)
    with pytest.raises(ValueError, match="missing \\['rejected'\\]"):
        dpo(model, tokenizer, Dataset.from_dict({"prompt": ["a"], "chosen": ["b"]}), output_dir=tmp_path)
    with pytest.raises(ValueError, match="multiple of num_generations"):
        sentiment_rl(model, tokenizer, ["a"], output_dir=tmp_path, batch_size=3, num_generations=2)
    with pytest.raises(ValueError, match="Unknown reward 'nope'"):
        sentiment_rl(model, tokenizer, ["a"], output_dir=tmp_path, reward="nope", batch_size=2, num_generations=2)


def test_tr_dpo_keeps_its_mixed_reference_across_a_resume(tmp_path, tokenizer):
    kw = dict(trust_region=True, sync_steps=1, steps=2, save_steps=2, batch_size=4, learning_rate=1e-3, output_dir=tmp_path)
    first = dpo(tiny_lm(tokenizer), tokenizer, PAIRS, **kw)
    mixed = {k: v.clone() for k, v in first.ref_model.state_dict().items()}
    base = tiny_lm(tokenizer).state_dict()
    assert any(not torch.equal(mixed[k], base[k]) for k in base)  # the reference moved
    # Rerun: resumes from checkpoint-2 (nothing left to train). Its reference must be the
    # mixed one saved with the checkpoint, not a fresh copy of the starting model.
    again = dpo(tiny_lm(tokenizer), tokenizer, PAIRS, **kw)
    assert all(torch.equal(v, mixed[k]) for k, v in again.ref_model.state_dict().items())


def test_tr_dpo_that_would_never_sync_is_refused(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="sync_steps=512 >= steps=60 never updates its reference"):
        dpo(tiny_lm(tokenizer), tokenizer, PAIRS, output_dir=tmp_path, trust_region=True, steps=60)
