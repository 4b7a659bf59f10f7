"""Reruns into the same folder reuse only what was made from the same inputs and config and
is intact; everything else is recomputed. Each test is a user's rerun and asserts its answer."""

import json
import logging
import os
import socket

import pytest
import torch

from sae_lens_match import Matching, match, match_layers, world
from sae_lens_match.cli import main
from sae_lens_match.lfp.dictionaries import DictionaryConfig
from sae_lens_match.lfp.pipeline import FeedbackData, LFPConfig, run_lfp
from sae_lens_match.matching import make_stack
from sae_lens_match.world.build import build_world


def test_matching_another_stack_through_loaders_of_the_same_name_gives_its_own_pairs(tmp_path):
    first, second = make_stack(n_layers=2, d_in=8, d_sae=16, seed=0).saes, make_stack(n_layers=2, d_in=8, d_sae=16, seed=1).saes

    def loaders(saes):  # same __qualname__ for both stacks
        return [lambda s=s: s for s in saes]

    match_layers(loaders(first), out_dir=tmp_path, progress=False)
    (got,) = match_layers(loaders(second), out_dir=tmp_path, progress=False)
    assert torch.equal(got.permutation, match(*second).permutation)
    assert not torch.equal(got.permutation, match(*first).permutation)


@pytest.mark.parametrize("how", ["flipped", "truncated", "empty", "random", "directory"])
def test_a_damaged_pair_file_is_recomputed_on_resume(tmp_path, caplog, how):
    saes = make_stack(n_layers=3, d_in=8, d_sae=16, seed=0).saes
    clean = match_layers(saes, out_dir=tmp_path, progress=False)
    path = tmp_path / "pair_001.safetensors"
    data = bytearray(path.read_bytes())
    if how == "directory":
        path.unlink()
        path.mkdir()
    else:
        damaged = {
            "flipped": data[:-8] + bytes(b ^ 0x55 for b in data[-8:]),  # tensor bytes; header intact
            "truncated": data[: len(data) // 2],
            "empty": b"",
            "random": os.urandom(len(data)),
        }[how]
        path.write_bytes(bytes(damaged))
    if how == "directory":
        with pytest.raises(ValueError, match="is a directory"):  # never deleted: it is not ours to remove
            match_layers(saes, out_dir=tmp_path, progress=False)
        return
    with caplog.at_level(logging.WARNING, logger="sae_lens_match"):
        again = match_layers(saes, out_dir=tmp_path, progress=False)
    assert str(path) in caplog.text and "recomputing" in caplog.text
    for a, b in zip(clean, again):
        assert torch.equal(a.permutation, b.permutation) and torch.equal(a.cost, b.cost)
    Matching.load(path)  # rewritten whole


def test_synthetic_demo_resumes_instead_of_rematching(tmp_path, capsys):
    argv = ["demo", "--synthetic", "--layers", "3", "--d-in", "8", "--d-sae", "32", "--out", str(tmp_path)]
    assert main(argv) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("pair_*.safetensors")}
    assert main(argv) == 0
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("pair_*.safetensors")} == stamps


def test_temporary_files_of_a_killed_write_are_removed_on_the_next_run(tmp_path, capsys):
    saes = make_stack(n_layers=2, d_in=8, d_sae=16, seed=0).saes
    for i, sae in enumerate(saes):
        sae.save_model(tmp_path / "saes" / f"layer_{i}")
    out = tmp_path / "out"
    (out / "deep").mkdir(parents=True)
    stale = [out / ".pair_000.safetensors.k2j3h4.tmp", out / "deep" / ".summary.json.x81.tmp"]
    for path in stale:
        path.write_bytes(b"half a write")
    keep = out / "notes.tmp"  # not ours: not a hidden temporary
    keep.write_text("mine")
    assert main(["match", str(tmp_path / "saes" / "layer_0"), str(tmp_path / "saes" / "layer_1"), "--out", str(out)]) == 0
    assert not any(p.exists() for p in stale) and keep.exists()
    assert not list(out.rglob(".*.tmp"))


def test_a_killed_world_build_leaves_nothing_behind_once_the_world_is_asked_for_again(world_root):
    orphan = world_root.with_name(f".{world_root.name}.killed")
    (orphan / "model").mkdir(parents=True)
    assert build_world(progress=False) == world_root
    assert not orphan.exists()


def test_compare_keeps_its_table_when_the_llm_judge_is_unreachable(world_root, tmp_path, capsys):
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [
        "compare", "--world", "--n-texts", "6", "--matchers", "sae_match", "--judge", "llm", "--judge-features", "2",
        "--llm-base-url", f"http://127.0.0.1:{port}/v1", "--llm-model", "m", "--out", str(tmp_path),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Cannot reach the chat endpoint" in err and "Traceback" not in err
    rows = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert {r["method"] for r in rows} >= {"sae_match", "current"}
    assert all(r["delta_loss"] is not None for r in rows)


def world_data(recipe):
    return FeedbackData(
        "world",
        prompts=world.review_prefixes(32, split="train"),
        preferences=world.preference_pairs(32) if recipe != "rl" else None,
        texts=world.corpus("train", 24),
    )


def small(recipe, steps=2, tokens=2000, **kw):
    return LFPConfig(
        recipe=recipe, finetune_steps=steps, finetune_batch_size=4, learning_rate=1e-4, top_k=1,
        dictionary=DictionaryConfig(training_tokens=tokens), **kw,
    )


def tuned_weights(out):
    from safetensors.torch import load_file

    return load_file(str(out / "tuned_model" / "model.safetensors"))


@pytest.mark.slow
def test_lfp_rerun_with_another_recipe_or_budget_recomputes_what_depends_on_it(world_root, tmp_path):
    model = world_root / "model"
    rl = run_lfp(model, world_data("rl"), tmp_path / "rerun", small("rl"))
    rl_weights = tuned_weights(tmp_path / "rerun")

    # Another recipe into the same folder: a new tuned model and everything after it,
    # exactly what a fresh folder gets.
    dpo = run_lfp(model, world_data("dpo"), tmp_path / "rerun", small("dpo"))
    fresh = run_lfp(model, world_data("dpo"), tmp_path / "fresh", small("dpo"))
    assert dpo["config"]["recipe"] == "dpo"
    dpo_weights, fresh_weights = tuned_weights(tmp_path / "rerun"), tuned_weights(tmp_path / "fresh")
    assert any(not torch.equal(rl_weights[k], dpo_weights[k]) for k in rl_weights)
    assert all(torch.equal(dpo_weights[k], fresh_weights[k]) for k in fresh_weights)
    assert dpo["divergence"] == fresh["divergence"] != rl["divergence"]
    assert dpo["layers"] == fresh["layers"]
    log = json.loads((tmp_path / "rerun" / "tuned_model" / "finetune_log.json").read_text())
    assert any("rewards/chosen" in entry for entry in log)  # DPO's log, not RL's

    # Only the dictionary budget changes: the tuned model is reused, the dictionaries are not.
    stamp = (tmp_path / "rerun" / "tuned_model" / "model.safetensors").stat().st_mtime_ns
    more = run_lfp(model, world_data("dpo"), tmp_path / "rerun", small("dpo", tokens=3000))
    assert (tmp_path / "rerun" / "tuned_model" / "model.safetensors").stat().st_mtime_ns == stamp
    assert more["layers"] != dpo["layers"]

    # A tuned model damaged on disk is noticed and retrained.
    weights = tmp_path / "rerun" / "tuned_model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-16:] = bytes(16)
    weights.write_bytes(bytes(data))
    run_lfp(model, world_data("dpo"), tmp_path / "rerun", small("dpo"))
    assert all(torch.equal(tuned_weights(tmp_path / "rerun")[k], fresh_weights[k]) for k in fresh_weights)


def test_lfp_top_k_above_the_number_of_layers_is_refused_before_tuning(world_root, tmp_path):
    with pytest.raises(ValueError, match="top_k=99 but .* has 4 layers"):
        run_lfp(world_root / "model", world_data("rl"), tmp_path, LFPConfig(top_k=99))
    assert not (tmp_path / "tuned_model").exists()


def test_a_damaged_world_cache_is_named_with_the_way_to_rebuild_it(world_root, tmp_path):
    import shutil

    copy = tmp_path / world_root.name
    shutil.copytree(world_root, copy)
    weights = copy / "saes" / "blocks.2.hook_resid_post" / "sae_weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4:] = bytes(b ^ 0xFF for b in data[-4:])
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"blocks.2.hook_resid_post is damaged .* world build --force"):
        world.load_saes("resid_post", cache_dir=tmp_path, progress=False)
    assert len(world.load_saes("mlp_out", cache_dir=tmp_path, progress=False)) == 4
