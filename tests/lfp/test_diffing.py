"""Data-free model diffing: planted changes are found, and nothing else."""

import torch

from sae_lens_match import permute
from sae_lens_match.lfp.diffing import model_diff, unmatched_features
from tests.helpers import random_sae


def test_model_diff_finds_exactly_the_features_tuning_replaced():
    # d_in 64: random pairs cost close to their median, far above the rule's half of it
    base = random_sae("standard", d_in=64, d_sae=64, seed=0)
    tuned = permute(base, torch.randperm(64, generator=torch.Generator().manual_seed(1)))
    fresh = random_sae("standard", d_in=64, d_sae=64, seed=2)
    replaced = [3, 17, 40, 41, 63]
    with torch.no_grad():
        for name in ("W_dec", "W_enc", "b_enc"):
            param, new = getattr(tuned, name), getattr(fresh, name)
            if name == "W_enc":
                param[:, replaced] = new[:, replaced]
            else:
                param[replaced] = new[replaced]
    assert unmatched_features(base, base) == []
    control = random_sae("standard", d_in=64, d_sae=64, seed=5)
    result = model_diff(base, tuned, control, related=[3, 4])
    assert result["changed"] == replaced and result["fraction_changed"] == 5 / 64
    assert result["related_changed"] == 1 and result["n_related"] == 2
    assert result["control_fraction_changed"] > 0.5  # an unrelated dictionary: mostly "changed"
