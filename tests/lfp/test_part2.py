"""Part 2 as one call: both kinds of triples, the validation steps, and step-by-step resume."""

import json
from dataclasses import replace

import pytest

from sae_lens_match import world
from sae_lens_match.lfp.contrastive import SwapWords, contrastive_triples, preference_triples
from sae_lens_match.lfp.part2 import Part2Config, Validation, run_part2
from sae_lens_match.lfp.reward import vader_reward
from sae_lens_match.sources.tokens import TokenSet


@pytest.mark.slow
def test_part2_runs_both_probes_and_resumes_step_by_step(world_root, tmp_path):
    model = world.load_model("hooked_sae")
    saes = world.load_saes("mlp_out", layers=[1, 2])
    vocab = world.vocabulary()
    swaps = SwapWords(tuple(w.word for w in vocab.adjectives[1]), tuple(w.word for w in vocab.adjectives[-1]), vocab.neutral_adjectives)
    triples = contrastive_triples(world.corpus("test", 60), {"adj": swaps})
    preferences = preference_triples(world.preference_pairs(24, split="test"), vocab.neutral_adjectives)
    validation = Validation(
        shared=[list(range(8)), list(range(8))], contexts=TokenSet(model, world.tokens("test", 16), progress=False),
        prompts=world.review_prefixes(6, split="test"), reward=vader_reward,
    )
    cfg = Part2Config(n_boot=50, n_explained=8, ablation_prompts=6, completion_tokens=6, n_random=1)
    run = lambda c: run_part2(model, model, saes, triples, tmp_path, c, validation, preference_triples=preferences)  # noqa: E731

    first = run(cfg)
    assert first["preference"]["n_test_triples"] == round(24 * cfg.test_fraction)
    assert 0.0 <= first["preference"]["tuned"]["accuracy"] <= 1.0 and first["preference"]["xavier"]["n"] == 2 * first["preference"]["n_test_triples"]
    assert len(first["attribution"]["top_features"]) == 2 and first["ablation"]["attributed"]["n_features"] == sum(map(len, first["attribution"]["top_features"]))
    assert json.loads((tmp_path / "part2.json").read_text()) == first
    assert (tmp_path / "preference_table.csv").is_file() and (tmp_path / "word_table.csv").is_file()
    steps = tmp_path / "part2_steps"
    stamps = lambda: {d.name: (d / "stage.json").stat().st_mtime_ns for d in steps.iterdir()}  # noqa: E731
    before = stamps()
    assert set(before) == {"codes", "labels", "attribution", "ablation"}

    assert run(cfg) == first and stamps() == before  # a rerun reuses every step
    changed = run(replace(cfg, n_random=2))  # only the ablation depends on it
    after = stamps()
    assert {name for name in before if after[name] != before[name]} == {"ablation"}
    assert changed["ablation"]["random"]["n_draws"] == 2 and changed["tuned"] == first["tuned"]
