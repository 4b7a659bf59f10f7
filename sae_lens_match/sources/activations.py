"""Activations at TransformerLens hooks: the one place the package reads a model's hidden states.

Everything runs on a :class:`~sae_lens_match.sources.tokens.TokenSet` (a TransformerLens model
and BOS-led token rows) through ``run_with_hooks``, so it works on ``HookedTransformer``,
``HookedSAETransformer`` and ``TransformerBridge`` alike. BOS positions are always left out.

- :func:`hidden_states`: per batch, the activations at some hooks (streaming; evaluations).
- :func:`collect_activations`: all of them in memory (training small SAEs).
- :func:`save_activations` / :func:`load_activations`: safetensors shards on disk, one per
  batch, with the ``(row, position)`` of every stored token; a rerun skips finished shards.
- :func:`feature_activations`: per batch, SAE feature activations, each SAE at its own hook.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.atomic import atomic_path, write_json
from sae_lens_match.fingerprints import sha256_tensors
from sae_lens_match.sources.hooks import check_hooks
from sae_lens_match.sources.tokens import TokenSet

MANIFEST = "manifest.json"


def hidden_states(data: TokenSet, hook_names: Sequence[str], desc: str | None = None) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """Yield, per batch of ``data``, the activations at ``hook_names`` on the evaluated positions.

    Yields:
        ``(acts, mask)``: ``acts[name]`` is ``[n_positions_in_batch, d]`` (BOS positions
        removed, rows in (row, position) order); ``mask`` is the ``[batch, seq]`` position mask.

    Raises:
        ValueError: a hook the model lacks, or one whose activations are not ``[batch, seq, d]``.
    """
    names = check_hooks(data.model, list(dict.fromkeys(hook_names)))
    store: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        # closures, not hook.name: a TransformerBridge reports its own name for aliases
        def hook(act: torch.Tensor, hook: Any) -> None:
            store[name] = act.detach()

        return hook

    fwd_hooks = [(n, make_hook(n)) for n in names]
    with torch.no_grad():
        for tokens in data.batches(desc):
            store.clear()
            data.model.run_with_hooks(tokens, return_type=None, fwd_hooks=fwd_hooks)
            mask = data.position_mask(tokens)
            yield {n: _flat(store[n], mask, n) for n in names}, mask


def _flat(act: torch.Tensor, mask: torch.Tensor, name: str) -> torch.Tensor:
    if act.ndim != 3 or act.shape[:2] != mask.shape:
        raise ValueError(f"Hook {name!r} gives activations of shape {tuple(act.shape)}; this needs [batch, seq, d] (e.g. hook_resid_post, hook_mlp_out).")
    return act[mask.to(act.device)]


def collect_activations(data: TokenSet, hook_names: Sequence[str], desc: str | None = None) -> dict[str, torch.Tensor]:
    """All activations at ``hook_names`` on the evaluated positions of ``data``, in memory.

    Returns:
        hook name -> float32 CPU tensor ``[n_positions, d]`` (tokens in row-major order).
    """
    chunks: dict[str, list[torch.Tensor]] = {h: [] for h in hook_names}
    for acts, _ in hidden_states(data, hook_names, desc):
        for h in hook_names:
            chunks[h].append(acts[h].float().cpu())
    return {h: torch.cat(c) for h, c in chunks.items()}


def save_activations(data: TokenSet, hook_names: Sequence[str], out_dir: str | Path) -> Path:
    """Store the activations at ``hook_names`` on ``data`` as safetensors shards in ``out_dir``.

    Shard ``k`` holds the rows of batch ``k`` of ``data``: per hook, ``[n, d]`` float32
    activations of its evaluated (non-BOS) positions, and ``positions [n, 2]`` (row, token
    position). Memory stays bounded by one batch. A rerun skips shards already written; a
    directory written for another model (by weights), other tokens, hooks or batch size is refused.

    Returns:
        ``out_dir``; read it with :func:`load_activations`.
    """
    names = check_hooks(data.model, list(hook_names))
    out_dir = Path(out_dir)
    n_shards = -(-data.n_rows // data.batch_size)
    manifest = {
        "hook_names": names,
        "n_rows": data.n_rows,
        "batch_size": data.batch_size,
        "n_shards": n_shards,
        "tokens_sha256": data.fingerprint(),
        "model_sha256": sha256_tensors(data.model.state_dict()),
    }
    manifest_path = out_dir / MANIFEST
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if {k: old.get(k) for k in manifest} != manifest:
            raise ValueError(f"{out_dir} holds activations of another model, other tokens, hooks or batch size; use a new directory.")
    write_json(manifest_path, manifest)
    for k in tqdm(range(n_shards), desc="collecting activations", disable=not data.progress):
        shard = out_dir / f"shard_{k:05d}.safetensors"
        if shard.exists():
            continue
        start = k * data.batch_size
        batch = data.subset(slice(start, start + data.batch_size))
        (acts, mask), = hidden_states(batch, names)
        row, pos = mask.cpu().nonzero(as_tuple=True)
        tensors = {"positions": torch.stack([row + start, pos], 1).contiguous()}
        tensors.update({h: acts[h].float().cpu().contiguous() for h in names})
        with atomic_path(shard) as tmp:
            save_file(tensors, str(tmp))
    return out_dir


def load_activations(out_dir: str | Path, hook_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All stored activations of one hook: ``([n_tokens, d], positions [n_tokens, 2])``."""
    out_dir = Path(out_dir)
    shards = sorted(out_dir.glob("shard_*.safetensors"))
    if not shards:
        raise ValueError(f"No activation shards in {out_dir}.")
    if (out_dir / MANIFEST).is_file():
        expected = json.loads((out_dir / MANIFEST).read_text())["n_shards"]
        if len(shards) != expected:  # never return part of the activations as if it were all
            raise ValueError(f"{out_dir} holds {len(shards)} of {expected} activation shards; rerun save_activations to finish it.")
    acts, positions = [], []
    for shard in shards:
        try:
            data = load_file(str(shard))
        except (SafetensorError, OSError) as error:
            raise ValueError(f"Cannot read activation shard {shard} ({error}); delete it and rerun save_activations.") from None
        if hook_name not in data:
            raise ValueError(f"{shard} has no activations for {hook_name!r}; it has {sorted(k for k in data if k != 'positions')}.")
        acts.append(data[hook_name])
        positions.append(data["positions"])
    return torch.cat(acts), torch.cat(positions)


def check_sae_fits(sae: SAE, width: int, hook: str, what: str = "SAE") -> None:
    """Raise ``ValueError`` unless ``sae`` reads vectors of ``width``, the width of ``hook``."""
    if sae.cfg.d_in != width:
        raise ValueError(f"{what} has d_in={sae.cfg.d_in} but hook {hook!r} gives vectors of width {width}.")


def feature_activations(data: TokenSet, saes: Sequence[SAE], desc: str | None = None) -> Iterator[list[torch.Tensor]]:
    """Yield, per batch, each SAE's feature activations on the evaluated (non-BOS) positions.

    Each SAE encodes the activations at its own ``cfg.metadata.hook_name``, all from the same
    clean forward pass, so row ``k`` of every tensor is the same token.

    Yields:
        one ``[n_positions_in_batch, d_sae]`` tensor per SAE.
    """
    hooks = [data.sae_hook(sae, f"SAE {k}") for k, sae in enumerate(saes)]
    for acts, _ in hidden_states(data, hooks, desc=desc):
        out = []
        for sae, hook in zip(saes, hooks):
            x = acts[hook]
            check_sae_fits(sae, x.shape[-1], hook)
            with torch.no_grad():
                out.append(sae.encode(x))
        yield out
