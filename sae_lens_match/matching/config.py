""":class:`MatchConfig`: how two SAEs are compared, in one object instead of a long argument list."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Mapping

NonPositivePolicy = Literal["error", "keep"]
TERMS = ("W_dec", "W_enc", "b_enc")
DEFAULT_WEIGHTS: dict[str, float] = {"W_dec": 1.0, "W_enc": 1.0, "b_enc": 1.0}
"""The paper's experiments match on encoder + decoder + b_enc, equally weighted; b_dec never
(it does not depend on feature order). For Gated SAEs the ``b_enc`` term is ``b_gate``."""


@dataclass(frozen=True)
class MatchConfig:
    """How SAE Match compares two SAEs' features.

    Attributes:
        fold: fold thresholds into the weights first (:func:`sae_lens_match.fold`).
        weights: term weights among ``W_dec``, ``W_enc``, ``b_enc``. A dict given here is
            complete: terms it leaves out weigh 0 (``{"W_dec": 1}`` is decoder-only).
        nonpositive_threshold: what folding does with JumpReLU thresholds <= 0 (see ``fold``).
        solver: assignment solver (``"auto"``, ``"dense"``, ``"sparse"``; see
            :mod:`sae_lens_match.assignment`).
        solver_options: keyword options of the solver (e.g. ``{"k": 16}`` for ``"sparse"``).

    The same config defines the cost of every matcher: the per-pair MSE of the compared
    (folded, weighted) parameters. :data:`COST_CONFIG` is the fixed one that tables comparing
    matchers use.
    """

    fold: bool = True
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    nonpositive_threshold: NonPositivePolicy = "error"
    solver: str = "auto"
    solver_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        weights = {term: 0.0 for term in TERMS}
        unknown = set(self.weights) - set(TERMS)
        if unknown:
            raise ValueError(f"Unknown matching terms {sorted(unknown)}; choose from {list(TERMS)}.")
        weights.update({k: float(v) for k, v in self.weights.items()})
        if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise ValueError(f"Term weights must be >= 0 with at least one > 0, got {dict(self.weights)}.")
        object.__setattr__(self, "weights", weights)
        if self.nonpositive_threshold not in ("error", "keep"):
            raise ValueError(f"nonpositive_threshold must be 'error' or 'keep', got {self.nonpositive_threshold!r}.")
        if not isinstance(self.fold, bool):
            raise ValueError(f"fold must be True or False, got {self.fold!r}.")
        object.__setattr__(self, "solver_options", dict(self.solver_options))

    @classmethod
    def of(cls, config: "MatchConfig | None" = None, **overrides: Any) -> "MatchConfig":
        """``config`` (default ``MatchConfig()``) with some fields replaced, e.g. ``MatchConfig.of(fold=False)``.

        Raises:
            TypeError: an override that is not a field (the message lists the fields).
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"Unknown match option(s) {unknown}; MatchConfig has {sorted(names)}.")
        if overrides.get("weights") is None:
            overrides.pop("weights", None)
        return replace(config or cls(), **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


COST_CONFIG = MatchConfig()
"""The cost every table comparing matchers reports: folded parameters, W_dec + W_enc + b_enc
weighted equally (the paper's setting), whatever each matcher was configured with."""
