"""Loaders: the embedded world by default, hub models/SAEs/datasets by name.

With no name, each loader builds the world on first use (``build_world``) and reads it
from the cache. With a hub name (``"pythia-70m-deduped"``, release
``"pythia-70m-deduped-res-sm"``) the same call goes to TransformerLens / SAELens /
Hugging Face, and raises ``HubUnavailableError`` when the hub cannot be reached.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from sae_lens import SAE

from sae_lens_match.loading import load_pretrained
from sae_lens_match.world.build import MANIFEST, WorldConfig, build_world
from sae_lens_match.hub import hub_call
from sae_lens_match.world.model import (
    WORLD_MODEL_NAME,
    load_bridge_model,
    load_hf_model,
    load_hooked_model,
)
from sae_lens_match.world.saes import HOOK_KINDS, hook_name
from sae_lens_match.world.tokenizer import load_tokenizer as _load_tokenizer_dir

ModelKind = Literal["hf", "hooked", "hooked_sae", "bridge"]
MODEL_KINDS: tuple[str, ...] = ("hf", "hooked", "hooked_sae", "bridge")


def _is_world(name: str | None) -> bool:
    return name is None or name == WORLD_MODEL_NAME


def _world(seed: int, cache_dir: str | Path | None, config: WorldConfig | None, progress: bool) -> Path:
    return build_world(seed=seed, cache_dir=cache_dir, config=config, progress=progress)


def manifest(
    seed: int = 0, cache_dir: str | Path | None = None, config: WorldConfig | None = None, progress: bool = True
) -> dict[str, Any]:
    """The world's ``world.json``: config, LM and SAE metrics, hashes, build time."""
    return json.loads((_world(seed, cache_dir, config, progress) / MANIFEST).read_text())


def load_model(
    name: str | None = None,
    kind: ModelKind = "hooked",
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    config: WorldConfig | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> Any:
    """Load the world LM (default) or a hub model, as one of four kinds.

    Args:
        name: None (or ``"sae-lens-match-world"``) for the embedded world; otherwise a
            TransformerLens / Hugging Face model name such as ``"pythia-70m-deduped"``.
        kind: ``"hf"`` (``GPTNeoXForCausalLM`` / ``AutoModelForCausalLM``, what TRL
            fine-tunes), ``"hooked"`` (``HookedTransformer``), ``"hooked_sae"``
            (``HookedSAETransformer``) or ``"bridge"`` (``TransformerBridge``).
        seed, cache_dir, config: which world (ignored for hub models).
        device: torch device.
        progress: show build progress if the world has to be built.

    Raises:
        ValueError: unknown ``kind``.
        HubUnavailableError: a hub model was asked for and cannot be downloaded.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    if not _is_world(name):
        return _load_hub_model(name, kind, device)  # type: ignore[arg-type]
    model_dir = _world(seed, cache_dir, config, progress) / "model"
    if kind == "hf":
        return load_hf_model(model_dir, device)
    if kind == "bridge":
        return load_bridge_model(model_dir, device)
    if kind == "hooked_sae":
        from sae_lens import HookedSAETransformer

        return load_hooked_model(model_dir, HookedSAETransformer, device)
    return load_hooked_model(model_dir, device=device)


def _load_hub_model(name: str, kind: str, device: str) -> Any:
    from transformer_lens.loading_from_pretrained import get_official_model_name

    with hub_call("model", name):
        if kind == "hooked":
            from transformer_lens import HookedTransformer

            return HookedTransformer.from_pretrained(name, device=device)
        if kind == "hooked_sae":
            from sae_lens import HookedSAETransformer

            return HookedSAETransformer.from_pretrained(name, device=device)
        try:  # TransformerLens alias ("pythia-70m-deduped") -> hub id; else use as given
            hub_id = get_official_model_name(name)
        except ValueError:
            hub_id = name
        if kind == "bridge":
            from transformer_lens.model_bridge import TransformerBridge

            return TransformerBridge.boot_transformers(hub_id, device=device)
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(hub_id).to(device).eval()


def load_tokenizer(
    name: str | None = None,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    config: WorldConfig | None = None,
    progress: bool = True,
) -> Any:
    """The world tokenizer (default) or a hub model's tokenizer (``AutoTokenizer``)."""
    if _is_world(name):
        return _load_tokenizer_dir(_world(seed, cache_dir, config, progress) / "model")
    from transformer_lens.loading_from_pretrained import get_official_model_name
    from transformers import AutoTokenizer

    try:
        hub_id = get_official_model_name(name)  # type: ignore[arg-type]
    except ValueError:
        hub_id = name
    with hub_call("tokenizer", str(name)):
        return AutoTokenizer.from_pretrained(hub_id)


def _layer_of(sae_id: str) -> int:
    found = re.search(r"(?:blocks\.|layer_)(\d+)", sae_id)
    return int(found.group(1)) if found else -1


def load_saes(
    hook: str = "resid_post",
    release: str | None = None,
    *,
    layers: Sequence[int] | None = None,
    sae_ids: Sequence[str] | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    config: WorldConfig | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> list[SAE]:
    """SAEs for every layer (or ``layers``) at one hook kind, ordered by layer.

    Args:
        hook: ``"resid_post"`` or ``"mlp_out"`` (``blocks.L.hook_<hook>``).
        release: None for the world's JumpReLU SAEs (``SAE.load_from_disk``); otherwise
            a SAELens release such as ``"pythia-70m-deduped-res-sm"`` whose ids ending in
            ``hook_<hook>`` are loaded with ``SAE.from_pretrained``.
        layers: restrict to these layers (default: all).
        sae_ids: explicit ids within ``release`` (for releases whose ids name no hook).
        seed, cache_dir, config: which world.
        device: torch device.

    Raises:
        ValueError: unknown hook kind, missing layer, or a release with no matching ids.
        HubUnavailableError: the release's weights cannot be downloaded.
    """
    if hook not in HOOK_KINDS:
        raise ValueError(f"hook must be one of {sorted(HOOK_KINDS)}, got {hook!r}")
    if release is not None:
        return _load_release(release, hook, layers, sae_ids, device)
    root = _world(seed, cache_dir, config, progress)
    n_layers = json.loads((root / MANIFEST).read_text())["config"]["n_layers"]
    wanted = list(range(n_layers)) if layers is None else list(layers)
    missing = [layer for layer in wanted if not (root / "saes" / hook_name(hook, layer)).is_dir()]
    if missing:
        raise ValueError(f"the world has no {hook} SAE for layers {missing} (it has {n_layers} layers)")
    return [SAE.load_from_disk(root / "saes" / hook_name(hook, layer), device=device) for layer in wanted]


def _load_release(
    release: str, hook: str, layers: Sequence[int] | None, sae_ids: Sequence[str] | None, device: str
) -> list[SAE]:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if sae_ids is None:
        if release not in directory:
            load_pretrained(release, "", device=device)  # raises a ValueError naming close releases
        ids = [i for i in directory[release].saes_map if i.endswith(f"hook_{hook}")]
        if not ids:
            raise ValueError(
                f"release {release!r} has no ids ending in hook_{hook}; pass sae_ids=[...] "
                f"(its ids: {list(directory[release].saes_map)[:5]}...)"
            )
        ids.sort(key=_layer_of)
        if layers is not None:
            ids = [i for i in ids if _layer_of(i) in set(layers)]
    else:
        ids = list(sae_ids)
    return [load_pretrained(release, sae_id, device=device) for sae_id in ids]


def token_dataset(
    split: str = "train",
    n_reviews: int = 2000,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    config: WorldConfig | None = None,
    progress: bool = True,
) -> Any:
    """World reviews as a ``datasets.Dataset`` with a ``tokens`` column, for SAELens.

    Rows are packed to the world's context size and begin with BOS (see
    ``pack_rows``), ready for ``LanguageModelSAETrainingRunner(cfg,
    override_model=load_model(), override_dataset=...)`` with ``context_size=n_ctx``,
    ``prepend_bos=False``, ``is_dataset_tokenized=True`` and (as the world SAEs were
    trained) ``exclude_special_tokens=True``. Shape of each row: ``[n_ctx]``.
    """
    import datasets

    from sae_lens_match.world.corpus import corpus
    from sae_lens_match.world.train import pack_rows

    root = _world(seed, cache_dir, config, progress)
    tokenizer = _load_tokenizer_dir(root / "model")
    n_ctx = json.loads((root / MANIFEST).read_text())["config"]["n_ctx"]
    rows = pack_rows(corpus(split, n_reviews, seed), tokenizer, n_ctx)
    return datasets.Dataset.from_dict({"tokens": rows.tolist()})
