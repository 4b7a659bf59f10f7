"""Matching a stack of SAEs layer by layer: streaming, resumable, spread over ``torch.distributed`` ranks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.fingerprints import sha256_json, sha256_tensors
from sae_lens_match.matching.config import MatchConfig
from sae_lens_match.matching.match import match
from sae_lens_match.matching.matching import Matching
from sae_lens_match.sources.saes import load_sae

SAESource = Union[SAE, str, Path, Callable[[], SAE]]
"""An SAE, a directory or ``"release:sae_id"`` (loaded when needed), or a zero-argument loader."""


def match_layers(
    saes: Sequence[SAESource],
    config: MatchConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    progress: bool = True,
    **overrides: Any,
) -> list[Matching]:
    """Match each consecutive pair ``(saes[i], saes[i+1])`` with :func:`match`.

    SAEs are taken one at a time and released after use, so with lazy sources (a path, a
    ``"release:sae_id"`` string or a zero-argument loader) at most two are held in memory.
    With ``out_dir``, each pair is written to ``out_dir/pair_{i:03d}.safetensors`` as soon as
    it is done, and pairs already there are read back instead of recomputed (resume) when
    they were made from the same SAEs with the same config.

    Pairs are independent. Under ``torch.distributed`` (e.g. ``torchrun`` or
    ``accelerate launch``, one process per GPU or host) each rank matches the pairs
    ``i % world_size == rank`` into ``out_dir`` (which must be shared), all ranks meet at a
    barrier, and every rank returns the whole list, read back from ``out_dir``.

    Args:
        saes: the stack, shallowest first (see :data:`SAESource`).
        config, overrides: how to match (:class:`MatchConfig`).
        out_dir: where pair files go (and are resumed from).
        progress: show a progress bar.

    Returns:
        ``len(saes) - 1`` matchings; matching ``i`` maps layer ``i`` to layer ``i + 1``.
    """
    config = MatchConfig.of(config, **overrides)
    if len(saes) < 2:
        raise ValueError(f"match_layers needs at least two SAEs, got {len(saes)}.")
    rank, world = _rank_and_world()
    if world > 1 and out_dir is None:
        raise ValueError("match_layers under torch.distributed needs out_dir: a directory all ranks share.")
    loaded: dict[int, SAE] = {}

    def resolve(i: int) -> SAE:
        if i not in loaded:
            item = saes[i]
            loaded[i] = item if isinstance(item, SAE) else item() if callable(item) else load_sae(item)
        return loaded[i]

    def origin(i: int) -> dict[str, Any]:
        item = saes[i]
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            # A directory is known by its files, so a resume need not load it.
            files = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(Path(item).iterdir()) if f.is_file()]
            return {"index": i, "spec": str(item), "files_sha256": sha256_json(files)}
        # Anything else is known by its weights: a loader's name or a release id says
        # nothing about what it returns today.
        spec = {"spec": str(item)} if isinstance(item, (str, Path)) else {}
        return {"index": i, **spec, "weights_sha256": sha256_tensors(resolve(i).state_dict())}

    matchings: list[Matching] = []
    for i in tqdm(range(rank, len(saes) - 1, world), desc="matching layer pairs", disable=not progress):
        for stale in [k for k in loaded if k < i]:
            del loaded[stale]  # hold at most the two SAEs of this pair
        source, target = origin(i), origin(i + 1)
        fingerprint = sha256_json([source, target, config.to_dict()])
        path = Path(out_dir) / f"pair_{i:03d}.safetensors" if out_dir is not None else None
        if path is not None and path.exists():
            saved = Matching.load(path)
            if saved.info.get("fingerprint") == fingerprint:
                matchings.append(saved)
                continue
        m = match(resolve(i), resolve(i + 1), config, source=source, target=target)
        m = replace(m, info={**m.info, "fingerprint": fingerprint})
        if path is not None:
            m.save(path)
        matchings.append(m)
    if world == 1:
        return matchings
    torch.distributed.barrier()
    return [Matching.load(Path(out_dir) / f"pair_{i:03d}.safetensors") for i in range(len(saes) - 1)]


def _rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size under torch.distributed, else ``(0, 1)``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
