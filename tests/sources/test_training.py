import torch
from sae_lens import StandardTrainingSAEConfig
from sae_lens.config import SAETrainerConfig

from sae_lens_match.sources import save_inference_sae, seeded, train_sae


def test_seeded_blocks_repeat_and_leave_the_callers_generator_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    with seeded(5):
        first = torch.rand(3)
    assert torch.equal(torch.random.get_rng_state(), before)
    with seeded(5):
        assert torch.equal(torch.rand(3), first)


def test_training_is_a_function_of_its_seed(tmp_path):
    acts = torch.randn(512, 8, generator=torch.Generator().manual_seed(0))
    sae_cfg = StandardTrainingSAEConfig(d_in=8, d_sae=16)
    trainer_cfg = SAETrainerConfig(total_training_samples=2048, train_batch_size_samples=64, lr=1e-3)
    state = torch.random.get_rng_state()
    a = train_sae(sae_cfg, trainer_cfg, acts, seed=1, quiet=True)
    assert torch.equal(torch.random.get_rng_state(), state)  # no global seed left behind
    b = train_sae(sae_cfg, trainer_cfg, acts, seed=1, quiet=True)
    c = train_sae(sae_cfg, trainer_cfg, acts, seed=2, quiet=True)
    assert torch.equal(a.W_dec, b.W_dec) and not torch.equal(a.W_dec, c.W_dec)
    saved = save_inference_sae(a, tmp_path / "sae")
    assert (tmp_path / "sae" / "cfg.json").exists() and torch.equal(saved.W_dec, a.W_dec.detach())
