import pytest

from sae_lens_match.lfp.reward import REWARDS, get_reward, register_reward, trl_reward, vader_reward, vader_tokens


def test_vader_reward_on_hand_checked_sentences():
    # VADER lexicon: love 3.2, terrible -2.1, awful -2.0, bad -2.5, great 3.1, ":)" 2.0
    assert vader_reward(["I love this movie"]) == [pytest.approx(3.2 / 5)]
    assert vader_reward(["Terrible, awful and BAD."]) == [pytest.approx((-2.1 - 2.0 - 2.5) / 5)]
    assert vader_reward(["great film :)"]) == [pytest.approx((3.1 + 2.0) / 5)]
    assert vader_reward(["the film has a plot"]) == [0.0]
    assert vader_reward(["great " * 100, "awful " * 100]) == [10.0, -10.0]


def test_tokenisation_is_documented_behaviour():
    assert vader_tokens("I didn't LOVE it :) great!!") == ["i", "didn't", "love", "it", ":)", "great", "!!"]


def test_registry_and_trl_adapter():
    assert get_reward("vader") is vader_reward and "vader" in REWARDS
    with pytest.raises(ValueError, match="already registered"):
        register_reward("vader", lambda texts: [0.0] * len(texts))
    with pytest.raises(ValueError, match="Unknown reward 'nope'"):
        get_reward("nope")
    # the paper's reward scores prefix + completion: (awful -2.0 + love 3.2) / 5
    fn = trl_reward("vader")
    assert fn(prompts=["The film was awful."], completions=[" I love it"], extra=[1]) == [pytest.approx(0.24)]
    conversational = [[{"role": "assistant", "content": "I love it"}]]
    assert fn(prompts=[[{"role": "user", "content": "The film was awful."}]], completions=conversational) == [pytest.approx(0.24)]
    completion_only = trl_reward("vader", "completion")
    assert completion_only(prompts=["The film was awful."], completions=[" I love it"]) == [pytest.approx(0.64)]
    assert completion_only(prompts=["p"], completions=conversational) == [pytest.approx(0.64)]
    with pytest.raises(ValueError, match="scope must be"):
        trl_reward("vader", "prefix")
