import copy
import math

import pytest
import torch
from datasets import Dataset
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from sae_lens_match.lfp.preference_eval import (
    completion_log_probs,
    completion_reward,
    kl_to_base,
    preference_scores,
    sample_completions,
    token_kl,
)
from sae_lens_match.lfp.reward import vader_reward
from sae_lens_match.world.tokenizer import train_tokenizer

TEXTS = ["the film was great and i loved it", "the film was awful and i hated it", "a good movie", "a bad movie", "the plot was fine"] * 20
PAIRS = Dataset.from_dict({
    "prompt": ["the film was", "a", "the plot was", "i"],
    "chosen": [" great", " good movie", " great and i loved it", " loved it"],
    "rejected": [" awful", " bad movie", " awful and i hated it", " hated it"],
})
PROMPTS = ["the film was", "a", "the plot", "i loved", "the"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=400)  # every word of TEXTS one token


def tiny_lm(tok, seed=0, zero=False):
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    model = GPTNeoXForCausalLM(cfg).eval()
    if zero:  # every weight 0: logits 0 everywhere, the uniform distribution whatever the context
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
    return model


def with_bias(model, bias):
    """``model`` with ``bias [d_vocab]`` added to its logits (a real head with a bias, not a mock)."""
    out = copy.deepcopy(model)
    old = out.get_output_embeddings()
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.copy_(bias)
    out.set_output_embeddings(head)
    return out


def answer_tokens(tokenizer, prompt, answer):
    """The answer's tokens as TRL's DPO sees them: after the prompt's, EOS appended."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    ids = tokenizer(prompt + answer + tokenizer.eos_token)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids
    return ids[len(prompt_ids):]


def chosen_only_tokens(tokenizer):
    chosen = {t for p, c in zip(PAIRS["prompt"], PAIRS["chosen"]) for t in answer_tokens(tokenizer, p, c)}
    rejected = {t for p, r in zip(PAIRS["prompt"], PAIRS["rejected"]) for t in answer_tokens(tokenizer, p, r)}
    return sorted(chosen - rejected)


def test_the_base_model_against_itself_has_no_margin_no_accuracy_and_no_kl(tokenizer):
    base = tiny_lm(tokenizer)
    scores = preference_scores(copy.deepcopy(base), base, tokenizer, PAIRS)
    assert scores.n == 4
    assert torch.equal(scores.chosen_reward, torch.zeros(4)) and torch.equal(scores.rejected_reward, torch.zeros(4))
    assert scores.margin == 0.0 and scores.accuracy == 0.0  # ties are not wins
    assert kl_to_base(copy.deepcopy(base), base, tokenizer, PROMPTS, max_new_tokens=6) == 0.0


def test_log_probs_of_a_uniform_model_count_the_answer_tokens_and_eos_only(tokenizer):
    uniform = tiny_lm(tokenizer, zero=True)
    prompts, answers = list(PAIRS["prompt"]), list(PAIRS["chosen"])
    log_probs = completion_log_probs(uniform, tokenizer, prompts, answers, batch_size=3)  # padding across batches
    n_tokens = torch.tensor([len(answer_tokens(tokenizer, p, a)) for p, a in zip(prompts, answers)], dtype=torch.float64)
    assert len(set(n_tokens.tolist())) > 1  # answers of different lengths share a padded batch
    torch.testing.assert_close(log_probs, -n_tokens * math.log(len(tokenizer)))


def test_rewards_and_kl_of_a_planted_bias_on_a_uniform_base_match_closed_forms(tokenizer):
    uniform, v, b, beta = tiny_lm(tokenizer, zero=True), len(tokenizer), 3.0, 0.5
    planted = chosen_only_tokens(tokenizer)
    bias = torch.zeros(v)
    bias[planted] = b
    policy = with_bias(uniform, bias)
    scores = preference_scores(policy, uniform, tokenizer, PAIRS, beta=beta)
    # per token: log pi - log uniform = b * [token planted] - log Z + log V, Z = k e^b + V - k
    k = len(planted)
    log_z = math.log(k * math.exp(b) + v - k)
    for column, rewards in (("chosen", scores.chosen_reward), ("rejected", scores.rejected_reward)):
        expected = [
            beta * sum(b * (t in planted) - log_z + math.log(v) for t in answer_tokens(tokenizer, p, a))
            for p, a in zip(PAIRS["prompt"], PAIRS[column])
        ]
        torch.testing.assert_close(rewards, torch.tensor(expected, dtype=torch.float64))
    # KL of the biased distribution to the uniform one, the same at every position
    p_planted, p_other = math.exp(b - log_z), math.exp(-log_z)
    kl = k * p_planted * math.log(p_planted * v) + (v - k) * p_other * math.log(p_other * v)
    assert kl_to_base(policy, uniform, tokenizer, PROMPTS, max_new_tokens=5) == pytest.approx(kl, rel=1e-9)


def test_a_bias_towards_the_chosen_answers_wins_every_pair_and_its_opposite_none(tokenizer):
    base = tiny_lm(tokenizer, seed=3)
    bias = torch.zeros(len(tokenizer))
    bias[chosen_only_tokens(tokenizer)] = 4.0
    up = preference_scores(with_bias(base, bias), base, tokenizer, PAIRS)
    down = preference_scores(with_bias(base, -bias), base, tokenizer, PAIRS)
    assert up.accuracy == 1.0 and up.margin > 0
    assert down.accuracy == 0.0 and down.margin < 0
    # beta scales the rewards, never the accuracy
    scaled = preference_scores(with_bias(base, bias), base, tokenizer, PAIRS, beta=1.0)
    torch.testing.assert_close(scaled.chosen_reward, up.chosen_reward * 10)
    assert scaled.accuracy == up.accuracy


def test_token_kl_is_exact_on_two_token_distributions():
    p, q = torch.tensor([0.9, 0.1]), torch.tensor([0.5, 0.5])
    kl = token_kl(p.log()[None], q.log()[None])
    assert kl.item() == pytest.approx(0.9 * math.log(1.8) + 0.1 * math.log(0.2))
    assert token_kl(q.log(), p.log()).item() == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1))
    with pytest.raises(ValueError, match="shape"):
        token_kl(torch.zeros(2, 3), torch.zeros(3, 2))


def test_sampling_is_seeded_per_prompt_and_leaves_the_callers_random_state(tokenizer):
    model = tiny_lm(tokenizer, seed=1)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = sample_completions(model, tokenizer, PROMPTS, max_new_tokens=8, seed=5)
    assert torch.equal(torch.rand(1), before)
    again = sample_completions(model, tokenizer, PROMPTS[2:], max_new_tokens=8, seed=5)
    other = sample_completions(model, tokenizer, PROMPTS, max_new_tokens=8, seed=6)
    assert [s.completion for s in first] == [s.completion for s in sample_completions(model, tokenizer, PROMPTS, max_new_tokens=8, seed=5)]
    assert [s.ids.tolist() for s in first[2:]] != [s.ids.tolist() for s in again]  # prompt i's seed depends on i
    assert [s.ids.tolist() for s in first] != [s.ids.tolist() for s in other]
    for s in first:
        assert s.ids[0, : s.n_prompt].tolist() == tokenizer(s.prompt)["input_ids"] and 1 <= s.ids.shape[1] - s.n_prompt <= 8


def test_a_policy_pushed_towards_a_positive_word_earns_more_vader_reward(tokenizer):
    base = tiny_lm(tokenizer, seed=2)
    great, awful = (tokenizer(w, add_special_tokens=False)["input_ids"] for w in (" great", " awful"))
    assert len(great) == len(awful) == 1
    bias = torch.zeros(len(tokenizer))
    bias[great[0]] = 8.0
    kw = dict(max_new_tokens=6, seed=0, scope="completion")
    tuned = completion_reward(with_bias(base, bias), tokenizer, PROMPTS, **kw)
    harsh = completion_reward(with_bias(base, -bias + (torch.arange(len(tokenizer)) == awful[0]) * 8.0), tokenizer, PROMPTS, **kw)
    assert tuned.shape == (len(PROMPTS),)
    assert tuned.mean() > completion_reward(base, tokenizer, PROMPTS, **kw).mean() > harsh.mean()
    # the prefix counts with the default scope: "loved" is a VADER word (the biased policy's
    # completions start with a space, so the prefix's last word stays whole)
    with_prefix = completion_reward(with_bias(base, bias), tokenizer, ["i loved"], max_new_tokens=6, seed=0)
    alone = completion_reward(with_bias(base, bias), tokenizer, ["i loved"], max_new_tokens=6, seed=0, scope="completion")
    assert alone.item() > 0
    assert with_prefix.item() == pytest.approx(alone.item() + vader_reward(["loved"])[0])


def test_bad_input_is_refused_with_a_clear_error(tokenizer):
    model = tiny_lm(tokenizer)
    with pytest.raises(ValueError, match="differ in length"):
        preference_scores(model, model, tokenizer, {"prompt": ["a", "b"], "chosen": [" x"], "rejected": [" y", " z"]})
    with pytest.raises(ValueError, match="No preference pairs"):
        preference_scores(model, model, tokenizer, {"prompt": [], "chosen": [], "rejected": []})
    with pytest.raises(ValueError, match="columns"):
        preference_scores(model, model, tokenizer, {"prompt": ["a"], "chosen": [" x"]})
    with pytest.raises(ValueError, match="beta"):
        preference_scores(model, model, tokenizer, PAIRS, beta=0.0)
    with pytest.raises(ValueError, match="one completion per prompt"):
        completion_log_probs(model, tokenizer, ["a", "b"], [" x"])
    with pytest.raises(ValueError, match="at least one prompt"):
        kl_to_base(model, model, tokenizer, [])
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample_completions(model, tokenizer, ["a"], max_new_tokens=0)
    with pytest.raises(ValueError, match="scope"):
        completion_reward(model, tokenizer, ["a"], scope="prompt")
    with pytest.raises(ValueError, match="positions"):
        completion_log_probs(model, tokenizer, ["the film was"], [" great" * 80])
