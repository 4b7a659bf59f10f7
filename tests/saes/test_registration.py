"""The plugin architectures are SAELens architectures as soon as the package is imported."""

import subprocess
import sys

import torch
from sae_lens.registry import SAE_CLASS_REGISTRY

from sae_lens_match.saes import TiedSAE, TiedSAEConfig, register_architectures


def test_a_tied_dictionary_loads_in_a_process_that_only_imported_the_package(tmp_path):
    sae = TiedSAE(TiedSAEConfig(d_in=8, d_sae=16))
    with torch.no_grad():
        sae.W_dec.normal_(generator=torch.Generator().manual_seed(0))
    sae.save_model(tmp_path / "tied")
    script = (
        "import sae_lens_match, torch\n"
        "from sae_lens import SAE\n"
        f"sae = SAE.load_from_disk({str(tmp_path / 'tied')!r})\n"
        "print(type(sae).__name__, sae.cfg.architecture(), torch.equal(sae.W_enc, sae.W_dec.T))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["TiedSAE", "tied", "True"]


def test_registering_again_is_harmless():
    register_architectures()
    register_architectures()
    assert SAE_CLASS_REGISTRY["tied"] == (TiedSAE, TiedSAEConfig)
