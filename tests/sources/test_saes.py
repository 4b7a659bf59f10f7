import pytest
import torch

from sae_lens_match import HubUnavailableError, load_pretrained, load_sae
from sae_lens_match.sources import release_stack
from tests.helpers import random_sae


def test_local_directory_round_trip(tmp_path):
    sae = random_sae("jumprelu")
    sae.save_model(tmp_path / "sae")
    loaded = load_sae(tmp_path / "sae", device="cpu")
    assert type(loaded) is type(sae)
    assert torch.equal(loaded.threshold, sae.threshold)


def test_bad_specs_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="neither an SAE directory nor 'release:sae_id'"):
        load_sae("no-such-thing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no SAELens cfg.json"):
        load_sae(tmp_path / "empty")
    with pytest.raises(ValueError, match="Unknown SAELens release 'gemma-scope-2b-pt-res-canonicl'.*gemma-scope-2b-pt-res-canonical"):
        load_pretrained("gemma-scope-2b-pt-res-canonicl", "layer_12/width_16k/canonical")
    with pytest.raises(ValueError, match="has no SAE 'layer_12/width_17k/canonical'.*layer_12/width_16k/canonical"):
        load_pretrained("gemma-scope-2b-pt-res-canonical", "layer_12/width_17k/canonical")


def test_offline_hub_load_names_the_release():
    # tests run with HF_HUB_OFFLINE=1 (conftest), as CI does: the download must fail cleanly
    with pytest.raises(HubUnavailableError, match="SAE 'gpt2-small-res-jb:blocks.0.hook_resid_pre'"):
        load_sae("gpt2-small-res-jb:blocks.0.hook_resid_pre")


def test_hub_releases_offline_fail_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    specs = release_stack("pythia-70m-deduped-res-sm", "resid_post")  # ids come from SAELens's directory, offline
    assert specs[0].startswith("pythia-70m-deduped-res-sm:blocks.0.") and len(specs) >= 6
    with pytest.raises(HubUnavailableError, match="pythia-70m-deduped-res-sm"):
        load_sae(specs[0])
    with pytest.raises(ValueError, match="Unknown SAELens release"):
        release_stack("pythia-70m-dedupd-res-sm", "resid_post")
    with pytest.raises(ValueError, match="no ids ending in hook_mlp_out"):
        release_stack("pythia-70m-deduped-res-sm", "mlp_out")
