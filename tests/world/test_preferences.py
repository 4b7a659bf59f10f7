from sae_lens_match.lfp.reward import vader_reward
from sae_lens_match.sources import vader_lexicon
from sae_lens_match.world import preference_pairs


def test_world_preference_pairs_are_minimal_pairs():
    pairs = preference_pairs(50, prefer="positive", seed=1)
    assert pairs.column_names == ["prompt", "chosen", "rejected"] and len(pairs) == 50
    assert pairs["chosen"] == preference_pairs(50, prefer="positive", seed=1)["chosen"]
    lexicon = vader_lexicon()
    for chosen, rejected in zip(pairs["chosen"], pairs["rejected"]):
        a, b = chosen.split(), rejected.split()
        assert len(a) == len(b), (chosen, rejected)
        differing = [(x, y) for x, y in zip(a, b) if x != y and {x, y} != {"a", "an"}]
        assert differing and all(x.strip(".,!").lower() in lexicon for x, _ in differing), (chosen, rejected)
    chosen_reward = sum(vader_reward(pairs["chosen"]))
    assert chosen_reward > sum(vader_reward(pairs["rejected"]))
    toxic = preference_pairs(50, prefer="negative", seed=1)
    assert toxic["chosen"] == pairs["rejected"] and toxic["rejected"] == pairs["chosen"]
