import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from sae_lens_match.sources import TokenSet, collect_activations, feature_activations, hidden_states, load_activations, save_activations
from tests.helpers import random_sae

BOS = 0


def tiny_model(seed=0):
    cfg = HookedTransformerConfig(n_layers=4, d_model=16, d_head=4, n_heads=4, d_mlp=32, n_ctx=12, d_vocab=50, act_fn="gelu", seed=seed, device="cpu")
    return HookedTransformer(cfg)


def rows(n=7, seed=0):
    tokens = torch.randint(1, 50, (n, 12), generator=torch.Generator().manual_seed(seed))
    tokens[:, 0] = BOS
    tokens[2, 6] = BOS  # a second document starts mid-row: its BOS is left out too
    return tokens


def test_every_way_of_reading_gives_the_clean_activations_without_bos(tmp_path):
    model, tokens = tiny_model(), rows()
    hooks = ["blocks.1.mlp.hook_post", "blocks.2.hook_resid_post"]
    _, cache = model.run_with_cache(tokens, names_filter=hooks)
    keep = tokens != BOS
    data = TokenSet(model, tokens, bos_token_id=BOS, batch_size=3, progress=False)
    streamed = {h: torch.cat([acts[h] for acts, _ in hidden_states(data, hooks)]) for h in hooks}
    in_memory = collect_activations(data, hooks)
    save_activations(data, hooks, tmp_path)
    for hook in hooks:
        expected = cache[hook][keep]
        torch.testing.assert_close(streamed[hook], expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(in_memory[hook], expected, rtol=1e-5, atol=1e-6)
        stored, positions = load_activations(tmp_path, hook)
        assert positions.shape == (int(keep.sum()), 2)
        torch.testing.assert_close(stored, cache[hook][positions[:, 0], positions[:, 1]], rtol=1e-5, atol=1e-6)
        assert torch.equal(positions, keep.nonzero())


def test_shards_resume_and_refuse_other_inputs(tmp_path):
    model, tokens = tiny_model(), rows()
    data = TokenSet(model, tokens, bos_token_id=BOS, batch_size=3, progress=False)
    hooks = ["blocks.1.mlp.hook_post"]
    save_activations(data, hooks, tmp_path)
    shards = sorted(tmp_path.glob("shard_*"))
    assert len(shards) == 3
    kept = shards[0].stat().st_mtime_ns
    shards[1].unlink()
    save_activations(data, hooks, tmp_path)  # a deleted shard is recomputed, the others kept
    assert shards[1].exists() and shards[0].stat().st_mtime_ns == kept
    with pytest.raises(ValueError, match="other tokens, hooks or batch size"):
        save_activations(data.subset(slice(0, 4)), hooks, tmp_path)
    with pytest.raises(ValueError, match=r"'blocks.9.mlp.hook_post' is not a hook of this HookedTransformer \(close: \['blocks.3.mlp.hook_post'"):
        save_activations(data, ["blocks.9.mlp.hook_post"], tmp_path / "x")


def test_feature_activations_encode_each_sae_at_its_own_hook():
    model, tokens = tiny_model(), rows()
    a, b = random_sae("jumprelu", d_in=16, seed=1), random_sae("topk", d_in=16, seed=2)
    b.cfg.metadata.hook_name = "blocks.2.hook_resid_post"
    data = TokenSet(model, tokens, bos_token_id=BOS, batch_size=4, progress=False)
    fa, fb = (torch.cat(parts) for parts in zip(*feature_activations(data, [a, b])))
    _, cache = model.run_with_cache(tokens)
    keep = tokens != BOS
    with torch.no_grad():
        torch.testing.assert_close(fa, a.encode(cache["blocks.0.hook_resid_post"][keep]))
        torch.testing.assert_close(fb, b.encode(cache["blocks.2.hook_resid_post"][keep]))
    wide = random_sae("jumprelu", d_in=8)
    with pytest.raises(ValueError, match="d_in=8 but hook 'blocks.0.hook_resid_post' gives vectors of width 16"):
        next(feature_activations(data, [wide]))


@pytest.mark.slow
def test_bridge_and_hooked_transformer_give_the_same_activations(world_root, tmp_path):
    from sae_lens_match import world

    tokens = world.tokens("test", 20)[:6]
    hooks = ["blocks.1.mlp.hook_post", "blocks.2.hook_resid_post"]
    stored = {}
    for kind in ("bridge", "hooked"):
        save_activations(TokenSet(world.load_model(kind), tokens, batch_size=4, progress=False), hooks, tmp_path / kind)
        stored[kind] = [load_activations(tmp_path / kind, h) for h in hooks]
    for (acts_b, pos_b), (acts_h, pos_h) in zip(stored["bridge"], stored["hooked"]):
        assert torch.equal(pos_b, pos_h) and len(pos_b) == int((tokens != 0).sum())
        torch.testing.assert_close(acts_b, acts_h, rtol=1e-4, atol=1e-5)
