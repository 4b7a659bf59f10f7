"""Shared test helpers: small random SAEs of every architecture, and a check that a plot is a real PNG."""

from __future__ import annotations

import struct
from pathlib import Path

import torch
from sae_lens import GatedSAE, GatedSAEConfig, JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
from sae_lens.saes.sae import SAEMetadata


def random_sae(arch: str, d_in: int = 16, d_sae: int = 32, seed: int = 0, **cfg):
    """A randomly initialised SAE whose every parameter (thresholds, biases, b_dec) is non-trivial."""
    classes = {
        "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig),
        "standard": (StandardSAE, StandardSAEConfig),
        "topk": (TopKSAE, TopKSAEConfig),
        "gated": (GatedSAE, GatedSAEConfig),
    }
    sae_cls, cfg_cls = classes[arch]
    if arch == "topk":
        cfg.setdefault("k", 4)
    sae = sae_cls(cfg_cls(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(hook_name="blocks.0.hook_resid_post"), **cfg))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        if arch == "jumprelu":
            sae.threshold.copy_(torch.rand(d_sae, generator=g) * 2 + 0.1)
        # decoder rows of different norms make every fold rule do real work
        sae.W_dec.mul_(torch.rand(d_sae, 1, generator=g) * 3 + 0.2)
    return sae


def assert_png(path: Path, *, min_width: int = 400, min_height: int = 300) -> tuple[int, int]:
    """``path`` is a PNG (signature and IHDR chunk) of at least the given size; return its width and height."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= min_width and height >= min_height, (width, height)
    assert len(data) > 5000  # something was drawn, not an empty canvas
    return width, height
