"""Hidden-state approximation and layer pruning (SAE Match, paper Eq. 5).

For SAEs at hooks t and t+1 and a matching ``P`` from t's features to t+1's:
``f(t) = enc_t(x(t))``, ``f_hat(t+1) = P f(t)``, ``x_hat(t+1) = dec_{t+1}(f_hat(t+1))``.
During a forward pass the hidden state at t+1 is replaced by ``x_hat(t+1)`` (the layer
between t and t+1 is skipped) and we report

- ``delta_loss``: mean next-token loss with the replacement minus the clean loss (nats),
- ``explained_variance``: ``1 - Var(x_hat - x) / Var(x)`` with ``x`` the clean ``x(t+1)``,

over every non-BOS position (see :class:`~sae_lens_match.evaluation.data.TokenSet`).
``Var`` is the *total* variance: per-dimension variance over positions, summed over the
``d_model`` dimensions (so ``Var(x_hat - x)`` ignores a constant offset, as in the paper;
``mse``, the mean squared error per position summed over dimensions, does not).

The paper's baselines, same table: ``layer_drop`` (``x_hat(t+1) = x(t)``), ``current``
(``dec_{t+1}(enc_{t+1}(x(t+1)))``, the SAE's own reconstruction) and ``previous``
(``dec_t(enc_t(x(t)))``).

Everything runs through TransformerLens hooks and the SAEs' own ``encode``/``decode``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.evaluation.data import TokenSet
from sae_lens_match.folding import NonPositivePolicy, fold as fold_sae
from sae_lens_match.matching import Matching
from sae_lens_match.validation import check_same_d_in

ReplaceFn = Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor]
"""``(x_source [n, d] or None, x_target [n, d]) -> x_hat [n, d]`` on the evaluated positions."""

BASELINES = ("layer_drop", "current", "previous")
UnmatchedRule = Literal["own_decoder", "drop"]


@dataclass(frozen=True)
class Replacement:
    """How to replace the hidden state at ``target_hook``.

    Attributes:
        name: the method's name in result tables.
        target_hook: hook whose activation ``x(t+1)`` is replaced.
        fn: computes ``x_hat`` from ``x(t)`` (read at ``source_hook`` in the same forward
            pass) and the clean ``x(t+1)``; both ``[n_positions, d]``.
        source_hook: hook read for ``x(t)``; must run before ``target_hook`` (or be the same
            hook). ``None`` when ``fn`` does not need it.
        meta: extra columns for the result row (fold, quantile, ...).
        d_in: the width ``fn`` expects at both hooks (the SAEs' ``d_in``), checked against
            the model's activations; ``None`` skips the check.
    """

    name: str
    target_hook: str
    fn: ReplaceFn
    source_hook: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    d_in: int | None = None


@dataclass(frozen=True)
class ReplacementResult:
    """What one :class:`Replacement` did on a token set."""

    name: str
    delta_loss: float
    clean_loss: float
    loss: float
    explained_variance: float
    mse: float
    n_positions: int
    meta: dict[str, Any]

    def row(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "delta_loss": self.delta_loss,
            "explained_variance": self.explained_variance,
            "mse": self.mse,
            "clean_loss": self.clean_loss,
            "loss": self.loss,
            "n_positions": self.n_positions,
            **self.meta,
        }


class _Moments:
    """Streaming first and second moments of ``[n, d]`` batches, in float64."""

    def __init__(self) -> None:
        self.n = 0
        self.sum: torch.Tensor | None = None
        self.sum_sq = 0.0

    def add(self, v: torch.Tensor) -> None:
        v = v.detach().double()
        s = v.sum(0).cpu()
        self.sum = s if self.sum is None else self.sum + s
        self.sum_sq += float((v**2).sum())
        self.n += v.shape[0]

    def total_variance(self) -> float:
        """``sum_d Var_n(v[:, d])`` (population variance)."""
        mean = self.sum / self.n
        return self.sum_sq / self.n - float((mean**2).sum())

    def mean_sq_norm(self) -> float:
        return self.sum_sq / self.n


def explained_variance(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """``1 - Var(x_hat - x) / Var(x)`` for ``[n, d]`` tensors, ``Var`` the total variance.

    The same definition :func:`evaluate_replacements` streams over batches.
    """
    x, r = x.double(), (x_hat - x).double()
    return float(1 - (r - r.mean(0)).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def evaluate_replacements(data: TokenSet, replacements: Sequence[Replacement], *, desc: str = "replacements") -> list[ReplacementResult]:
    """Run each replacement over ``data`` and measure delta loss and explained variance.

    One clean forward pass per batch, then one per replacement. BOS positions keep their
    clean hidden state and are left out of variance and MSE; the loss is averaged over the
    predictions made at non-BOS positions (``loss_per_token[:, i]`` predicts token ``i+1``
    from position ``i``), for the clean and the replaced run alike.

    Returns:
        One :class:`ReplacementResult` per replacement, in order.

    Raises:
        ValueError: unknown hook names or a replacement that changes the activation's shape.
        RuntimeError: a source hook that does not run before its target hook.
    """
    for r in replacements:
        data.check_hook(r.target_hook, f"replacement {r.name!r} target")
        if r.source_hook is not None:
            data.check_hook(r.source_hook, f"replacement {r.name!r} source")
    n_valid_loss = 0
    clean_sum = 0.0
    loss_sums = [0.0] * len(replacements)
    x_moments = [_Moments() for _ in replacements]
    r_moments = [_Moments() for _ in replacements]
    total = len(replacements) + 1
    bar = tqdm(total=-(-data.n_rows // data.batch_size) * total, desc=desc, disable=not data.progress, leave=False)
    with torch.inference_mode():
        for tokens in data.batches():
            mask = data.position_mask(tokens)
            loss_mask = mask[:, :-1]  # loss at position i predicts token i+1 from position i
            clean = data.model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=[])
            clean_sum += float(clean[loss_mask].double().sum())
            n_valid_loss += int(loss_mask.sum())
            bar.update()
            for k, rep in enumerate(replacements):
                hooks = _hooks(rep, mask, x_moments[k], r_moments[k])
                loss = data.model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=hooks)
                loss_sums[k] += float(loss[loss_mask].double().sum())
                bar.update()
    bar.close()
    if n_valid_loss == 0:
        raise ValueError("No evaluated positions: every position is BOS (rows need at least one non-BOS token).")
    clean_loss = clean_sum / n_valid_loss
    results = []
    for k, rep in enumerate(replacements):
        loss = loss_sums[k] / n_valid_loss
        x_var = x_moments[k].total_variance()
        results.append(
            ReplacementResult(
                name=rep.name,
                delta_loss=loss - clean_loss,
                clean_loss=clean_loss,
                loss=loss,
                explained_variance=1 - r_moments[k].total_variance() / x_var if x_var > 0 else float("nan"),
                mse=r_moments[k].mean_sq_norm(),
                n_positions=x_moments[k].n,
                meta=dict(rep.meta),
            )
        )
    return results


def _hooks(rep: Replacement, mask: torch.Tensor, x_mom: _Moments, r_mom: _Moments) -> list[tuple[str, Callable]]:
    source: dict[str, torch.Tensor] = {}

    def check(act: torch.Tensor, hook_name: str) -> None:
        if act.ndim != 3 or act.shape[:2] != mask.shape:
            raise ValueError(f"Hook {hook_name!r} gives activations of shape {tuple(act.shape)}; need [batch, seq, d].")
        if rep.d_in is not None and act.shape[-1] != rep.d_in:
            raise ValueError(
                f"Replacement {rep.name!r}: the SAEs have d_in={rep.d_in} but hook {hook_name!r} gives "
                f"vectors of width {act.shape[-1]}."
            )

    def read(act: torch.Tensor, hook: Any) -> None:
        check(act, rep.source_hook)
        source["x"] = act[mask]

    def replace(act: torch.Tensor, hook: Any) -> torch.Tensor:
        if rep.source_hook is not None and "x" not in source:
            raise RuntimeError(
                f"Replacement {rep.name!r}: source hook {rep.source_hook!r} did not run before target hook "
                f"{rep.target_hook!r}; the earlier layer's SAE must be A (source) and the later one B."
            )
        check(act, rep.target_hook)
        x = act[mask]
        x_hat = rep.fn(source.get("x"), x)
        if x_hat.shape != x.shape:
            raise ValueError(f"Replacement {rep.name!r} returned shape {tuple(x_hat.shape)} for hidden states of shape {tuple(x.shape)}.")
        x_mom.add(x)
        r_mom.add(x_hat - x)
        out = act.clone()
        out[mask] = x_hat.to(act.dtype)
        return out

    hooks: list[tuple[str, Callable]] = []
    if rep.source_hook is not None:
        hooks.append((rep.source_hook, read))  # before replace: at a shared hook they run in this order
    hooks.append((rep.target_hook, replace))
    return hooks


# --- the replacements -------------------------------------------------------------------


def _reconstruct(sae: SAE, x: torch.Tensor) -> torch.Tensor:
    return sae.decode(sae.encode(x))


def _with_error_term(fn: ReplaceFn, sae_b: SAE | None) -> ReplaceFn:
    """Add ``x(t+1) - dec_{t+1}(enc_{t+1}(x(t+1)))``: SAELens's ``use_error_term`` splice."""
    if sae_b is None:
        return fn
    return lambda xs, xt: fn(xs, xt) + (xt - _reconstruct(sae_b, xt))


def layer_drop(sae_a: SAE, sae_b: SAE, *, data: TokenSet | None = None) -> Replacement:
    """``x_hat(t+1) = x(t)``: skip the layers between the two SAEs' hooks."""
    check_same_d_in(sae_a, sae_b)
    return Replacement("layer_drop", _target(sae_b, data), lambda xs, xt: xs, _target(sae_a, data), {"kind": "baseline"}, sae_b.cfg.d_in)


def current_reconstruction(sae_b: SAE, *, data: TokenSet | None = None, error_term: bool = False) -> Replacement:
    """``x_hat(t+1) = dec_{t+1}(enc_{t+1}(x(t+1)))``: what SAE t+1 itself loses.

    With ``error_term`` the SAE's error is added back, which recovers the clean model exactly.
    """
    fn = _with_error_term(lambda xs, xt: _reconstruct(sae_b, xt), sae_b if error_term else None)
    return Replacement("current", _target(sae_b, data), fn, None, {"kind": "baseline", "error_term": error_term}, sae_b.cfg.d_in)


def previous_reconstruction(sae_a: SAE, sae_b: SAE, *, data: TokenSet | None = None, error_term: bool = False) -> Replacement:
    """``x_hat(t+1) = dec_t(enc_t(x(t)))``: the previous hidden state through its own SAE."""
    check_same_d_in(sae_a, sae_b)
    fn = _with_error_term(lambda xs, xt: _reconstruct(sae_a, xs), sae_b if error_term else None)
    return Replacement("previous", _target(sae_b, data), fn, _target(sae_a, data), {"kind": "baseline", "error_term": error_term}, sae_b.cfg.d_in)


def matched_replacement(
    sae_a: SAE,
    sae_b: SAE,
    matching: Matching,
    *,
    name: str = "matched",
    data: TokenSet | None = None,
    fold: bool = True,
    quantile: float | None = None,
    max_cost: float | None = None,
    unmatched: UnmatchedRule = "own_decoder",
    error_term: bool = False,
    nonpositive_threshold: NonPositivePolicy = "error",
) -> Replacement:
    """``x_hat(t+1) = dec_{t+1}(P enc_t(x(t)))`` (paper Eq. 5).

    ``P f`` puts the activation of A feature ``i`` on B feature ``matching.permutation[i]``;
    for a many-to-one matching the activations sent to one B feature add up.

    Args:
        sae_a, sae_b: SAEs at hooks t and t+1 (t+1's hook must come later in the forward pass).
        matching: A -> B, e.g. ``match(sae_a, sae_b)`` or any registered matcher's result.
        fold: folded inference: encode with ``fold(sae_a)`` and decode with ``fold(sae_b)``.
            A feature's activation then arrives in units of its threshold and B's decoder row
            carries B's threshold, i.e. it is rescaled by ``theta_B / theta_A``. Unfolded
            (``False``) passes raw activations to B's raw decoder. Each SAE alone reconstructs
            the same either way; only the cross-layer transfer differs (and only for SAEs
            with thresholds: JumpReLU, TopK with decoder-norm rescaling).
        quantile, max_cost: the MSE-quantile rule (paper Appendix B): pairs whose cost is
            above the ``quantile`` of matched costs (or above ``max_cost``) count as unmatched.
        unmatched: what an unmatched A feature does. ``"own_decoder"``: it keeps writing its
            own (A's) decoder row, so only confidently matched features move to layer t+1's
            decoder; ``"drop"``: its activation is discarded. Without a threshold and with a
            full bijection there are no unmatched features and this does nothing.
        error_term: add SAE t+1's reconstruction error of the clean ``x(t+1)``
            (``use_error_term``-style): the result then isolates the error of ``P f`` relative
            to SAE t+1's own codes.
        nonpositive_threshold: passed to :func:`sae_lens_match.fold`.
    """
    check_same_d_in(sae_a, sae_b)
    if matching.d_sae_a != sae_a.cfg.d_sae or matching.d_sae_b != sae_b.cfg.d_sae:
        raise ValueError(
            f"Matching is {matching.d_sae_a} -> {matching.d_sae_b} features but the SAEs have "
            f"{sae_a.cfg.d_sae} -> {sae_b.cfg.d_sae}; was it made for these SAEs (and in this direction)?"
        )
    if unmatched not in ("own_decoder", "drop"):
        raise ValueError(f"unmatched must be 'own_decoder' or 'drop', got {unmatched!r}.")
    for sae in (sae_a, sae_b):
        norm = sae.cfg.normalize_activations
        if norm in ("constant_norm_rescale", "layer_norm"):
            raise ValueError(
                f"{type(sae).__name__} normalises activations with {norm!r}, whose decode needs state from "
                "the same SAE's encode; a cross-layer decode is undefined. Fold the normalisation first."
            )
    if quantile is not None or max_cost is not None:
        matching = matching.with_unmatched(quantile=quantile, max_cost=max_cost)
    enc = fold_sae(sae_a, nonpositive_threshold=nonpositive_threshold) if fold else sae_a
    dec = fold_sae(sae_b, nonpositive_threshold=nonpositive_threshold) if fold else sae_b
    perm = matching.permutation.to(sae_a.W_dec.device)
    rows = (perm >= 0).nonzero().squeeze(1)
    cols = perm[rows]
    own = (perm < 0) if unmatched == "own_decoder" else None

    def fn(xs: torch.Tensor | None, xt: torch.Tensor) -> torch.Tensor:
        f = enc.encode(xs)
        f_hat = f.new_zeros(f.shape[0], sae_b.cfg.d_sae).index_add_(1, cols, f[:, rows])
        x_hat = dec.decode(f_hat)
        if own is not None and bool(own.any()):
            # unmatched A features write A's decoder rows (decode is affine: remove b_dec_A)
            x_hat = x_hat + enc.decode(f * own) - enc.decode(torch.zeros_like(f[:1]))
        return x_hat

    meta = {
        "kind": "matcher",
        "fold": fold,
        "quantile": quantile,
        "max_cost": max_cost,
        "unmatched": unmatched,
        "n_matched": int(rows.numel()),
        "one_to_one": matching.one_to_one,
        "error_term": error_term,
    }
    fn = _with_error_term(fn, sae_b if error_term else None)
    return Replacement(name, _target(sae_b, data), fn, _target(sae_a, data), meta, sae_b.cfg.d_in)


def _target(sae: SAE, data: TokenSet | None) -> str:
    if data is not None:
        return data.sae_hook(sae)
    hook = sae.cfg.metadata.hook_name
    if not hook:
        raise ValueError(f"{type(sae).__name__} (d_sae={sae.cfg.d_sae}) has no hook_name (sae.cfg.metadata.hook_name); set it.")
    return hook


# --- the layer-pruning table ------------------------------------------------------------


def layer_pruning(
    data: TokenSet,
    saes: Sequence[SAE],
    matchings: Mapping[str, Sequence[Matching]],
    *,
    baselines: Sequence[str] = BASELINES,
    fold: bool = True,
    quantile: float | None = None,
    unmatched: UnmatchedRule = "own_decoder",
    error_term: bool = False,
    nonpositive_threshold: NonPositivePolicy = "error",
    pairs: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Delta loss and explained variance per consecutive SAE pair, baselines and matchings side by side.

    Args:
        data: model and tokens.
        saes: SAEs at increasing depth; pair ``i`` is ``(saes[i], saes[i+1])``.
        matchings: method name -> one matching per pair (``matchings[name][i]`` maps
            ``saes[i]`` to ``saes[i+1]``), e.g. ``{"sae_match": match_layers(saes)}``.
        baselines: any of ``"layer_drop"``, ``"current"``, ``"previous"``.
        fold, quantile, unmatched, error_term, nonpositive_threshold: see
            :func:`matched_replacement` (``error_term`` applies to the SAE baselines too;
            layer drop ignores it).
        pairs: which pair indices to evaluate (default all).

    Returns:
        One row per (pair, method): ``pair``, ``source_hook``, ``target_hook``, ``method``,
        ``kind``, ``delta_loss``, ``explained_variance``, ``mse``, ``clean_loss``, ``loss``,
        ``n_positions`` and the options used.
    """
    if len(saes) < 2:
        raise ValueError(f"layer_pruning needs at least two SAEs, got {len(saes)}.")
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise ValueError(f"Unknown baselines {sorted(unknown)}; choose from {BASELINES}.")
    for name, ms in matchings.items():
        if len(ms) != len(saes) - 1:
            raise ValueError(f"matchings[{name!r}] has {len(ms)} matchings for {len(saes) - 1} SAE pairs.")
    pairs = list(range(len(saes) - 1)) if pairs is None else list(pairs)
    rows: list[dict[str, Any]] = []
    for i in tqdm(pairs, desc="layer pairs", disable=not data.progress):
        a, b = saes[i], saes[i + 1]
        reps: list[Replacement] = []
        if "layer_drop" in baselines:
            reps.append(layer_drop(a, b, data=data))
        if "current" in baselines:
            reps.append(current_reconstruction(b, data=data, error_term=error_term))
        if "previous" in baselines:
            reps.append(previous_reconstruction(a, b, data=data, error_term=error_term))
        for name, ms in matchings.items():
            reps.append(
                matched_replacement(
                    a, b, ms[i], name=name, data=data, fold=fold, quantile=quantile, unmatched=unmatched,
                    error_term=error_term, nonpositive_threshold=nonpositive_threshold,
                )
            )
        for result in evaluate_replacements(data, reps, desc=f"pair {i}"):
            rows.append({"pair": i, "source_hook": _target(a, None), "target_hook": _target(b, None), **result.row()})
    return rows
