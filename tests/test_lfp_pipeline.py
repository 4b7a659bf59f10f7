import json

import pytest
import torch

from sae_lens_match.lfp.pipeline import Part1Config, run_part1


@pytest.mark.slow
def test_part1_runs_on_the_world_and_resumes(world_root, tmp_path):
    cfg = Part1Config(finetune_steps=4, finetune_batch_size=8, learning_rate=1e-4, n_sequences=48, dictionary_examples=4000, top_k=2)
    summary = run_part1(world_root / "model", tmp_path, cfg)
    divergence = {int(k): v for k, v in summary["divergence"].items()}
    assert len(divergence) == 4 and all(v > 0 for v in divergence.values())
    assert summary["top_layers"] == sorted(divergence, key=divergence.get, reverse=True)[:2]
    for layer in summary["top_layers"]:
        info = summary["layers"][str(layer)]
        shared = info["shared_features"]
        d_in = info["d_in"]
        assert len(shared) == d_in
        assert sorted(f["small_index"] for f in shared) == list(range(d_in))
        assert all(0 <= f["large_index"] < 2 * d_in for f in shared)
        cosines = [f["cosine"] for f in shared]
        assert cosines == sorted(cosines, reverse=True)
        assert info["mean_max_cosine"] >= info["mean_assigned_cosine"] - 1e-6
        assert (tmp_path / "dictionaries" / f"layer_{layer}" / "2n" / "cfg.json").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["top_layers"] == summary["top_layers"]
    # resume: the tuned model and the dictionaries are reused, not retrained
    stamp = (tmp_path / "tuned_model" / "model.safetensors").stat().st_mtime_ns
    again = run_part1(world_root / "model", tmp_path, cfg)
    assert (tmp_path / "tuned_model" / "model.safetensors").stat().st_mtime_ns == stamp
    assert again["layers"] == summary["layers"]


@pytest.mark.slow
def test_activation_collection_agrees_on_bridge_and_hooked_transformer(world_root, tmp_path):
    from sae_lens_match import world
    from sae_lens_match.lfp.activations import collect_activations, load_activations

    tokenizer = world.load_tokenizer()
    batch = tokenizer(world.review_prefixes(6), return_tensors="pt", padding=True)  # unequal lengths: padding
    hook = "blocks.1.mlp.hook_post"
    acts = {}
    for kind in ("bridge", "hooked"):
        model = world.load_model(kind=kind)
        collect_activations(model, batch["input_ids"], [hook], tmp_path / kind, attention_mask=batch["attention_mask"], batch_size=4, progress=False)
        acts[kind] = load_activations(tmp_path / kind, hook)
    assert torch.equal(acts["bridge"][1], acts["hooked"][1])
    assert len(acts["bridge"][1]) == int(batch["attention_mask"].sum()) < batch["input_ids"].numel()
    torch.testing.assert_close(acts["bridge"][0], acts["hooked"][0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_part1_trains_dictionaries_on_the_model_directly(world_root, tmp_path):
    from sae_lens import SAE

    from sae_lens_match.lfp.architectures import TiedSAE

    cfg = Part1Config(recipe="dpo", finetune_steps=2, finetune_batch_size=4, n_sequences=200, dictionary_examples=3000, top_k=1, dictionary_source="model")
    summary = run_part1(world_root / "model", tmp_path, cfg)
    (layer,) = summary["top_layers"]
    info = summary["layers"][str(layer)]
    assert info["d_in"] == 512 and len(info["shared_features"]) == 512
    assert not (tmp_path / "activations").exists()
    directory = tmp_path / "dictionaries" / f"layer_{layer}"
    small, large = SAE.load_from_disk(directory / "n"), SAE.load_from_disk(directory / "2n")
    assert isinstance(small, TiedSAE) and (small.cfg.d_sae, large.cfg.d_sae) == (512, 1024)
    assert small.cfg.metadata.hook_name == f"blocks.{layer}.mlp.hook_post"
    assert (directory / "n" / "runner_cfg.json").exists()
    assert run_part1(world_root / "model", tmp_path, cfg)["layers"] == summary["layers"]  # resumes
