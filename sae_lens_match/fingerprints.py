"""Content fingerprints: what a saved result is keyed on, so a resume never reuses a stale one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch


def sha256_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over named tensors (name, dtype, shape, bytes) in name order, e.g. a state dict."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        flat = tensor.reshape(-1)  # a 0-d tensor has no bytes view of its own
        digest.update(flat.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """SHA-256 of ``value`` as canonical JSON (sorted keys; non-JSON values by ``str``)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks (memory stays small for multi-GB files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_files(path: str | Path) -> str:
    """SHA-256 of a file, or of every file under a directory (relative names and contents), so
    two copies of the same result agree whatever their modification times."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    listing = [(f.relative_to(path).as_posix(), sha256_file(f)) for f in sorted(path.rglob("*")) if f.is_file()]
    return sha256_json(listing)
