import pytest
from transformer_lens import HookedTransformer, HookedTransformerConfig

from sae_lens_match.sources import check_hooks, hook_name, hook_width, is_residual


def tiny_model():
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, d_head=4, n_heads=4, d_mlp=40, n_ctx=8, d_vocab=20, act_fn="gelu", device="cpu")
    return HookedTransformer(cfg)


def test_hook_names_are_transformer_lens_names():
    model = tiny_model()
    for kind in ("resid_pre", "resid_post", "mlp_out", "attn_out", "post"):
        assert hook_name(kind, 1) in model.hook_dict
    assert hook_name("post", 1) == "blocks.1.mlp.hook_post"
    with pytest.raises(ValueError, match="takes a kind such as 'resid_post'"):
        hook_name("blocks.1.hook_resid_post", 1)
    assert is_residual("blocks.0.hook_resid_mid") and not is_residual("blocks.0.hook_mlp_out")


def test_widths_from_the_config_agree_with_a_forward_pass():
    model = tiny_model()
    assert [hook_width(model, hook_name(k, 0)) for k in ("resid_post", "mlp_out", "attn_out", "pre", "post")] == [16, 16, 16, 40, 40]
    assert hook_width(model, "blocks.0.attn.hook_z") == 4  # not in the config table: one forward pass


def test_hook_checks_name_what_is_wrong():
    model = tiny_model()
    assert check_hooks(model, ["blocks.1.hook_resid_post"]) == ["blocks.1.hook_resid_post"]
    with pytest.raises(ValueError, match="SAE has no hook name"):
        check_hooks(model, [None], "SAE")
    with pytest.raises(ValueError, match=r"'blocks.1.hook_resid_pots' is not a hook .*close: \['blocks.1.hook_resid_post'"):
        check_hooks(model, ["blocks.1.hook_resid_pots"])
    with pytest.raises(ValueError, match="No hook names given"):
        check_hooks(model, [])
