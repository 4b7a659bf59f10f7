"""Collecting activations at TransformerLens hooks, streamed to disk (LFP step 3).

Works with ``HookedTransformer``, ``HookedSAETransformer`` and ``TransformerBridge`` (all
have ``run_with_cache``). Each batch of sequences becomes one safetensors shard holding,
per hook, the activations of every real (unmasked) token, plus ``positions`` ``[n, 2]``
(sequence index, token position) so later steps can pick the tokens they need. Memory
stays bounded by one batch; a rerun skips shards already written (resume).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from sae_lens_match.io import atomic_path, write_json

MANIFEST = "manifest.json"


def _fingerprint(tokens: torch.Tensor, mask: torch.Tensor, hook_names: Sequence[str], batch_size: int) -> str:
    h = hashlib.sha256()
    h.update(tokens.cpu().contiguous().numpy().tobytes())
    h.update(mask.cpu().contiguous().numpy().tobytes())
    h.update(repr((list(hook_names), batch_size)).encode())
    return h.hexdigest()


def _check_hooks(model, hook_names: Sequence[str]) -> None:
    available = set(getattr(model, "hook_dict", {}))
    missing = [h for h in hook_names if h not in available]
    if not hook_names or missing:
        example = sorted(h for h in available if h.startswith("blocks.0."))[:6]
        raise ValueError(f"Unknown hook name(s) {missing or '(none given)'}; this model has e.g. {example}.")


@torch.no_grad()
def collect_activations(
    model,
    tokens: torch.Tensor,
    hook_names: Sequence[str],
    out_dir: str | Path,
    *,
    attention_mask: torch.Tensor | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> Path:
    """Run ``model`` over ``tokens`` and store the activations at ``hook_names``.

    Args:
        model: a TransformerLens ``HookedTransformer``/``HookedSAETransformer`` or a ``TransformerBridge``.
        tokens: ``[n_seq, seq_len]`` token ids.
        hook_names: e.g. ``["blocks.2.mlp.hook_post"]`` (the LFP default), ``blocks.L.hook_mlp_out``
            or residual hooks.
        attention_mask: ``[n_seq, seq_len]``, 1 for real tokens; masked tokens are not stored.
        batch_size: sequences per forward pass and per shard.

    Returns:
        ``out_dir``, holding ``manifest.json`` and ``shard_XXXXX.safetensors``; read it with
        :func:`load_activations`.
    """
    _check_hooks(model, hook_names)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [n_seq, seq_len], got {tuple(tokens.shape)}.")
    mask = torch.ones_like(tokens, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    if mask.shape != tokens.shape:
        raise ValueError(f"attention_mask {tuple(mask.shape)} does not match tokens {tuple(tokens.shape)}.")
    out_dir = Path(out_dir)
    fingerprint = _fingerprint(tokens, mask, hook_names, batch_size)
    manifest_path = out_dir / MANIFEST
    n_shards = (len(tokens) + batch_size - 1) // batch_size
    if manifest_path.exists():
        if json.loads(manifest_path.read_text()).get("fingerprint") != fingerprint:
            raise ValueError(f"{out_dir} holds activations of other inputs or hooks; use a new directory.")
    write_json(manifest_path, {"hook_names": list(hook_names), "n_sequences": len(tokens), "batch_size": batch_size, "n_shards": n_shards, "fingerprint": fingerprint})
    device = next(model.parameters()).device
    for k in tqdm(range(n_shards), desc="collecting activations", disable=not progress):
        shard = out_dir / f"shard_{k:05d}.safetensors"
        if shard.exists():
            continue
        rows = slice(k * batch_size, (k + 1) * batch_size)
        batch_mask = mask[rows]
        kwargs = {} if attention_mask is None else {"attention_mask": batch_mask.to(device)}
        _, cache = model.run_with_cache(tokens[rows].to(device), names_filter=list(hook_names), return_type=None, **kwargs)
        seq, pos = batch_mask.nonzero(as_tuple=True)
        tensors = {"positions": torch.stack([seq + k * batch_size, pos], 1).contiguous()}
        for name in hook_names:
            tensors[name] = cache[name][batch_mask.to(device)].float().cpu().contiguous()
        with atomic_path(shard) as tmp:
            save_file(tensors, str(tmp))
    return out_dir


def load_activations(out_dir: str | Path, hook_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All stored activations of one hook: ``([n_tokens, d], positions [n_tokens, 2])``."""
    out_dir = Path(out_dir)
    shards = sorted(out_dir.glob("shard_*.safetensors"))
    if not shards:
        raise ValueError(f"No activation shards in {out_dir}.")
    acts, positions = [], []
    for shard in shards:
        data = load_file(str(shard))
        if hook_name not in data:
            raise ValueError(f"{shard} has no activations for {hook_name!r}; it has {sorted(k for k in data if k != 'positions')}.")
        acts.append(data[hook_name])
        positions.append(data["positions"])
    return torch.cat(acts), torch.cat(positions)
