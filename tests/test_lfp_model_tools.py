import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from sae_lens_match.lfp.activations import collect_activations, load_activations
from sae_lens_match.lfp.divergence import layer_divergence, plot_divergence, top_layers
from tests.pngs import assert_png


def tiny_model(seed=0):
    cfg = HookedTransformerConfig(n_layers=4, d_model=16, d_head=4, n_heads=4, d_mlp=32, n_ctx=12, d_vocab=50, act_fn="gelu", seed=seed, device="cpu")
    return HookedTransformer(cfg)


def test_divergence_recovers_the_perturbed_layers(tmp_path):
    base, tuned = tiny_model(), tiny_model()
    with torch.no_grad():
        tuned.blocks[1].mlp.W_in.add_(0.05)
        tuned.blocks[3].mlp.W_out.add_(0.1)
        tuned.blocks[2].attn.W_Q.add_(1.0)  # attention: counted by part="block" only
    mlp = layer_divergence(base, tuned)
    assert top_layers(mlp, 2) == [3, 1]
    assert mlp[0] == 0.0 and mlp[2] == 0.0
    assert mlp[1] == pytest.approx(0.05 * (16 * 32) ** 0.5)
    assert top_layers(layer_divergence(base, tuned, part="block"), 1) == [2]
    plot_divergence(mlp, tmp_path / "div.html", k=2)
    assert "plotly" in (tmp_path / "div.html").read_text()[:5000].lower()
    assert_png(tmp_path / "div.png")


def test_divergence_refuses_quantised_weights():
    a, b = torch.nn.Module(), torch.nn.Module()
    a.layers = torch.nn.ModuleList([torch.nn.Module()])
    b.layers = torch.nn.ModuleList([torch.nn.Module()])
    a.layers[0].mlp = torch.nn.Module()
    b.layers[0].mlp = torch.nn.Module()
    a.layers[0].mlp.w = torch.nn.Parameter(torch.zeros(2, dtype=torch.int8), requires_grad=False)
    b.layers[0].mlp.w = torch.nn.Parameter(torch.ones(2, dtype=torch.int8), requires_grad=False)
    with pytest.raises(ValueError, match="full-precision"):
        layer_divergence(a, b)


def test_collected_activations_match_run_with_cache(tmp_path):
    model = tiny_model()
    tokens = torch.randint(0, 50, (7, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(tokens)
    mask[5, 9:] = 0  # padding is not stored
    hooks = ["blocks.1.mlp.hook_post", "blocks.2.hook_resid_post"]
    collect_activations(model, tokens, hooks, tmp_path, attention_mask=mask, batch_size=3, progress=False)
    _, cache = model.run_with_cache(tokens, names_filter=hooks, attention_mask=mask)
    for hook in hooks:
        acts, positions = load_activations(tmp_path, hook)
        assert positions.shape == (7 * 12 - 3, 2)
        expected = cache[hook][positions[:, 0], positions[:, 1]]
        torch.testing.assert_close(acts, expected, rtol=1e-5, atol=1e-6)
    # resume: a deleted shard is recomputed, the others are kept
    shards = sorted(tmp_path.glob("shard_*"))
    kept = shards[0].stat().st_mtime_ns
    shards[1].unlink()
    collect_activations(model, tokens, hooks, tmp_path, attention_mask=mask, batch_size=3, progress=False)
    assert shards[1].exists() and shards[0].stat().st_mtime_ns == kept
    with pytest.raises(ValueError, match="other inputs or hooks"):
        collect_activations(model, tokens[:4], hooks, tmp_path, batch_size=3, progress=False)
    with pytest.raises(ValueError, match=r"Unknown hook name\(s\) \['blocks.9.mlp.hook_post'\]"):
        collect_activations(model, tokens, ["blocks.9.mlp.hook_post"], tmp_path / "x", progress=False)
