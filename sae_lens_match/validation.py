"""Input checks shared by the public functions, so bad input fails early with a clear message."""

from __future__ import annotations

import torch
from sae_lens import SAE


def check_finite(sae: SAE, name: str = "SAE") -> None:
    """Raise ``ValueError`` naming the first parameter of ``sae`` that holds NaN or inf."""
    for param_name, param in sae.named_parameters():
        bad = ~torch.isfinite(param.detach())
        if bad.any():
            raise ValueError(
                f"{name} parameter {param_name!r} has {int(bad.sum())} NaN/inf entries "
                f"(shape {tuple(param.shape)}); refusing to fold or match it."
            )


def check_same_d_in(sae_a: SAE, sae_b: SAE) -> None:
    """Raise ``ValueError`` unless both SAEs read vectors of the same width."""
    if sae_a.cfg.d_in != sae_b.cfg.d_in:
        raise ValueError(
            f"Cannot match SAEs with different d_in: A has d_in={sae_a.cfg.d_in} "
            f"({describe(sae_a)}), B has d_in={sae_b.cfg.d_in} ({describe(sae_b)}). "
            "SAE Match compares parameters that live in the same hidden space."
        )


def describe(sae: SAE) -> str:
    """A short human-readable name: architecture, hook and width."""
    hook = sae.cfg.metadata.hook_name or "no hook_name"
    return f"{type(sae).__name__} at {hook}, d_sae={sae.cfg.d_sae}"
