import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from sae_lens_match.lfp.divergence import layer_divergence, plot_divergence, top_layers
from tests.helpers import assert_png


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
    # the reference code's aggregation: the sum of per-tensor norms over the whole block
    summed = layer_divergence(base, tuned, part="block", aggregate="sum_of_norms")
    assert summed[2] == pytest.approx(1.0 * (16 * 4 * 4) ** 0.5)  # W_Q [n_heads, d_model, d_head]
    assert summed[1] == pytest.approx(mlp[1]) and summed[0] == 0.0
    with torch.no_grad():
        tuned.blocks[1].mlp.b_in.add_(0.05)  # a second tensor: the two aggregations now differ
    w, b = 0.05 * (16 * 32) ** 0.5, 0.05 * 32**0.5
    assert layer_divergence(base, tuned)[1] == pytest.approx((w**2 + b**2) ** 0.5)
    assert layer_divergence(base, tuned, aggregate="sum_of_norms")[1] == pytest.approx(w + b)
    plot_divergence(mlp, tmp_path / "div.html", top=top_layers(mlp, 2))
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
