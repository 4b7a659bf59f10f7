""":class:`FlowConfig`: how predecessors are scored and when a score counts as a match."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sae_lens_match.matching.config import MatchConfig

Similarity = Literal["cosine", "mse"]
SIMILARITIES = ("cosine", "mse")
Null = Literal["whitened", "isotropic"]
NULLS = ("whitened", "isotropic")


@dataclass(frozen=True)
class FlowConfig:
    """How a residual feature's predecessors are found and judged.

    Attributes:
        similarity: ``"cosine"``: cosine of unit-norm decoder rows (Feature Flow's score);
            ``"mse"``: minus SAE Match's per-pair MSE of the (folded, weighted) parameters
            :attr:`match` compares (:func:`sae_lens_match.feature_rows`). Either way a higher
            score is a better predecessor.
        top_k: predecessors kept per feature and source module.
        threshold: a predecessor counts when its score is ``>= threshold``. ``None`` (default):
            a threshold per (layer, source module) from the random-rotation null (see
            :mod:`sae_lens_match.flow.null`), at :attr:`null_quantile`.
        null: ``"whitened"`` (default): the source's features rotated in their own whitened
            frame, which keeps the anisotropy all SAEs of a model share; ``"isotropic"``: a
            plain rotation of the input space (too lenient on real SAEs; see ``null.py``).
        null_quantile: the quantile of the null top-1 scores used as threshold: about
            ``1 - null_quantile`` of the features with no relation to a module still pass.
        null_features: target features scored against the rotated module (a seeded sample;
            all of them when there are fewer).
        match: what ``"mse"`` compares (fold, term weights), as in SAE Match.
        block_elements: the largest similarity block held at once (rows x source features);
            bounds memory to ``4 * block_elements`` bytes, whatever the SAE widths.
        seed: seed of the null's rotations and samples.
    """

    similarity: Similarity = "cosine"
    top_k: int = 1
    threshold: float | None = None
    null: Null = "whitened"
    null_quantile: float = 0.99
    null_features: int = 4096
    match: MatchConfig = field(default_factory=MatchConfig)
    block_elements: int = 1 << 24
    seed: int = 0

    def __post_init__(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {list(SIMILARITIES)}, got {self.similarity!r}.")
        if self.null not in NULLS:
            raise ValueError(f"null must be one of {list(NULLS)}, got {self.null!r}.")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}.")
        if not 0.0 < self.null_quantile < 1.0:
            raise ValueError(f"null_quantile must lie in (0, 1), got {self.null_quantile}.")
        if self.null_features < 1 or self.block_elements < 1:
            raise ValueError(f"null_features and block_elements must be >= 1, got {self.null_features}, {self.block_elements}.")

    @property
    def score_name(self) -> str:
        return "decoder cosine" if self.similarity == "cosine" else "minus folded-parameter MSE"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
