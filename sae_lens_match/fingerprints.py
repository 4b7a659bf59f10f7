"""Content fingerprints: what a saved result is keyed on, so a resume never reuses a stale one."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import torch


def sha256_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over named tensors (name, dtype, shape, bytes) in name order, e.g. a state dict."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """SHA-256 of ``value`` as canonical JSON (sorted keys; non-JSON values by ``str``)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
