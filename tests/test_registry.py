"""Fold rules, solvers, matchers, rewards and judges share one registry type and behave alike."""

import pytest
from sae_lens import JumpReLUSAE

from sae_lens_match import FOLD_RULES, Registry
from sae_lens_match.assignment import SOLVERS
from sae_lens_match.evaluation.explain import JUDGES
from sae_lens_match.lfp.reward import REWARDS
from sae_lens_match.matching.matchers import MATCHERS

REGISTRIES = {"fold rule": (FOLD_RULES, JumpReLUSAE), "assignment solver": (SOLVERS, "dense"), "matcher": (MATCHERS, "sae_match"), "reward": (REWARDS, "vader"), "judge": (JUDGES, "heuristic")}


@pytest.mark.parametrize("what", list(REGISTRIES))
def test_every_registry_behaves_alike(what):
    registry, known = REGISTRIES[what]
    assert isinstance(registry, Registry) and registry.what == what
    value = registry.get(known)
    assert registry.register(known, value) is value  # the same value again: a no-op
    with pytest.raises(ValueError, match=f"A {what} is already registered"):
        registry.register(known, object())
    with pytest.raises(ValueError, match=rf"Unknown {what} 'no-such-entry'; registered: \[.+\]"):
        registry.get("no-such-entry")
    assert registry.find("no-such-entry") is None


def test_register_and_remove():
    registry: Registry[str, int] = Registry("number")
    assert registry.register("one", 1) == 1 and "one" in registry and registry.names() == ["one"]
    assert registry.remove("one") == 1 and "one" not in registry
    with pytest.raises(ValueError, match="Unknown number 'one'; registered: \\[\\]"):
        registry.remove("one")
