import pytest
import torch
from sae_lens import SAE

from sae_lens_match import permute
from sae_lens_match.saes import TiedSAE, sparsity_penalty
from sae_lens_match.lfp.dictionaries import DictionaryConfig, prune_features, train_dictionary, train_dictionary_on_model
from sae_lens_match.lfp.overlap import dictionary_overlap
from tests.helpers import random_sae


def sparse_data(n=4000, d_in=16, n_atoms=24, seed=0):
    """Sparse non-negative combinations of unit atoms: what a dictionary should recover."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(n_atoms, d_in, generator=g), dim=1)
    codes = torch.rand(n, n_atoms, generator=g) * (torch.rand(n, n_atoms, generator=g) < 0.1)
    return codes @ atoms


def explained_variance(sae, x):
    with torch.no_grad():
        return float(1 - (sae(x) - x).var(0).sum() / x.var(0).sum())


def test_sparsity_penalties():
    f = torch.tensor([[0.0, 4.0, 9.0]])
    w = torch.eye(3) * torch.tensor([[1.0], [1.0], [1.0]])
    assert sparsity_penalty(f, w, "l1").item() == pytest.approx(13.0)
    assert sparsity_penalty(f, w, "sqrt", eps=0.0).item() == pytest.approx(5.0)
    f.requires_grad_(True)
    sparsity_penalty(f, w, "sqrt").sum().backward()
    assert torch.isfinite(f.grad).all(), "sqrt penalty must have a finite gradient at 0"


@pytest.mark.parametrize("architecture,penalty", [("tied", "l1"), ("tied", "sqrt"), ("sqrt", "l1")])
def test_architectures_train_save_and_load(tmp_path, architecture, penalty):
    x = sparse_data()
    config = DictionaryConfig(architecture=architecture, sparsity_penalty=penalty, training_tokens=12_000, batch_size=64, lr=5e-3, device="cpu")
    sae = train_dictionary(x, 32, hook_name="blocks.0.mlp.hook_post", config=config, out_dir=tmp_path / "sae")
    assert explained_variance(sae, x) > 0.8
    loaded = SAE.load_from_disk(tmp_path / "sae")
    assert type(loaded) is type(sae)
    if architecture == "tied":
        assert isinstance(loaded, TiedSAE) and "W_enc" not in dict(loaded.named_parameters())
        assert torch.equal(loaded.W_enc, loaded.W_dec.T)
    else:
        assert loaded.cfg.metadata.training_architecture == "sqrt"
    torch.testing.assert_close(loaded(x[:50]), sae(x[:50]))


def test_training_is_deterministic():
    x = sparse_data(n=500)
    config = DictionaryConfig(training_tokens=2000, device="cpu", seed=3)
    a = train_dictionary(x, 16, hook_name="h", config=config)
    b = train_dictionary(x, 16, hook_name="h", config=config)
    assert torch.equal(a.W_dec, b.W_dec)
    with pytest.raises(ValueError, match="Unknown architecture 'gated'"):
        DictionaryConfig(architecture="gated")


def test_prune_features_drops_dead_and_lowest():
    sae = random_sae("standard", d_sae=32)
    with torch.no_grad():
        sae.b_enc[:4] = -1e6  # dead
    x = torch.randn(500, 16)
    pruned = prune_features(sae, x)
    assert pruned.cfg.d_sae == 28
    smaller = prune_features(sae, x, drop_lowest=0.5)
    assert smaller.cfg.d_sae == 14
    with torch.no_grad():
        means = sae.encode(x).mean(0)
        assert means[4:].sort(descending=True).values[:14].min() == pytest.approx(float(smaller.encode(x).mean(0).min()))


def test_overlap_recovers_the_small_dictionary_inside_the_large_one():
    small, extra = random_sae("standard", d_sae=24, seed=1), random_sae("standard", d_sae=24, seed=2)
    large = random_sae("standard", d_sae=48)
    with torch.no_grad():
        large.W_dec.copy_(torch.cat([small.W_dec * 2.5, extra.W_dec]))  # scale must not matter
    shuffle = torch.randperm(48, generator=torch.Generator().manual_seed(0))
    large = permute(large, shuffle)
    where = torch.empty(48, dtype=torch.long)
    where[shuffle] = torch.arange(48)
    overlap = dictionary_overlap(small, large)
    assert torch.allclose(overlap.cosine, torch.ones(24), atol=1e-5)
    assert overlap.mean_assigned_cosine == pytest.approx(1.0, abs=1e-5)
    assert overlap.mean_max_cosine == pytest.approx(1.0, abs=1e-5)
    # indices of each dictionary point into that dictionary (the reference code mixed them up)
    assert torch.equal(overlap.large_index, where[overlap.small_index])
    top_large = overlap.top(5, "large")
    torch.testing.assert_close(
        torch.nn.functional.normalize(large.W_dec[top_large], dim=1),
        torch.nn.functional.normalize(small.W_dec[overlap.top(5, "small")], dim=1),
    )
    with pytest.raises(ValueError, match="swap them"):
        dictionary_overlap(large, small)


@pytest.mark.slow
def test_dictionary_trains_on_the_world_model_directly(world_root, tmp_path):
    from sae_lens_match import world
    from sae_lens_match.sources import hook_width

    model = world.load_model("hooked", progress=False)
    dataset = world.token_dataset("train", 300, progress=False)
    hook = "blocks.1.mlp.hook_post"
    config = DictionaryConfig(training_tokens=20_000, batch_size=512, lr=1e-3, l1_coefficient=1e-3, seed=3)
    sae = train_dictionary_on_model(model, dataset, hook, 512, config=config, out_dir=tmp_path / "sae")
    assert isinstance(sae, TiedSAE) and sae.cfg.architecture() == "tied"
    assert sae.cfg.d_in == hook_width(model, hook) == model.cfg.d_mlp and sae.cfg.d_sae == 512
    assert sae.cfg.metadata.hook_name == hook
    assert torch.equal(sae.W_enc, sae.W_dec.T)

    # fresh activations: held-out reviews, BOS positions left out as in training
    rows = torch.tensor(world.token_dataset("test", 60, progress=False)["tokens"])
    with torch.no_grad():
        _, cache = model.run_with_cache(rows, names_filter=[hook], return_type=None)
    x = cache[hook][rows != model.tokenizer.bos_token_id]
    untrained = TiedSAE(sae.cfg)
    assert explained_variance(untrained, x) < 0.1
    assert explained_variance(sae, x) > 0.6  # about 0.86 with this budget (untrained: about -0.5)

    reloaded = SAE.load_from_disk(tmp_path / "sae")
    assert isinstance(reloaded, TiedSAE) and reloaded.cfg.metadata.hook_name == hook
    assert torch.equal(reloaded.W_dec, sae.W_dec) and torch.equal(reloaded.b_enc, sae.b_enc)

    again = train_dictionary_on_model(model, dataset, hook, 512, config=config)
    assert torch.equal(again.W_dec, sae.W_dec), "same seed, same data: the same dictionary"


def test_dictionary_on_model_rejects_bad_input(world_root):
    from datasets import Dataset

    from sae_lens_match import world

    model = world.load_model("hooked", progress=False)
    dataset = world.token_dataset("train", 50, progress=False)
    with pytest.raises(ValueError, match="'blocks.9.mlp.hook_post' is not a hook"):
        train_dictionary_on_model(model, dataset, "blocks.9.mlp.hook_post", 8)
    with pytest.raises(ValueError, match="tokens"):
        train_dictionary_on_model(model, Dataset.from_dict({"text": ["a"]}), "blocks.0.mlp.hook_post", 8)
    with pytest.raises(ValueError, match="context_size"):
        train_dictionary_on_model(model, dataset, "blocks.0.mlp.hook_post", 8, context_size=10_000)


def test_a_zero_decoder_row_has_cosine_zero_and_takes_no_real_partner():
    small, large = random_sae("standard", d_sae=6, seed=1), random_sae("standard", d_sae=8, seed=2)
    with torch.no_grad():
        large.W_dec[:6] = small.W_dec * 3  # every live small feature has an exact partner
        small.W_dec[2] = 0.0  # no direction: must score 0, not the 0.5 of |0 - unit|^2 = 1
        large.W_dec[6] = 0.0
    overlap = dictionary_overlap(small, large)
    cosine = dict(zip(overlap.small_index.tolist(), overlap.cosine.tolist()))
    assert cosine[2] == 0.0
    assert all(cosine[i] == pytest.approx(1.0, abs=1e-5) for i in (0, 1, 3, 4, 5))
    partners = dict(zip(overlap.small_index.tolist(), overlap.large_index.tolist()))
    assert [partners[i] for i in (0, 1, 3, 4, 5)] == [0, 1, 3, 4, 5]
    assert overlap.mean_assigned_cosine == pytest.approx(5 / 6, abs=1e-5)
    assert sorted(partners.values()) == sorted(set(partners.values()))  # still one-to-one


def test_the_reference_objective_is_the_lfp_codes_loss_times_d_in():
    """objective="reference" is the reference code's loss (MSE averaged over d_in, plain L1 on
    the codes, unit-norm tied rows, no b_dec subtracted from the input) scaled by d_in, so it has
    the same minimiser; SAELens's own convention is d_in times weaker in sparsity."""
    from sae_lens.saes.sae import TrainStepInput

    from sae_lens_match.saes import TiedTrainingSAE

    d_in, l1 = 16, 1e-3
    cfg = DictionaryConfig(l1_coefficient=l1).sae_config(d_in, 32, "h", "cpu")
    assert cfg.l1_coefficient == pytest.approx(l1 * d_in) and cfg.unit_norm_decoder and not cfg.apply_b_dec_to_input
    assert DictionaryConfig(l1_coefficient=l1, objective="saelens").sae_config(d_in, 32, "h", "cpu").l1_coefficient == l1
    sae = TiedTrainingSAE(cfg)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p))
    x = sparse_data(n=64, d_in=d_in)
    out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={"l1": cfg.l1_coefficient}, dead_neuron_mask=None, n_training_steps=0, is_logging_step=False))
    w = torch.nn.functional.normalize(sae.W_dec.detach(), dim=1)  # the reference re-normalises rows
    codes = torch.relu(x @ w.T + sae.b_enc.detach())
    reference = torch.nn.functional.mse_loss(codes @ w + sae.b_dec.detach(), x) + l1 * codes.norm(p=1, dim=-1).mean()
    torch.testing.assert_close(out.loss.detach(), d_in * reference)


def test_reference_dictionaries_have_unit_rows_and_report_their_l0_and_variance(tmp_path):
    from sae_lens_match.lfp.dictionaries import dictionary_stats

    x = sparse_data(n=3000)
    train, held_out = x[:2500], x[2500:]
    config = DictionaryConfig(training_tokens=8000, batch_size=64, lr=5e-3, device="cpu")
    reference = train_dictionary(train, 32, hook_name="h", config=config)
    torch.testing.assert_close(reference.W_dec.norm(dim=1), torch.ones(32))
    saelens = train_dictionary(train, 32, hook_name="h", config=DictionaryConfig(**{**config.__dict__, "objective": "saelens"}))
    stats, weak = dictionary_stats(reference, held_out), dictionary_stats(saelens, held_out)
    assert 0 < stats["l0"] < weak["l0"]  # the reference's sparsity pressure is d_in times stronger
    assert 0.0 < stats["explained_variance"] <= weak["explained_variance"] <= 1.0
    codes = (reference.encode(held_out) > 0).float().sum(1).mean()
    assert stats["l0"] == pytest.approx(float(codes))
