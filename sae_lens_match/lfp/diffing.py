"""Data-free model diffing with SAE Match: which features did tuning make?

A dictionary trained on the base model's activations and one trained on the tuned model's
(same hook, width, data and seed) are matched by SAE Match. A tuned feature whose best base
partner is expensive (closer to a random partner than to a real one, the package's
:data:`~sae_lens_match.matching.matching.DEFAULT_UNMATCHED` rule) has no counterpart before
tuning. Two dictionaries of the *same* model trained with different seeds already disagree
on some features, so the same count between two base dictionaries is the noise floor.
"""

from __future__ import annotations

from typing import Any, Sequence

from sae_lens import SAE

from sae_lens_match.matching.match import match
from sae_lens_match.matching.matching import DEFAULT_UNMATCHED, UnmatchedRule


def unmatched_features(source: SAE, target: SAE, rule: UnmatchedRule = DEFAULT_UNMATCHED) -> list[int]:
    """Features of ``source`` whose SAE Match partner in ``target`` is unmatched under ``rule``."""
    kept = rule.apply(match(source, target))
    return [int(i) for i in (~kept.matched).nonzero().squeeze(1)]


def model_diff(
    base: SAE, tuned: SAE, control: SAE, *, related: Sequence[int] = (), attributed: Sequence[int] = (), rule: UnmatchedRule = DEFAULT_UNMATCHED
) -> dict[str, Any]:
    """Tuned features with no counterpart in the base model's dictionary, against the noise floor.

    Args:
        base, tuned: dictionaries of the base and the tuned model at the same hook and width.
        control: a second base dictionary trained with another seed (the noise floor).
        related: tuned features labelled related to the task, to count among the changed ones.
        attributed: the tuned features most attributed to the reward, counted the same way.

    Returns:
        ``n_features``, ``changed`` (tuned feature indices), ``fraction_changed``,
        ``control_fraction_changed`` (the same between the two base dictionaries),
        ``related_changed`` (how many of ``related`` are changed) and ``n_related``, and the same
        for ``attributed`` (chance: ``fraction_changed`` of each).
    """
    changed = unmatched_features(tuned, base, rule)
    noise = unmatched_features(control, base, rule)
    n = tuned.cfg.d_sae
    return {
        "n_features": n,
        "rule": rule.describe(),
        "changed": changed,
        "fraction_changed": len(changed) / n,
        "control_fraction_changed": len(noise) / control.cfg.d_sae,
        "related_changed": len(set(changed) & set(related)),
        "n_related": len(related),
        "attributed_changed": len(set(changed) & set(attributed)),
        "n_attributed": len(attributed),
    }
