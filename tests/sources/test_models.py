"""Loading models: local checkpoints offline, hub models through TransformerLens's own loader,
clear errors offline (HF_HUB_OFFLINE=1)."""

import pytest
import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM, GPTNeoXForCausalLM

from sae_lens_match import HubUnavailableError
from sae_lens_match.sources.models import hooked_from_hf, load_causal_lm, load_model, load_tokenizer, resolve_model
from sae_lens_match.world.model import model_config

COMMIT = "0" * 40


@pytest.fixture(scope="module")
def tokenizer(world_root):
    return load_tokenizer(world_root / "model")


def tiny_neox(vocab_size, seed=0):
    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(model_config(vocab_size, n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=32)).eval()


def fake_hub_cache(cache_dir, repo_id, config):
    """What a download of ``repo_id``'s config.json leaves in a Hugging Face cache."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    config.architectures = [type(config).__name__.replace("Config", "ForCausalLM")]
    config.save_pretrained(repo / "snapshots" / COMMIT)


def test_hub_names_resolve_offline_and_unknown_names_get_close_matches():
    assert resolve_model("pythia-70m-deduped").name == "EleutherAI/pythia-70m-deduped"
    assert resolve_model("gpt-neo-125M").name == "EleutherAI/gpt-neo-125M"
    assert resolve_model("EleutherAI/pythia-160m").kind == "hub"
    with pytest.raises(ValueError, match="pythia-70m-deduped"):
        resolve_model("pythia-70m-dedupd")
    with pytest.raises(ValueError, match="no config.json"):
        resolve_model(__import__("pathlib").Path("/nonexistent/checkpoint"))


def test_hub_model_offline_raises_hub_unavailable_naming_it(tokenizer, tmp_path):
    hf = tiny_neox(len(tokenizer))
    with pytest.raises(HubUnavailableError, match="pythia-70m-deduped"):
        hooked_from_hf("pythia-70m-deduped", hf, tokenizer, cache_dir=tmp_path)
    with pytest.raises(HubUnavailableError, match="gpt-neo-125M"):
        load_causal_lm("gpt-neo-125M", cache_dir=tmp_path)


def test_transformer_lens_loader_matches_the_hf_model(tokenizer, tmp_path):
    """The hub path itself, without the hub: TransformerLens's ``from_pretrained`` reads the
    config from a pre-filled Hugging Face cache (as after a download) and the weights from
    the given ``hf_model``."""
    hf = tiny_neox(len(tokenizer), seed=1)
    fake_hub_cache(tmp_path, "EleutherAI/pythia-70m-deduped", hf.config)
    hooked = hooked_from_hf("pythia-70m-deduped", hf, tokenizer, cache_dir=tmp_path)
    assert hooked.cfg.original_architecture == "GPTNeoXForCausalLM" and hooked.cfg.d_mlp == 64
    tokens = torch.randint(2, len(tokenizer), (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hooked(tokens), hf(tokens).logits, atol=1e-4, rtol=0)
        hooked_post = hooked.run_with_cache(tokens, names_filter=["blocks.1.mlp.hook_post"])[1]["blocks.1.mlp.hook_post"]
    assert hooked_post.shape == (2, 20, 64)


def test_local_checkpoint_of_another_architecture_loads_offline(tokenizer, tmp_path):
    """A non-NeoX checkpoint directory goes through TransformerLens's generic converters."""
    torch.manual_seed(2)
    config = GPTNeoConfig(vocab_size=len(tokenizer), max_position_embeddings=32, hidden_size=32, num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]], window_size=8)
    GPTNeoForCausalLM(config).save_pretrained(tmp_path / "neo")
    tokenizer.save_pretrained(tmp_path / "neo")
    hf, tok = load_causal_lm(tmp_path / "neo")
    assert resolve_model(tmp_path / "neo").kind == "local" and tok.pad_token is not None
    hooked = hooked_from_hf(tmp_path / "neo", hf, tok)
    tokens = torch.randint(2, len(tokenizer), (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hooked(tokens), hf(tokens).logits, atol=1e-4, rtol=0)


def test_a_local_checkpoint_keeps_its_own_name_and_every_kind_gives_its_logits(tokenizer, tmp_path):
    """One conversion path for every local checkpoint: a user's GPT-NeoX is named after its
    directory in SAELens metadata, never after the embedded world."""
    hf = tiny_neox(len(tokenizer), seed=4)
    hf.save_pretrained(tmp_path / "my-pythia")
    tokenizer.save_pretrained(tmp_path / "my-pythia")
    tokens = torch.randint(2, len(tokenizer), (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = hf(tokens).logits
        for kind in ("hooked", "hooked_sae", "bridge"):
            model = load_model(tmp_path / "my-pythia", kind)
            torch.testing.assert_close(model(tokens), expected, atol=1e-4, rtol=0)
    assert load_model(tmp_path / "my-pythia", "hooked").cfg.model_name == "my-pythia"
    assert load_model(tmp_path / "my-pythia", "hooked", model_name="other").cfg.model_name == "other"
    with pytest.raises(ValueError, match="kind must be one of"):
        load_model(tmp_path / "my-pythia", "onnx")


@pytest.mark.parametrize("kind", ["hooked", "hooked_sae", "hf", "bridge"])
def test_hub_model_offline_fails_clearly(monkeypatch, kind):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="pythia-70m-deduped.*needs no network"):
        load_model("pythia-70m-deduped", kind)
