import csv
import json

import pytest
import torch
from sae_lens import SAE
from transformers import GPTNeoXForCausalLM

from sae_lens_match import HubUnavailableError, world
from sae_lens_match.lfp.dictionaries import DictionaryConfig
from sae_lens_match.cli.inputs import swap_words
from sae_lens_match.lfp.contrastive import contrastive_triples, preference_triples
from sae_lens_match.lfp.part2 import Part2Config
from sae_lens_match.lfp.pipeline import FeedbackData, LFPConfig, run_lfp, text_prefixes
from sae_lens_match.saes import TiedSAE
from sae_lens_match.sources.vader import vader_lexicon
from sae_lens_match.sources.models import load_causal_lm, load_tokenizer
from sae_lens_match.world.model import model_config

COMMIT = "0" * 40


def world_data(n_texts, recipe="rl", n_pairs=64, n_triples=0, n_preference=0):
    return FeedbackData(
        "world",
        prompts=world.review_prefixes(64, split="train"),
        preferences=world.preference_pairs(n_pairs) if recipe != "rl" else None,
        texts=world.corpus("train", n_texts),
        triples=contrastive_triples(world.corpus("test", n_triples), swap_words()) if n_triples else (),
        preference_triples=preference_triples(world.preference_pairs(n_preference, split="test"), swap_words()["adj"].neutral) if n_preference else (),
    )


def small(recipe="rl", source="activations", steps=4, batch=8, tokens=4000, **kw):
    return LFPConfig(
        recipe=recipe, finetune_steps=steps, finetune_batch_size=batch, learning_rate=1e-4,
        dictionary=DictionaryConfig(training_tokens=tokens), dictionary_source=source, **kw,
    )


@pytest.mark.slow
def test_part1_runs_on_the_world_and_resumes(world_root, tmp_path):
    cfg = small(top_k=2, model_name=world.WORLD_MODEL_NAME)
    summary = run_lfp(world_root / "model", world_data(48, n_triples=150), tmp_path, cfg)
    divergence = {int(k): v for k, v in summary["divergence"].items()}
    assert len(divergence) == 4 and all(v > 0 for v in divergence.values())
    assert summary["top_layers"] == sorted(divergence, key=divergence.get, reverse=True)[:2]
    for layer in summary["top_layers"]:
        info = summary["layers"][str(layer)]
        shared = info["shared_features"]
        d_in = info["d_in"]
        # the reference code's activations: the MLP module's output, n = d_model
        assert info["hook"] == f"blocks.{layer}.hook_mlp_out" and d_in == 128
        for name in ("n", "2n"):  # judged on held-out tokens
            stats = info["dictionaries"][name]
            assert 0 < stats["l0"] < (1 if name == "n" else 2) * d_in and stats["explained_variance"] < 1
        assert len(shared) == d_in
        assert sorted(f["small_index"] for f in shared) == list(range(d_in))
        assert all(0 <= f["large_index"] < 2 * d_in for f in shared)
        cosines = [f["cosine"] for f in shared]
        assert cosines == sorted(cosines, reverse=True)
        assert info["mean_max_cosine"] >= info["mean_assigned_cosine"] - 1e-6
        saved = SAE.load_from_disk(tmp_path / "dictionaries" / f"layer_{layer}" / "2n")
        assert saved.cfg.metadata.model_name == world.WORLD_MODEL_NAME
    assert json.loads((tmp_path / "summary.json").read_text())["top_layers"] == summary["top_layers"]
    # part 2: the figures the issue names, for the tuned model, the base model and the baseline
    part2 = json.loads((tmp_path / "part2.json").read_text())
    for name in ("tuned", "base", "xavier"):
        assert {"kendall_tau", "kendall_p", "sign_accuracy_positive", "sign_accuracy_negative"} <= part2[name].keys()
        assert -1 <= part2[name]["kendall_tau"] <= 1 and part2[name]["n_words"] == part2["n_test_words"]
    rows = list(csv.DictReader((tmp_path / "word_table.csv").open()))
    assert list(rows[0]) == ["word", "split", "vader_value", "predicted_tuned", "predicted_base", "predicted_xavier"]
    assert sum(r["split"] == "test" for r in rows) == part2["n_test_words"] and len(rows) == part2["n_words"]
    lexicon = vader_lexicon()
    assert all(float(r["vader_value"]) == lexicon[r["word"]] for r in rows)
    # data-free diffing: base-model dictionaries trained exactly like the tuned model's
    for layer in summary["top_layers"]:
        diff = summary["model_diff"][str(layer)]
        assert diff["n_features"] == 128 and 0 <= diff["fraction_changed"] <= 1 and 0 <= diff["control_fraction_changed"] <= 1
    # validation: the top-overlap features of each layer explained and labelled, offline
    assert len(part2["features"]) == 2 * 20 and {r["judge"] for r in part2["features"]} == {"heuristic:vader-tokens"}
    assert part2["activation_frequency"]["threshold"] == 3.0
    if any(r["related"] for r in part2["features"]):
        ablation = part2["ablation"]
        assert ablation["related"]["n_features"] == ablation["random"]["n_features"] == sum(bool(r["related"]) for r in part2["features"])
        assert ablation["related"]["reward_before"] == ablation["random"]["reward_before"]
    # probe-free attribution, and the page a person opens
    assert part2["attribution"]["agreement_top_overlap"]["n_features"] == 2 * 20
    page = (tmp_path / "index.html").read_text()
    assert "Kendall tau" in page and "part2_words.png" in page and str(tmp_path) not in page
    assert (tmp_path / "part2_words.png").stat().st_size > 0
    # resume: the tuned model and the dictionaries are reused, not retrained
    stamp = (tmp_path / "tuned_model" / "model.safetensors").stat().st_mtime_ns
    again = run_lfp(world_root / "model", world_data(48), tmp_path, cfg)
    assert (tmp_path / "tuned_model" / "model.safetensors").stat().st_mtime_ns == stamp
    assert again["layers"] == summary["layers"]


@pytest.mark.slow
def test_part1_trains_dictionaries_on_the_model_directly(world_root, tmp_path):
    part2 = Part2Config(n_boot=50, ablation_prompts=8, completion_tokens=8, n_random=1)
    cfg = small("dpo", "model", steps=2, batch=4, tokens=3000, top_k=1, hook="blocks.{layer}.mlp.hook_post", part2=part2)
    summary = run_lfp(world_root / "model", world_data(200, "dpo", n_preference=30), tmp_path, cfg)
    # preference data only: part 2's logistic probes, and no word table
    preference = summary["part2"]["preference"]
    assert preference["n_triples"] == 30 and {"tuned", "base", "xavier"} <= preference.keys()
    assert "tuned" not in summary["part2"] and not (tmp_path / "word_table.csv").exists()
    assert "Logistic probes" in (tmp_path / "index.html").read_text()
    (layer,) = summary["top_layers"]
    info = summary["layers"][str(layer)]
    assert info["d_in"] == 512 and len(info["shared_features"]) == 512
    assert not (tmp_path / "activations").exists()
    directory = tmp_path / "dictionaries" / f"layer_{layer}"
    small_sae, large_sae = SAE.load_from_disk(directory / "n"), SAE.load_from_disk(directory / "2n")
    assert isinstance(small_sae, TiedSAE) and (small_sae.cfg.d_sae, large_sae.cfg.d_sae) == (512, 1024)
    assert small_sae.cfg.metadata.hook_name == f"blocks.{layer}.mlp.hook_post"
    assert run_lfp(world_root / "model", world_data(200, "dpo"), tmp_path, cfg)["layers"] == summary["layers"]  # resumes


def test_dpo_without_preference_pairs_is_refused_before_training(world_root, tmp_path):
    with pytest.raises(ValueError, match="Recipe 'dpo' needs preference pairs; 'world' has none"):
        run_lfp(world_root / "model", world_data(10, "rl"), tmp_path, small("dpo"))
    with pytest.raises(ValueError, match="recipe must be"):
        LFPConfig(recipe="ppo")


def test_text_prefixes_are_short_seeded_openings():
    texts = ["one two three four five six seven eight nine ten"] * 20
    prefixes = text_prefixes(texts, seed=1)
    assert prefixes == text_prefixes(texts, seed=1) != text_prefixes(texts, seed=2)
    assert all(2 <= len(p.split()) <= 8 and texts[0].startswith(p) for p in prefixes)


def test_part1_on_a_hub_model_offline_fails_fast_and_clearly(tmp_path, monkeypatch):
    import huggingface_hub

    # an empty cache, so the test means the same on a machine that has Pythia cached
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    with pytest.raises(HubUnavailableError, match="pythia-160m"):
        run_lfp("pythia-160m", world_data(10), tmp_path)
    with pytest.raises(ValueError, match="Unknown model"):
        run_lfp("pythia-160", world_data(10), tmp_path)
    assert not (tmp_path / "tuned_model").exists()


@pytest.mark.slow
def test_part1_runs_on_a_hub_model_from_the_hub_cache(world_root, tmp_path, monkeypatch):
    """Part 1 end to end on a hub name, offline: the Hugging Face cache holds what a download
    of "EleutherAI/pythia-70m-deduped" would leave (here a tiny random GPT-NeoX and the world
    tokenizer), so every hub-path call runs for real except the network transfer."""
    import huggingface_hub

    tokenizer = load_tokenizer(world_root / "model")
    cache = tmp_path / "hf_cache"
    repo = cache / "models--EleutherAI--pythia-70m-deduped"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    torch.manual_seed(3)
    tiny = GPTNeoXForCausalLM(model_config(len(tokenizer), n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=32))
    tiny.half().save_pretrained(repo / "snapshots" / COMMIT)  # float16, as Pythia's
    tokenizer.save_pretrained(repo / "snapshots" / COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert load_causal_lm("pythia-70m-deduped")[0].dtype == torch.float32
    for source in ("activations", "model"):
        cfg = small("dpo", source, steps=2, batch=4, tokens=1000, top_k=1, context_size=32)
        summary = run_lfp("pythia-70m-deduped", world_data(60, "dpo"), tmp_path / source, cfg)
        assert summary["model"] == "pythia-70m-deduped" and len(summary["divergence"]) == 2
        (layer,) = summary["top_layers"]
        assert summary["layers"][str(layer)]["d_in"] == 32  # hook_mlp_out: d_model
        saved = SAE.load_from_disk(tmp_path / source / "dictionaries" / f"layer_{layer}" / "n")
        assert saved.cfg.metadata.model_name == "pythia-70m-deduped"  # its own name, never the world's


@pytest.mark.slow
def test_tr_dpo_in_the_pipeline_moves_its_reference_and_betas_are_separate(world_root, tmp_path):
    data = world_data(40, "tr-dpo")
    summary = run_lfp(world_root / "model", data, tmp_path / "tr", small("tr-dpo", steps=4, batch=4, tokens=2000, top_k=1, sync_steps=2))
    assert summary["config"]["sync_steps"] == 2 and summary["config"]["dpo_beta"] == 0.1
    base = GPTNeoXForCausalLM.from_pretrained(world_root / "model").state_dict()
    reference = GPTNeoXForCausalLM.from_pretrained(tmp_path / "tr" / "tuned_model" / "reference_model").state_dict()
    tuned = GPTNeoXForCausalLM.from_pretrained(tmp_path / "tr" / "tuned_model").state_dict()
    moved = lambda a, b: any(not torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    assert moved(reference, base) and moved(reference, tuned)
    # RL's KL coefficient has no say in DPO: an absurd one tunes the same model
    one = run_lfp(world_root / "model", world_data(40, "dpo"), tmp_path / "a", small("dpo", top_k=1))
    other = run_lfp(world_root / "model", world_data(40, "dpo"), tmp_path / "b", small("dpo", top_k=1, kl_beta=123.0))
    assert one["divergence"] == other["divergence"]
    with pytest.raises(ValueError, match="sync_steps=16, finetune_steps=4"):
        small("tr-dpo", steps=4)


def test_both_dictionary_sources_leave_out_the_same_positions(world_root):
    """One policy: stored activations (TokenSet) and SAELens's streaming runner
    (exclude_special_tokens) both skip exactly the special-token positions of the packed rows."""
    from sae_lens.util import get_special_token_ids

    from sae_lens_match.sources.tokens import TokenSet, pack_texts

    tokenizer = load_tokenizer(world_root / "model")
    rows = pack_texts(tokenizer, world.corpus("train", 20), 64)
    ours = TokenSet(world.load_model("hooked"), rows).position_mask(rows)
    streamed = ~torch.isin(rows, torch.tensor(get_special_token_ids(tokenizer)))
    assert torch.equal(ours, streamed) and (~ours[:, 0]).all() and (~ours).sum() > len(rows)  # BOS of every text, not just row starts
