import pytest
import torch

from sae_lens_match import fold, register_fold_rule
from tests.helpers import random_sae

CASES = [
    ("jumprelu", {}),
    ("standard", {}),
    ("topk", {}),
    ("topk", {"rescale_acts_by_decoder_norm": True}),
    ("gated", {}),
]


def inputs(d_in: int = 16, n: int = 256) -> torch.Tensor:
    return torch.randn(n, d_in, generator=torch.Generator().manual_seed(1)) * 3


@pytest.mark.parametrize("arch,cfg", CASES)
def test_fold_preserves_reconstruction(arch, cfg):
    sae = random_sae(arch, **cfg)
    folded = fold(sae)
    x = inputs()
    assert type(folded) is type(sae)
    acts = sae.encode(x)
    assert (acts != 0).any(dim=0).float().mean() > 0.5, "test inputs should fire most features"
    torch.testing.assert_close(folded(x), sae(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(folded.decode(folded.encode(x)), sae.decode(acts), rtol=1e-5, atol=1e-5)


def test_fold_jumprelu_moves_threshold_into_weights():
    sae = random_sae("jumprelu")
    theta = sae.threshold.detach().clone()
    folded = fold(sae)
    torch.testing.assert_close(folded.threshold, torch.ones_like(theta))
    torch.testing.assert_close(folded.W_dec, sae.W_dec * theta[:, None])
    torch.testing.assert_close(folded.W_enc, sae.W_enc / theta)
    torch.testing.assert_close(folded.b_enc, sae.b_enc / theta)
    torch.testing.assert_close(folded.b_dec, sae.b_dec)
    # folded activations are the original ones in units of the threshold
    x = inputs()
    torch.testing.assert_close(folded.encode(x) * theta, sae.encode(x), rtol=1e-5, atol=1e-5)


def test_fold_leaves_input_untouched():
    sae = random_sae("jumprelu")
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    fold(sae)
    for k, v in sae.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_fold_topk_with_rescaling_gives_unit_decoder():
    sae = random_sae("topk", rescale_acts_by_decoder_norm=True)
    folded = fold(sae)
    torch.testing.assert_close(folded.W_dec.norm(dim=-1), torch.ones(sae.cfg.d_sae))


def test_nonpositive_thresholds_error_or_keep():
    sae = random_sae("jumprelu")
    with torch.no_grad():
        sae.threshold[3] = 0.0
        sae.threshold[5] = -0.2
    with pytest.raises(ValueError, match=r"2 JumpReLU features have threshold <= 0 \(e.g. feature 3"):
        fold(sae)
    kept = fold(sae, nonpositive_threshold="keep")
    x = inputs()
    assert torch.isfinite(kept.W_dec).all() and torch.isfinite(kept.W_enc).all()
    assert float(kept.threshold[5].detach()) == pytest.approx(-0.2) and float(kept.threshold[0].detach()) == 1.0
    torch.testing.assert_close(kept(x), sae(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_weights_are_refused(value):
    sae = random_sae("jumprelu")
    with torch.no_grad():
        sae.W_enc[2, 7] = value
    with pytest.raises(ValueError, match="'W_enc' has 1 NaN/inf"):
        fold(sae)


def test_unknown_architecture_is_refused_and_registrable():
    sae = random_sae("jumprelu")
    JumpReLU = type(sae)
    # a direct subclass of SAELens's SAE base inherits no fold rule
    sae.__class__ = type("ExoticSAE", (JumpReLU.__mro__[1],), {})
    with pytest.raises(ValueError, match="fold\\(\\) has no rule for ExoticSAE"):
        fold(sae)
    with pytest.raises(ValueError, match="already registered"):
        register_fold_rule(JumpReLU, lambda s, p: None)
