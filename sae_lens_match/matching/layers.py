"""Matching a stack of SAEs layer by layer: streaming, resumable, spread over ``torch.distributed`` ranks."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.atomic import prepare_out_dir
from sae_lens_match.fingerprints import sha256_files, sha256_json, sha256_tensors
from sae_lens_match.matching.config import MatchConfig
from sae_lens_match.matching.match import match
from sae_lens_match.matching.matching import Matching, MatchingFileError
from sae_lens_match.sources.saes import load_sae

logger = logging.getLogger(__name__)

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
    they were made from the same SAEs (by content, not by name or date) with the same config
    and the file is intact; anything else is recomputed.

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
    _check_sources(saes)
    rank, world = _rank_and_world()
    if world > 1 and out_dir is None:
        raise ValueError("match_layers under torch.distributed needs out_dir: a directory all ranks share.")
    if out_dir is not None:  # before any work: a folder we cannot write would lose the first pair
        prepare_out_dir(out_dir, clean=world == 1)
    loaded: dict[int, SAE] = {}

    def resolve(i: int) -> SAE:
        if i not in loaded:
            item = saes[i]
            sae = item if isinstance(item, SAE) else item() if callable(item) else load_sae(item)
            if not isinstance(sae, SAE):
                raise TypeError(f"The loader for SAE {i} returned {type(sae).__name__}, not a SAELens SAE.")
            loaded[i] = sae
        return loaded[i]

    def origin(i: int) -> dict[str, Any]:
        item = saes[i]
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            # A directory is known by its files' contents, so a resume need not load it and a
            # re-saved identical SAE is still recognised.
            return {"index": i, "spec": str(item), "files_sha256": sha256_files(item)}
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
        if path is not None and path.is_dir():
            raise ValueError(f"{path} is a directory where the pair file belongs; move it away and rerun.")
        if path is not None and path.exists():
            try:
                saved = Matching.load(path)
            except MatchingFileError as error:
                logger.warning("%s; recomputing it.", error)
            else:
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


def _check_sources(saes: Sequence[SAESource]) -> None:
    """Refuse, before any work, a stack that is not a sequence of SAE sources."""
    if isinstance(saes, (str, Path, SAE)) or not isinstance(saes, Sequence):
        raise TypeError(f"match_layers takes a sequence of SAEs (or directories, 'release:sae_id' strings, loaders), got {type(saes).__name__}.")
    if len(saes) < 2:
        raise ValueError(f"match_layers needs at least two SAEs, got {len(saes)}.")
    for i, item in enumerate(saes):
        if isinstance(item, torch.nn.Module) and not isinstance(item, SAE):
            raise TypeError(f"SAE {i} of the stack is a {type(item).__name__}, not a SAELens SAE.")
        if not isinstance(item, (SAE, str, Path)) and not callable(item):
            raise TypeError(f"SAE {i} of the stack is a {type(item).__name__}; give an SAE, a directory, 'release:sae_id' or a loader.")


def _rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size under torch.distributed, else ``(0, 1)``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
