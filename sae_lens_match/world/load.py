"""The world's loaders: its model, tokenizer, SAEs and token rows, built on first use.

Each loader builds the world if needed (``build_world``) and reads it from the cache through
:mod:`sae_lens_match.sources`, like any checkpoint or SAE directory. Hub models, SAE releases
and datasets are :mod:`sae_lens_match.sources`'s business, not the world's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE

from sae_lens_match.fingerprints import sha256_tensors
from sae_lens_match.sources.hooks import hook_name
from sae_lens_match.sources.models import ModelKind, load_model as load_checkpoint, load_tokenizer as load_checkpoint_tokenizer
from sae_lens_match.sources.tokens import pack_texts, token_dataset as rows_dataset
from sae_lens_match.world.build import MANIFEST, WorldConfig, build_world
from sae_lens_match.world.corpus import corpus
from sae_lens_match.world.model import WORLD_MODEL_NAME
from sae_lens_match.world.saes import HOOK_KINDS


def world_root(seed: int = 0, cache_dir: str | Path | None = None, config: WorldConfig | None = None, progress: bool = True) -> Path:
    """The world's directory, built first if needed."""
    return build_world(seed=seed, cache_dir=cache_dir, config=config, progress=progress)


def manifest(seed: int = 0, cache_dir: str | Path | None = None, config: WorldConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """The world's ``world.json``: config, LM and SAE metrics, hashes, build time."""
    return json.loads((world_root(seed, cache_dir, config, progress) / MANIFEST).read_text())


def model_dir(seed: int = 0, cache_dir: str | Path | None = None, config: WorldConfig | None = None, progress: bool = True) -> Path:
    """The world LM's checkpoint directory (a Hugging Face ``save_pretrained`` directory)."""
    return world_root(seed, cache_dir, config, progress) / "model"


def load_model(
    kind: ModelKind = "hooked",
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    config: WorldConfig | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> Any:
    """The world LM as ``"hf"`` (``GPTNeoXForCausalLM``, what TRL fine-tunes), ``"hooked"``
    (``HookedTransformer``), ``"hooked_sae"`` (``HookedSAETransformer``) or ``"bridge"``
    (``TransformerBridge``): the same logits. Its TransformerLens name is ``sae-lens-match-world``
    and it prepends BOS, as it was trained."""
    options = {} if kind in ("hf", "bridge") else {"model_name": WORLD_MODEL_NAME, "default_prepend_bos": True}
    return load_checkpoint(model_dir(seed, cache_dir, config, progress), kind, device=device, **options)


def load_tokenizer(*, seed: int = 0, cache_dir: str | Path | None = None, config: WorldConfig | None = None, progress: bool = True) -> Any:
    """The world tokenizer (byte-level BPE; BOS ``<|endoftext|>``, id 0)."""
    return load_checkpoint_tokenizer(model_dir(seed, cache_dir, config, progress))


def sae_dirs(
    hook: str = "resid_post",
    *,
    layers: Sequence[int] | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    config: WorldConfig | None = None,
    progress: bool = True,
) -> list[Path]:
    """Directories of the world's SAEs at ``blocks.L.hook_<hook>``, one per layer (or ``layers``), in order.

    Raises:
        ValueError: unknown hook kind or missing layer.
    """
    if hook not in HOOK_KINDS:
        raise ValueError(f"hook must be one of {list(HOOK_KINDS)}, got {hook!r}")
    root = world_root(seed, cache_dir, config, progress)
    n_layers = json.loads((root / MANIFEST).read_text())["config"]["n_layers"]
    wanted = list(range(n_layers)) if layers is None else list(layers)
    missing = [layer for layer in wanted if not (root / "saes" / hook_name(hook, layer)).is_dir()]
    if missing:
        raise ValueError(f"the world has no {hook} SAE for layers {missing} (it has {n_layers} layers)")
    return [root / "saes" / hook_name(hook, layer) for layer in wanted]


def load_saes(hook: str = "resid_post", *, layers: Sequence[int] | None = None, device: str = "cpu", **world: Any) -> list[SAE]:
    """The world's JumpReLU SAEs at ``blocks.L.hook_<hook>`` (``"resid_post"``, ``"mlp_out"`` or ``"attn_out"``), ordered by layer.

    ``world``: ``seed``, ``cache_dir``, ``config``, ``progress`` of :func:`sae_dirs`.

    Raises:
        ValueError: a cached SAE whose weights differ from the ones the build recorded (a
            damaged cache; rebuild it with ``sae-lens-match world build --force``).
    """
    dirs = sae_dirs(hook, layers=layers, **world)
    recorded = json.loads((dirs[0].parent.parent / MANIFEST).read_text())["sae_sha256"]
    saes = [SAE.load_from_disk(d, device=device) for d in dirs]
    for d, sae in zip(dirs, saes):
        if sha256_tensors(sae.state_dict()) != recorded.get(d.name):
            raise ValueError(f"The cached world SAE {d} is damaged (its weights differ from the build's); rebuild with `sae-lens-match world build --force`.")
    return saes


def tokens(split: str = "train", n_reviews: int = 2000, *, seed: int = 0, **world: Any) -> torch.Tensor:
    """World reviews packed into BOS-led rows of the world's context size: ``[n_rows, n_ctx]`` int64."""
    root = world_root(seed, **world)
    n_ctx = json.loads((root / MANIFEST).read_text())["config"]["n_ctx"]
    return pack_texts(load_checkpoint_tokenizer(root / "model"), corpus(split, n_reviews, seed), n_ctx)


def token_dataset(split: str = "train", n_reviews: int = 2000, *, seed: int = 0, **world: Any) -> Any:
    """:func:`tokens` as a ``datasets.Dataset`` with a ``tokens`` column, for SAELens's
    ``LanguageModelSAETrainingRunner(override_dataset=...)``."""
    return rows_dataset(tokens(split, n_reviews, seed=seed, **world))
