import os

# Tests never reach a hub: set before huggingface_hub reads its constants.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
# The tests run in parallel, one process per core (pyproject's addopts): every process they
# start gets one thread too, or OpenMP threads waiting at barriers for a busy core thrash.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

# The tests run tiny models: a second thread only contends for the two cores.
torch.set_num_threads(1)


# --- embedded world (sae_lens_match.world) -------------------------------------------
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def world_root():
    """The default embedded world, built once into the cache (``$SAE_LENS_MATCH_CACHE``).

    The first run on a machine builds it (a few minutes on 2 CPU cores); later runs reuse it.
    """
    from sae_lens_match.world import build_world

    return build_world(progress=False)
