"""Loading SAEs: SAELens releases (``release:sae_id``) and local directories, with clear errors offline."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from sae_lens import SAE
from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory
from sae_lens.registry import SAE_CLASS_REGISTRY

from sae_lens_match.sources.hub import hub_call


def default_device() -> str:
    """CUDA when present, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def release_ids(release: str) -> list[str]:
    """The SAE ids of a SAELens release (offline: read from SAELens's own directory).

    Raises:
        ValueError: unknown release, with close names.
    """
    directory = get_pretrained_saes_directory()
    if release not in directory:
        close = difflib.get_close_matches(release, list(directory), n=5)
        hint = f" Did you mean one of {close}?" if close else ""
        raise ValueError(f"Unknown SAELens release {release!r}.{hint} See sae_lens.loading.pretrained_saes_directory.")
    return list(directory[release].saes_map)


def load_pretrained(release: str, sae_id: str, *, device: str | None = None) -> SAE:
    """``SAE.from_pretrained(release, sae_id)`` with errors that name what went wrong.

    Raises:
        ValueError: unknown release (with close names) or unknown ``sae_id`` (with valid ones).
        HubUnavailableError: the release is known but its weights cannot be downloaded.
    """
    ids = release_ids(release)
    if sae_id not in ids:
        close = difflib.get_close_matches(sae_id, ids, n=5) or ids[:5]
        raise ValueError(f"Release {release!r} has no SAE {sae_id!r}; e.g. {close}.")
    with hub_call("SAE", f"{release}:{sae_id}"):
        return SAE.from_pretrained(release, sae_id, device=device or default_device())


def require_sae(value: object, what: str = "argument") -> SAE:
    """``value`` if it is a SAELens ``SAE``, else a ``TypeError`` saying what was given instead."""
    if not isinstance(value, SAE):
        hint = " (load it first with sae_lens_match.load_sae)" if isinstance(value, (str, Path)) else ""
        raise TypeError(f"{what} must be a SAELens SAE, got {type(value).__name__}{hint}.")
    return value


def load_sae(spec: str | Path, *, device: str | None = None) -> SAE:
    """Load an SAE from a local directory (``SAE.load_from_disk``) or ``"release:sae_id"``.

    Raises:
        ValueError: no such directory or release, an unreadable ``cfg.json``, or an architecture
            SAELens has no class for (the message lists the registered ones).
    """
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"load_sae takes a directory or 'release:sae_id', got {type(spec).__name__}.")
    path = Path(spec)
    if path.is_dir():
        _check_cfg(path)
        return SAE.load_from_disk(path, device=device or default_device())
    text = str(spec)
    if ":" not in text:
        raise ValueError(f"{text!r} is neither an SAE directory nor 'release:sae_id' (e.g. 'gemma-scope-2b-pt-res-canonical:layer_12/width_16k/canonical').")
    release, sae_id = text.split(":", 1)
    return load_pretrained(release, sae_id, device=device)


def _check_cfg(path: Path) -> None:
    """Refuse, in words, a directory whose ``cfg.json`` SAELens could not load."""
    cfg_path = path / "cfg.json"
    if not cfg_path.is_file():
        raise ValueError(f"{path} is a directory but holds no SAELens cfg.json.")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as error:
        raise ValueError(f"{cfg_path} is not valid JSON ({error}).") from None
    architecture = cfg.get("architecture", "standard") if isinstance(cfg, dict) else None
    if architecture not in SAE_CLASS_REGISTRY:
        raise ValueError(
            f"{cfg_path} names architecture {architecture!r}, which SAELens has no class for; "
            f"registered: {sorted(SAE_CLASS_REGISTRY)}. Register it with sae_lens.registry.register_sae_class."
        )


def _layer_of(sae_id: str) -> int:
    found = re.search(r"(?:blocks\.|layer_)(\d+)", sae_id)
    return int(found.group(1)) if found else -1


def release_stack(release: str, hook: str, *, layers: Sequence[int] | None = None) -> list[str]:
    """``"release:sae_id"`` specs of a release's SAEs at one hook kind, ordered by layer.

    Args:
        release: e.g. ``"pythia-70m-deduped-res-sm"``.
        hook: the hook kind its ids end with, e.g. ``"resid_post"`` (ids ``...hook_resid_post``).
        layers: keep only these layers (default: all).

    Raises:
        ValueError: unknown release, or no id ending in ``hook_<hook>`` (the message lists some ids;
            load such releases by explicit ``release:sae_id`` specs).
    """
    ids = release_ids(release)
    chosen = sorted((i for i in ids if i.endswith(f"hook_{hook}")), key=_layer_of)
    if not chosen:
        raise ValueError(f"Release {release!r} has no ids ending in hook_{hook}; name them as 'release:sae_id' (its ids: {ids[:5]}...).")
    if layers is not None:
        chosen = [i for i in chosen if _layer_of(i) in set(layers)]
    return [f"{release}:{i}" for i in chosen]
