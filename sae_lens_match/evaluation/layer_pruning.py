"""Layer pruning: skip one layer through a matching (SAE Match, paper Eq. 5), with the paper's baselines.

For each consecutive pair of residual-stream SAEs the hidden state at t+1 is replaced by
``dec_{t+1}(P enc_t(x(t)))`` during the forward pass and we report the change in LM loss
(nats) and the explained variance of the replaced state, beside three baselines:
``layer_drop`` (``x(t+1) := x(t)``), ``current`` (SAE t+1's own reconstruction) and
``previous`` (SAE t's reconstruction of ``x(t)``).

Skipping a layer means replacing the *residual stream*: SAEs at other hooks (``hook_mlp_out``,
``hook_attn_out``) are refused here. Substituting a module's output by the decode of another
module's code is a different experiment; build it from
:func:`~sae_lens_match.evaluation.replacement.matched_replacement` and
:func:`~sae_lens_match.evaluation.replacement.evaluate_replacements` and name it for what it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from sae_lens import SAE
from tqdm.auto import tqdm

from sae_lens_match.evaluation.inputs import check_held_out, check_stack
from sae_lens_match.evaluation.replacement import (
    Replacement,
    ReplacementConfig,
    current_reconstruction,
    evaluate_replacements,
    layer_drop,
    matched_replacement,
    previous_reconstruction,
)
from sae_lens_match.evaluation.results import EvalResult
from sae_lens_match.matching.matching import Matching
from sae_lens_match.sources.hooks import is_residual
from sae_lens_match.sources.tokens import TokenSet

BASELINES = ("layer_drop", "current", "previous")


@dataclass(frozen=True)
class LayerPruningConfig:
    """What :func:`run_layer_pruning` evaluates.

    Attributes:
        replacement: how matchings replace the state (folding, unmatched rule, ...).
        baselines: any of ``"layer_drop"``, ``"current"``, ``"previous"``.
        pairs: which pair indices to evaluate (default all).
    """

    replacement: ReplacementConfig = field(default_factory=ReplacementConfig)
    baselines: tuple[str, ...] = BASELINES
    pairs: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.baselines) - set(BASELINES)
        if unknown:
            raise ValueError(f"Unknown baselines {sorted(unknown)}; choose from {BASELINES}.")


@dataclass(frozen=True)
class LayerPruningRow:
    """One (layer pair, method) of the layer-pruning table.

    Attributes:
        pair: pair index ``i`` (SAEs ``i`` -> ``i + 1``).
        source_hook, target_hook: the hooks of SAE ``i`` and ``i + 1``.
        method: a baseline name or the matchings' name.
        kind: ``"baseline"`` or ``"matcher"``.
        delta_loss: mean LM loss with the replacement minus the clean loss (nats).
        explained_variance: ``1 - Var(x_hat - x) / Var(x)`` of the replaced state.
        mse: mean squared error of the replaced state per position (summed over dimensions).
        clean_loss, loss: the two losses.
        n_positions: evaluated (non-BOS) positions.
        n_matched: for matchers, the pairs used after the unmatched rule.
        unmatched_rule: for matchers, the rule in words.
    """

    pair: int
    source_hook: str
    target_hook: str
    method: str
    kind: str
    delta_loss: float
    explained_variance: float
    mse: float
    clean_loss: float
    loss: float
    n_positions: int
    n_matched: int | None = None
    unmatched_rule: str | None = None


def run_layer_pruning(
    data: TokenSet,
    saes: Sequence[SAE],
    matchings: Mapping[str, Sequence[Matching]],
    config: LayerPruningConfig | None = None,
) -> EvalResult[LayerPruningRow]:
    """Delta loss and explained variance per consecutive SAE pair, baselines and matchings side by side.

    Args:
        data: model and tokens (held out: data-based matchings fitted on them are refused).
        saes: residual-stream SAEs at increasing depth; pair ``i`` is ``(saes[i], saes[i+1])``.
        matchings: method name -> one matching per pair (``matchings[name][i]`` maps
            ``saes[i]`` to ``saes[i+1]``, checked), e.g. ``{"sae_match": match_layers(saes)}``.
        config: :class:`LayerPruningConfig`.

    Raises:
        ValueError: SAEs off the residual stream, matchings for other SAEs, or matchings
            fitted on ``data``.
    """
    config = config or LayerPruningConfig()
    check_stack(saes, matchings)
    check_held_out(matchings, data)
    off_stream = [s.cfg.metadata.hook_name for s in saes if not is_residual(s.cfg.metadata.hook_name or "")]
    if off_stream:
        raise ValueError(
            f"Layer pruning replaces the residual stream (paper Eq. 5), but SAEs read {off_stream}. Use "
            "residual SAEs (blocks.L.hook_resid_*), or build a module-output substitution from "
            "matched_replacement and evaluate_replacements."
        )
    error_term = config.replacement.error_term
    pairs = range(len(saes) - 1) if config.pairs is None else config.pairs
    rows: list[LayerPruningRow] = []
    for i in tqdm(pairs, desc="layer pairs", disable=not data.progress):
        a, b = saes[i], saes[i + 1]
        reps: list[Replacement] = []
        if "layer_drop" in config.baselines:
            reps.append(layer_drop(a, b, data=data))
        if "current" in config.baselines:
            reps.append(current_reconstruction(b, data=data, error_term=error_term))
        if "previous" in config.baselines:
            reps.append(previous_reconstruction(a, b, data=data, error_term=error_term))
        for name, ms in matchings.items():
            reps.append(matched_replacement(a, b, ms[i], name=name, data=data, config=config.replacement))
        for result in evaluate_replacements(data, reps, desc=f"pair {i}"):
            rows.append(
                LayerPruningRow(
                    pair=i, source_hook=a.cfg.metadata.hook_name, target_hook=b.cfg.metadata.hook_name,
                    method=result.name, kind=result.meta["kind"], delta_loss=result.delta_loss,
                    explained_variance=result.explained_variance, mse=result.mse, clean_loss=result.clean_loss,
                    loss=result.loss, n_positions=result.n_positions, n_matched=result.meta.get("n_matched"),
                    unmatched_rule=result.meta.get("unmatched_rule"),
                )
            )
    return EvalResult("layer_pruning", config, tuple(rows))
