"""SAE architectures this package adds to SAELens, registered in ``sae_lens.registry``.

``import sae_lens_match`` registers them, so ``SAE.load_from_disk`` reads a saved
``"tied"`` dictionary in any process that imported the package. Registering is idempotent:
SAELens raises on a second registration of a name, so a name already holding these very
classes is left alone.

- ``"tied"``: :class:`TiedSAE` / :class:`TiedTrainingSAE` (``W_enc = W_dec.T``, L1 or sqrt penalty).
- ``"sqrt"`` (training only): :class:`SqrtTrainingSAE`, saved as a ``"standard"`` SAE.
"""

from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY, register_sae_class, register_sae_training_class

from sae_lens_match.saes.penalties import SparsityPenalty, sparsity_penalty
from sae_lens_match.saes.sqrt_sae import SqrtTrainingSAE, SqrtTrainingSAEConfig
from sae_lens_match.saes.tied_sae import TiedSAE, TiedSAEConfig, TiedTrainingSAE, TiedTrainingSAEConfig

INFERENCE_CLASSES = {"tied": (TiedSAE, TiedSAEConfig)}
TRAINING_CLASSES = {"tied": (TiedTrainingSAE, TiedTrainingSAEConfig), "sqrt": (SqrtTrainingSAE, SqrtTrainingSAEConfig)}


def register_architectures() -> None:
    """Register this package's architectures with SAELens (safe to call any number of times).

    Raises:
        ValueError: a name is already registered by someone else with other classes.
    """
    for registry, register, classes in (
        (SAE_CLASS_REGISTRY, register_sae_class, INFERENCE_CLASSES),
        (SAE_TRAINING_CLASS_REGISTRY, register_sae_training_class, TRAINING_CLASSES),
    ):
        for name, (cls, cfg_cls) in classes.items():
            if registry.get(name) != (cls, cfg_cls):
                register(name, cls, cfg_cls)


register_architectures()

__all__ = [
    "SparsityPenalty",
    "SqrtTrainingSAE",
    "SqrtTrainingSAEConfig",
    "TiedSAE",
    "TiedSAEConfig",
    "TiedTrainingSAE",
    "TiedTrainingSAEConfig",
    "register_architectures",
    "sparsity_penalty",
]
