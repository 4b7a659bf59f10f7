"""The embedded world: build, the loading paths, SAEs, generation.

Most tests use the default world through the session fixture ``world_root`` (built once
into the cache); the determinism tests build a tiny world twice into temporary dirs.
"""

import json

import pytest
import torch
from sae_lens import SAE, HookedSAETransformer
from sae_lens.saes.jumprelu_sae import JumpReLUSAE
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from sae_lens_match.sources import TokenSet, collect_activations, pack_texts
from sae_lens_match.world import (
    SAETrainingConfig,
    WorldConfig,
    build_world,
    is_built,
    load_model,
    load_saes,
    load_tokenizer,
    manifest,
    review_prefixes,
    reviews,
    token_dataset,
)
from sae_lens_match.world.lm_metrics import sample_completions
from sae_lens_match.world.lm_training import train_lm
from sae_lens_match.world.saes import sae_stats

EV_BAR = 0.9  # explained variance every world SAE must reach on held-out tokens
TINY = WorldConfig(
    train_reviews=300,
    eval_reviews=30,
    tokenizer_reviews=300,
    vocab_size=400,
    n_layers=2,
    d_model=32,
    n_heads=2,
    d_mlp=64,
    n_ctx=32,
    lm_steps=4,
    lm_batch_size=8,
    sae_train_tokens=2048,
    sae=SAETrainingConfig(
        expansion=2, steps=4, batch_size=256, lr=1e-3, l0_coefficient=1.0, init_threshold=0.1, bandwidth=0.1
    ),
)


@pytest.fixture(scope="module")
def held_out_rows(world_root):
    # reviews the build never evaluated on (it used test reviews 0..eval_reviews-1)
    tok = load_tokenizer()
    texts = [r.text for r in reviews(60, seed=0, split="test", start=1000)]
    return pack_texts(tok, texts, manifest()["config"]["n_ctx"])


# --- build: determinism, atomicity, cache --------------------------------------------


def test_same_seed_same_weights_hash_other_seed_differs(tmp_path):
    a = build_world(seed=0, cache_dir=tmp_path / "a", config=TINY, progress=False)
    b = build_world(seed=0, cache_dir=tmp_path / "b", config=TINY, progress=False)
    c = build_world(seed=1, cache_dir=tmp_path / "a", config=TINY, progress=False)
    ma, mb, mc = (json.loads((d / "world.json").read_text()) for d in (a, b, c))
    assert ma["model_sha256"] == mb["model_sha256"] and ma["sae_sha256"] == mb["sae_sha256"]
    assert (a / "model" / "tokenizer.json").read_bytes() == (b / "model" / "tokenizer.json").read_bytes()
    assert ma["model_sha256"] != mc["model_sha256"]
    assert set(ma["sae_sha256"]) == {f"blocks.{l}.hook_{k}" for l in range(2) for k in ("resid_post", "mlp_out", "attn_out")}


def test_build_is_cached_and_force_replaces_atomically(tmp_path):
    root = build_world(cache_dir=tmp_path, config=TINY, progress=False)
    assert is_built(root)
    stamp = (root / "world.json").stat().st_mtime_ns
    assert build_world(cache_dir=tmp_path, config=TINY, progress=False) == root
    assert (root / "world.json").stat().st_mtime_ns == stamp  # cached: not rebuilt
    assert build_world(cache_dir=tmp_path, config=TINY, force=True, progress=False) == root
    assert (root / "world.json").stat().st_mtime_ns != stamp
    # only the world and its lock file remain: no half-built temporary directories
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([root.name, root.name + ".lock"])
    tiny_saes = load_saes("mlp_out", cache_dir=tmp_path, config=TINY)
    assert [s.cfg.metadata.hook_name for s in tiny_saes] == ["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"]


def test_default_world_manifest(world_root):
    m = manifest()
    assert m["lm"]["eval_loss_after"] < m["lm"]["eval_loss_before"] - 4
    assert m["lm"]["sentiment_margin"] > 0.5
    assert len(m["saes"]) == 3 * m["config"]["n_layers"]
    assert all(s["explained_variance"] > EV_BAR and s["min_threshold"] > 0 for s in m["saes"].values())


# --- the model, three ways ------------------------------------------------------------


def test_three_loading_paths_agree_on_logits(world_root, held_out_rows):
    tokens = held_out_rows[:8]
    with torch.no_grad():
        hf = load_model("hf")(input_ids=tokens).logits
        hooked = load_model("hooked")(tokens)
        hooked_sae = load_model("hooked_sae")(tokens)
        bridge = load_model("bridge")(tokens)
    assert hf.shape[:2] == tokens.shape
    for other in (hooked, hooked_sae, bridge):
        torch.testing.assert_close(other, hf, atol=1e-4, rtol=0)
    assert isinstance(load_model("hooked_sae"), HookedSAETransformer)
    assert load_model("hooked").cfg.model_name == "sae-lens-match-world"


def test_hooked_model_prepends_bos_like_the_training_rows(world_root):
    model = load_model()
    tokens = model.to_tokens("I watched The Blue Road last night.")
    assert tokens[0, 0].item() == model.tokenizer.bos_token_id
    assert (tokens[0, 1:] != model.tokenizer.bos_token_id).all()


def test_generation_from_review_prefixes_produces_reviews(world_root):
    model, tok = load_model("hf"), load_tokenizer()
    prefixes = review_prefixes(16, seed=0)
    completions = sample_completions(model, tok, prefixes, max_new_tokens=40, seed=0)
    assert completions == sample_completions(model, tok, prefixes, max_new_tokens=40, seed=0)
    # a sample may end early at EOS (the world's reviews often end on "10."), so judge the whole set
    lengths = sorted(len(c.split()) for c in completions)
    assert lengths[len(lengths) // 2] >= 20 and sum(n < 5 for n in lengths) <= 1
    lexicon_hits = [c for c in completions if SentimentIntensityAnalyzer().polarity_scores(c)["compound"] != 0]
    assert len(lexicon_hits) >= 12  # completions talk about the film with sentiment words
    assert sum(("was" in c or "is" in c) for c in completions) >= 12


@pytest.mark.slow
def test_fine_tuning_on_positive_reviews_shifts_completion_sentiment(world_root):
    """A few SFT steps on positive reviews must visibly move VADER scores of samples."""
    tok = load_tokenizer()
    prefixes = review_prefixes(48, seed=0)
    analyzer = SentimentIntensityAnalyzer()

    def mean_vader(model):
        texts = sample_completions(model, tok, prefixes, max_new_tokens=32, seed=1)
        return sum(analyzer.polarity_scores(t)["compound"] for t in texts) / len(texts)

    model = load_model("hf")
    before = mean_vader(model)
    positive = [r.text for r in reviews(1500, seed=5) if r.label == "positive"]
    rows = pack_texts(tok, positive, model.config.max_position_embeddings)
    train_lm(model, rows, steps=30, batch_size=16, lr=1e-3, seed=0, warmup_steps=5)
    after = mean_vader(model)
    print(f"mean VADER compound of completions: {before:.3f} -> {after:.3f}")
    assert after > before + 0.3, (before, after)


# --- SAEs -----------------------------------------------------------------------------


@pytest.mark.parametrize("hook", ["resid_post", "mlp_out", "attn_out"])
def test_saes_load_and_reconstruct_held_out_activations(world_root, held_out_rows, hook):
    saes = load_saes(hook)
    model = load_model()
    n_layers, d_model = model.cfg.n_layers, model.cfg.d_model
    assert [s.cfg.metadata.hook_name for s in saes] == [f"blocks.{l}.hook_{hook}" for l in range(n_layers)]
    acts = collect_activations(TokenSet(model, held_out_rows, progress=False), [s.cfg.metadata.hook_name for s in saes])
    for sae in saes:
        assert isinstance(sae, JumpReLUSAE) and sae.cfg.d_in == d_model and sae.cfg.d_sae == 4 * d_model
        assert (sae.threshold > 0).all()  # folding divides by it
        stats = sae_stats(sae, acts[sae.cfg.metadata.hook_name])
        assert stats["explained_variance"] > EV_BAR, (sae.cfg.metadata.hook_name, stats)
        assert 1 < stats["l0"] < d_model / 2, stats
        # a 4-head attention output uses fewer directions: up to half of its 512 features stay
        # silent on these rows (README, "The embedded default world")
        assert stats["dead_fraction"] < (0.5 if hook == "attn_out" else 0.25), stats
    # the directory is plain SAELens format
    again = SAE.load_from_disk(world_root / "saes" / "blocks.1.hook_resid_post")
    torch.testing.assert_close(again.W_dec, load_saes("resid_post", layers=[1])[0].W_dec)


def test_saes_splice_into_the_hooked_sae_transformer(world_root, held_out_rows):
    model = load_model("hooked_sae")
    tokens = held_out_rows[:16]
    with torch.no_grad():
        clean_logits, clean_loss = model(tokens, return_type="both")
        sae = load_saes("resid_post", layers=[1])[0]
        model.add_sae(sae, use_error_term=True)
        torch.testing.assert_close(model(tokens), clean_logits, atol=1e-4, rtol=0)
        model.reset_saes()
        model.add_sae(sae, use_error_term=False)
        spliced_loss = model(tokens, return_type="loss")
    assert 0 <= spliced_loss.item() - clean_loss.item() < 0.5


@pytest.mark.slow
def test_token_dataset_feeds_saelens_training_runner(world_root, tmp_path):
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAEConfig

    ds = token_dataset("test", n_reviews=400)
    n_ctx = manifest()["config"]["n_ctx"]
    rows = torch.tensor(ds["tokens"])
    assert rows.shape[1] == n_ctx and (rows[:, 0] == load_tokenizer().bos_token_id).all()
    cfg = LanguageModelSAERunnerConfig(
        sae=JumpReLUTrainingSAEConfig(d_in=128, d_sae=256),
        model_name="sae-lens-match-world",
        hook_name="blocks.1.hook_resid_post",
        context_size=n_ctx,
        prepend_bos=False,
        is_dataset_tokenized=True,
        exclude_special_tokens=True,
        training_tokens=5 * 1024,
        train_batch_size_tokens=1024,
        n_batches_in_buffer=32,  # buffer = n_batches_in_buffer * context_size tokens >= a batch
        store_batch_size_prompts=8,
        model_from_pretrained_kwargs={},
        logger=LoggingConfig(log_to_wandb=False),
        output_path=str(tmp_path),
        checkpoint_path=str(tmp_path / "ckpt"),
        device="cpu",
    )
    runner = LanguageModelSAETrainingRunner(cfg, override_model=load_model(), override_dataset=ds)
    sae = runner.run()
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_post"


def test_world_command_prints_path_and_metrics(world_root, capsys):
    from sae_lens_match.cli import main

    assert main(["world", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(world_root)
    assert main(["world", "info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info["saes"]) == set(manifest()["hooks"])


# --- bad input and the hub path -------------------------------------------------------


def test_bad_arguments_fail_clearly(world_root):
    with pytest.raises(ValueError, match="kind"):
        load_model("onnx")
    with pytest.raises(ValueError, match="hook"):
        load_saes("resid_pre")
    with pytest.raises(ValueError, match="layers"):
        load_saes("resid_post", layers=[99])
