import pytest

from sae_lens_match import HubUnavailableError
from sae_lens_match.sources import load_preference_dataset, load_texts


def test_hub_datasets_fail_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="Anthropic/hh-rlhf"):
        load_preference_dataset("hh")
    with pytest.raises(HubUnavailableError, match="dataset 'imdb'.*needs no network"):
        load_texts("imdb")
