"""Replacing a hidden state during the forward pass: the engine behind layer pruning (paper Eq. 5).

For SAEs at hooks t and t+1 and a matching ``P`` from t's features to t+1's:
``f(t) = enc_t(x(t))``, ``f_hat(t+1) = P f(t)``, ``x_hat(t+1) = dec_{t+1}(f_hat(t+1))``.
During a forward pass the hidden state at t+1 is replaced by ``x_hat(t+1)`` (the layer
between t and t+1 is skipped) and we report

- ``delta_loss``: mean next-token loss with the replacement minus the clean loss (nats),
- ``explained_variance``: ``1 - Var(x_hat - x) / Var(x)`` with ``x`` the clean ``x(t+1)``,

over every non-BOS position (see :class:`~sae_lens_match.sources.tokens.TokenSet`).
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
from typing import Any, Callable, Literal, Sequence

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.matching.config import NonPositivePolicy
from sae_lens_match.matching.folding import fold as fold_sae
from sae_lens_match.matching.matching import DEFAULT_UNMATCHED, Matching, UnmatchedRule
from sae_lens_match.matching.parameters import check_same_d_in
from sae_lens_match.sources.hooks import check_hooks
from sae_lens_match.sources.tokens import TokenSet

ReplaceFn = Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor]
"""``(x_source [n, d] or None, x_target [n, d]) -> x_hat [n, d]`` on the evaluated positions."""

BASELINES = ("layer_drop", "current", "previous")
UnmatchedAction = Literal["own_decoder", "drop"]


@dataclass(frozen=True)
class ReplacementConfig:
    """How a matching replaces the hidden state at layer t+1 (paper Eq. 5, Appendix B).

    Attributes:
        fold: folded inference: encode with ``fold(sae_a)`` and decode with ``fold(sae_b)``.
            A feature's activation then arrives in units of its threshold and B's decoder row
            carries B's threshold, i.e. it is rescaled by ``theta_B / theta_A``. Unfolded
            passes raw activations to B's raw decoder. Each SAE alone reconstructs the same
            either way; only the cross-layer transfer differs (and only for SAEs with
            thresholds: JumpReLU, TopK with decoder-norm rescaling).
        unmatched_rule: which pairs count as unmatched (:class:`~sae_lens_match.UnmatchedRule`;
            default the package-wide :data:`~sae_lens_match.DEFAULT_UNMATCHED`;
            ``UnmatchedRule()`` keeps the whole bijection, the paper's Eq. 5).
        unmatched: what an unmatched A feature does. ``"own_decoder"``: it keeps writing its
            own (A's) decoder row, so only matched features move to layer t+1's decoder;
            ``"drop"``: its activation is discarded.
        error_term: add SAE t+1's reconstruction error of the clean ``x(t+1)``
            (``use_error_term``-style): the result then isolates the error of ``P f`` relative
            to SAE t+1's own codes. Applies to the SAE baselines too; layer drop ignores it.
        nonpositive_threshold: passed to :func:`sae_lens_match.fold`.
    """

    fold: bool = True
    unmatched_rule: UnmatchedRule = DEFAULT_UNMATCHED
    unmatched: UnmatchedAction = "own_decoder"
    error_term: bool = False
    nonpositive_threshold: NonPositivePolicy = "error"

    def __post_init__(self) -> None:
        if self.unmatched not in ("own_decoder", "drop"):
            raise ValueError(f"unmatched must be 'own_decoder' or 'drop', got {self.unmatched!r}.")


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
        check_hooks(data.model, [r.target_hook], f"replacement {r.name!r} target")
        if r.source_hook is not None:
            check_hooks(data.model, [r.source_hook], f"replacement {r.name!r} source")
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
    config: ReplacementConfig | None = None,
) -> Replacement:
    """``x_hat(t+1) = dec_{t+1}(P enc_t(x(t)))`` (paper Eq. 5).

    ``P f`` puts the activation of A feature ``i`` on B feature ``matching.permutation[i]``;
    for a many-to-one matching the activations sent to one B feature add up.

    Args:
        sae_a, sae_b: SAEs at hooks t and t+1 (t+1's hook must come later in the forward pass).
        matching: A -> B, e.g. ``match(sae_a, sae_b)`` or any registered matcher's result;
            checked to have been made for these SAEs.
        name: the method's name in result tables.
        data: checks the SAEs' hooks against its model.
        config: :class:`ReplacementConfig`.
    """
    config = config or ReplacementConfig()
    check_same_d_in(sae_a, sae_b)
    matching.check_fits(sae_a, sae_b)
    for sae in (sae_a, sae_b):
        norm = sae.cfg.normalize_activations
        if norm in ("constant_norm_rescale", "layer_norm"):
            raise ValueError(
                f"{type(sae).__name__} normalises activations with {norm!r}, whose decode needs state from "
                "the same SAE's encode; a cross-layer decode is undefined. Fold the normalisation first."
            )
    matching = config.unmatched_rule.apply(matching)
    enc = fold_sae(sae_a, nonpositive_threshold=config.nonpositive_threshold) if config.fold else sae_a
    dec = fold_sae(sae_b, nonpositive_threshold=config.nonpositive_threshold) if config.fold else sae_b
    perm = matching.permutation.to(sae_a.W_dec.device)
    rows = (perm >= 0).nonzero().squeeze(1)
    cols = perm[rows]
    own = (perm < 0) if config.unmatched == "own_decoder" else None

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
        "fold": config.fold,
        "unmatched_rule": config.unmatched_rule.describe(),
        "unmatched": config.unmatched,
        "n_matched": int(rows.numel()),
        "one_to_one": matching.one_to_one,
        "error_term": config.error_term,
    }
    fn = _with_error_term(fn, sae_b if config.error_term else None)
    return Replacement(name, _target(sae_b, data), fn, _target(sae_a, data), meta, sae_b.cfg.d_in)


def _target(sae: SAE, data: TokenSet | None) -> str:
    if data is not None:
        return data.sae_hook(sae)
    hook = sae.cfg.metadata.hook_name
    if not hook:
        raise ValueError(f"{type(sae).__name__} (d_sae={sae.cfg.d_sae}) has no hook_name (sae.cfg.metadata.hook_name); set it.")
    return hook
