"""SAE Match: the minimum-MSE one-to-one matching between two SAEs' features (paper Eq. 3)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.assignment import assign
from sae_lens_match.assignment.core import pair_sq_dist
from sae_lens_match.folding import NonPositivePolicy, fold as fold_sae
from sae_lens_match.loading import load_sae
from sae_lens_match.matching import Matching
from sae_lens_match.validation import check_finite, check_same_d_in

DEFAULT_WEIGHTS: dict[str, float] = {"W_dec": 1.0, "W_enc": 1.0, "b_enc": 1.0}
"""The paper's experiments match on encoder + decoder + b_enc, equally weighted; b_dec never
(it does not depend on feature order)."""


def feature_rows(
    sae: SAE,
    *,
    fold: bool = True,
    weights: Mapping[str, float] | None = None,
    nonpositive_threshold: NonPositivePolicy = "error",
) -> torch.Tensor:
    """One row per feature holding the (folded) parameters SAE Match compares.

    Row ``i`` is ``[sqrt(w_dec) W_dec[i], sqrt(w_enc) W_enc[:, i], sqrt(w_b) b_enc[i]]``, so
    the squared distance between two rows is the weighted sum of squared parameter
    differences. Terms with weight 0 are left out.

    Returns:
        ``[d_sae, D]`` float32 on the SAE's device, ``D = d_in * (#matrix terms) + (#bias terms)``.
    """
    weights = _check_weights(weights)
    if fold:
        sae = fold_sae(sae, nonpositive_threshold=nonpositive_threshold)
    else:
        check_finite(sae)
    columns = {
        "W_dec": lambda: sae.W_dec,
        "W_enc": lambda: sae.W_enc.T,
        "b_enc": lambda: sae.b_enc[:, None],
    }
    parts = []
    for term, weight in weights.items():
        if weight == 0:
            continue
        if getattr(sae, term, None) is None:
            raise ValueError(f"{type(sae).__name__} has no {term}; give it weight 0 (weights={{'{term}': 0, ...}}).")
        parts.append(columns[term]().detach().float() * weight**0.5)
    return torch.cat(parts, dim=1)


def _check_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    merged = dict(DEFAULT_WEIGHTS if weights is None else {**{k: 0.0 for k in DEFAULT_WEIGHTS}, **weights})
    unknown = set(merged) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise ValueError(f"Unknown matching terms {sorted(unknown)}; choose from {sorted(DEFAULT_WEIGHTS)}.")
    if any(w < 0 for w in merged.values()) or not any(w > 0 for w in merged.values()):
        raise ValueError(f"Term weights must be >= 0 with at least one > 0, got {merged}.")
    return merged


def parameter_mse(
    sae_a: SAE,
    sae_b: SAE,
    permutation: torch.Tensor,
    *,
    fold: bool = True,
    weights: Mapping[str, float] | None = None,
    nonpositive_threshold: NonPositivePolicy = "error",
) -> torch.Tensor:
    """Per-pair MSE between A's features and the B features ``permutation`` assigns them.

    This scores any pairing on the same footing, e.g. the paper's Fig. 3 variants: vanilla
    (identity), matched on unfolded weights, and folded+matched, all scored with ``fold=True``.

    Returns:
        ``[d_sae_a]`` float64; ``nan`` where ``permutation`` is ``-1``.
    """
    check_same_d_in(sae_a, sae_b)
    kw = dict(fold=fold, weights=weights, nonpositive_threshold=nonpositive_threshold)
    rows_a, rows_b = feature_rows(sae_a, **kw), feature_rows(sae_b, **kw)
    return pair_sq_dist(rows_a, rows_b.to(rows_a.device), torch.as_tensor(permutation).long().cpu()) / rows_a.shape[1]


def match(
    sae_a: SAE,
    sae_b: SAE,
    *,
    fold: bool = True,
    weights: Mapping[str, float] | None = None,
    solver: str = "auto",
    nonpositive_threshold: NonPositivePolicy = "error",
    source: Mapping[str, Any] | None = None,
    target: Mapping[str, Any] | None = None,
    **solver_options: Any,
) -> Matching:
    """Match the features of ``sae_a`` to those of ``sae_b`` with minimal total parameter MSE.

    The exact solution of the linear assignment problem on the (folded) parameters. With
    different widths the smaller side is fully matched; A features left over get ``-1``.

    Args:
        sae_a, sae_b: SAELens SAEs over the same ``d_in`` (typically consecutive layers).
        fold: fold thresholds into the weights first (:func:`sae_lens_match.fold`).
        weights: term weights among ``W_dec``, ``W_enc``, ``b_enc`` (default all 1; missing
            keys count as 0 when a dict is given).
        solver: assignment solver (``"auto"``, ``"dense"``, ...; see :mod:`sae_lens_match.assignment`).
        nonpositive_threshold: see :func:`sae_lens_match.fold`.
        source, target: extra description of A and B stored in the result (release, path, ...).

    Returns:
        A :class:`Matching` whose ``cost`` is the per-pair MSE over the compared parameters.
    """
    check_same_d_in(sae_a, sae_b)
    weights = _check_weights(weights)
    kw = dict(fold=fold, weights=weights, nonpositive_threshold=nonpositive_threshold)
    start = time.perf_counter()
    rows_a = feature_rows(sae_a, **kw)
    rows_b = feature_rows(sae_b, **kw).to(rows_a.device)
    result = assign(rows_a, rows_b, solver=solver, **solver_options)
    info = {
        "random_pair_median_cost": _random_pair_median(rows_a, rows_b),
        "method": "sae_match",
        "fold": fold,
        "weights": weights,
        "seconds": time.perf_counter() - start,
        "steps": 1,
        **result.info,
    }
    return Matching(
        permutation=result.cols,
        cost=result.sq_dist / rows_a.shape[1],
        d_sae_b=sae_b.cfg.d_sae,
        source={**sae_description(sae_a), **(source or {})},
        target={**sae_description(sae_b), **(target or {})},
        info=info,
    )


def _random_pair_median(rows_a: torch.Tensor, rows_b: torch.Tensor, seed: int = 0) -> float:
    """Median per-pair MSE of a random pairing: the scale a real match should be far below."""
    g = torch.Generator().manual_seed(seed)
    n = min(rows_a.shape[0], rows_b.shape[0])
    a_idx = torch.randperm(rows_a.shape[0], generator=g)[:n]
    b_idx = torch.randperm(rows_b.shape[0], generator=g)[:n]
    cols = torch.full((rows_a.shape[0],), -1, dtype=torch.long)
    cols[a_idx] = b_idx
    return float(pair_sq_dist(rows_a, rows_b, cols).nanmedian()) / rows_a.shape[1]


def sae_description(sae: SAE) -> dict[str, Any]:
    """What identifies an SAE in saved results."""
    meta = sae.cfg.metadata
    return {
        "architecture": sae.cfg.architecture(),
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "hook_name": meta.hook_name,
        "model_name": meta.model_name,
    }


SAESource = Union[SAE, str, Path, Callable[[], SAE]]


def match_layers(
    saes: Sequence[SAESource],
    *,
    out_dir: str | Path | None = None,
    progress: bool = True,
    **match_options: Any,
) -> list[Matching]:
    """Match each consecutive pair ``(saes[i], saes[i+1])``.

    SAEs are taken one at a time and released after use, so with lazy sources (a path, a
    ``"release:sae_id"`` string or a zero-argument loader) at most two are held in memory.
    With ``out_dir``, each pair is written to ``out_dir/pair_{i:03d}.safetensors`` as soon as
    it is done, and pairs already there are read back instead of recomputed (resume).

    Pairs are independent. Under ``torch.distributed`` (e.g. ``torchrun`` or
    ``accelerate launch``, one process per GPU or host) each rank matches the pairs
    ``i % world_size == rank`` into ``out_dir`` (which must be shared), all ranks meet at a
    barrier, and every rank returns the whole list, read back from ``out_dir``.

    Returns:
        ``len(saes) - 1`` matchings; matching ``i`` maps layer ``i`` to layer ``i + 1``.
    """
    if len(saes) < 2:
        raise ValueError(f"match_layers needs at least two SAEs, got {len(saes)}.")
    rank, world = _rank_and_world()
    if world > 1 and out_dir is None:
        raise ValueError("match_layers under torch.distributed needs out_dir: a directory all ranks share.")
    origins = [_origin(item) for item in saes]

    def resolve(i: int) -> SAE:
        item = saes[i]
        if isinstance(item, SAE):
            return item
        return item() if callable(item) else load_sae(item)

    matchings: list[Matching] = []
    previous: SAE | None = None
    mine = range(rank, len(saes) - 1, world)
    for i in tqdm(mine, desc="matching layer pairs", disable=not progress):
        fingerprint = _fingerprint(origins[i], origins[i + 1], match_options)
        path = Path(out_dir) / f"pair_{i:03d}.safetensors" if out_dir is not None else None
        if path is not None and path.exists():
            saved = Matching.load(path)
            if saved.info.get("fingerprint") == fingerprint:
                matchings.append(saved)
                previous = None  # the next pair loads its own A
                continue
        if world > 1:
            previous = None  # a rank's pairs are not consecutive
        a = previous if previous is not None else resolve(i)
        b = resolve(i + 1)
        m = match(
            a, b,
            source={"index": i, **origins[i]}, target={"index": i + 1, **origins[i + 1]},
            **match_options,
        )
        m = replace(m, info={**m.info, "fingerprint": fingerprint})
        if path is not None:
            m.save(path)
        matchings.append(m)
        previous = b
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


def _origin(item: SAESource) -> dict[str, Any]:
    """Where an SAE comes from, with enough to tell whether a saved result is still about it."""
    if isinstance(item, SAE):
        digest = hashlib.sha256()
        for name, p in sorted(item.state_dict().items()):
            digest.update(name.encode())
            digest.update(p.detach().cpu().contiguous().numpy().tobytes())
        return {"weights_sha256": digest.hexdigest()}
    if callable(item):
        return {"loader": getattr(item, "__qualname__", repr(item))}
    path = Path(item)
    if path.is_dir():
        stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(path.iterdir()) if f.is_file()]
        return {"spec": str(item), "files": stamp}
    return {"spec": str(item)}


def _fingerprint(a: dict[str, Any], b: dict[str, Any], options: dict[str, Any]) -> str:
    text = json.dumps([a, b, options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
