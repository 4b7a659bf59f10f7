"""The :class:`Matching` type: a map from the features of SAE A to those of SAE B, and the
helpers every matching shares (the unmatched rule, random pairings, agreement, provenance).

One-to-one by default (SAE Match); ``one_to_one=False`` allows several A features to share a
B feature (top-1 matchers such as Feature Flow's decoder cosine).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import torch
from sae_lens import SAE
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from sae_lens_match.atomic import atomic_path
from sae_lens_match.fingerprints import sha256_tensors

FORMAT = "sae-lens-match/matching"
FORMAT_VERSION = 3  # 3: a checksum of the tensors; 2: typed fields; 1: everything in info
# What must agree when a matching meets an SAE or another matching (where both sides say).
_IDENTITY_KEYS = ("hook_name", "d_sae", "index", "weights_sha256")


class MatchingFileError(ValueError):
    """A matching file that cannot be read: missing, damaged, not a matching, or from a newer version."""


def sae_description(sae: SAE) -> dict[str, Any]:
    """What identifies an SAE in a matching's ``source`` / ``target``."""
    meta = sae.cfg.metadata
    return {
        "architecture": sae.cfg.architecture(),
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "hook_name": meta.hook_name,
        "model_name": meta.model_name,
    }


def _same_sae(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """The first identity key on which two SAE descriptions disagree, or ``None``."""
    for key in _IDENTITY_KEYS:
        if a.get(key) is not None and b.get(key) is not None and a[key] != b[key]:
            return key
    return None


@dataclass(frozen=True)
class Matching:
    """Features of SAE A (source) matched to features of SAE B (target).

    Attributes:
        permutation: ``[d_sae_a]`` int64: the B feature matched to each A feature, ``-1``
            where A's feature has no match (rectangular problems, thresholded matchings).
        cost: ``[d_sae_a]`` float64: per-pair mean squared error between the matched
            features' (folded) parameters; ``nan`` where unmatched. For a composed
            matching it is the sum of the costs along the path.
        d_sae_b: number of features of B.
        source, target: JSON-serialisable descriptions of A and B (hook_name, d_sae, layer
            index, release/path, ...); checked wherever the matching meets SAEs or another
            matching.
        method: the matcher that made it (``"sae_match"``, ``"cosine_top1"``, ...).
        one_to_one: whether each B feature receives at most one A feature (checked). ``False``
            for many-to-one matchings (top-1 matchers); those have no :meth:`inverse`.
        random_pair_cost: the median ``cost`` of a random pairing of the same SAEs, the chance
            level a real match should be far below (:class:`UnmatchedRule`'s default uses it).
            Adds up along a composition, like the costs. ``None`` when unknown.
        score: ``[d_sae_a]`` float64, the matcher's own similarity of each pair (decoder cosine,
            correlation, ...), ``nan`` where unmatched; ``None`` for SAE Match (its score is the cost).
        score_name: what ``score`` is.
        steps: how many layer-to-layer matchings were composed into this one.
        fit_tokens: SHA-256 of the tokens a data-based matcher was fitted on (see
            :meth:`~sae_lens_match.sources.tokens.TokenSet.fingerprint`), so it is never judged on them.
        info: how it was made, for the record (config, solver facts, timings); nothing reads it.
    """

    permutation: torch.Tensor
    cost: torch.Tensor
    d_sae_b: int
    source: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    method: str = "sae_match"
    one_to_one: bool = True
    random_pair_cost: float | None = None
    score: torch.Tensor | None = None
    score_name: str | None = None
    steps: int = 1
    fit_tokens: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p, c = self.permutation, self.cost
        if p.ndim != 1 or p.dtype != torch.long or c.shape != p.shape:
            raise ValueError(f"Matching needs a 1-D int64 permutation and a cost of the same shape; got {p.dtype} {tuple(p.shape)} and {tuple(c.shape)}.")
        if self.score is not None and self.score.shape != p.shape:
            raise ValueError(f"Matching.score must have shape {tuple(p.shape)}, got {tuple(self.score.shape)}.")
        if (p < -1).any() or (p >= self.d_sae_b).any():
            raise ValueError(f"Matching permutation entries must lie in [-1, {self.d_sae_b}).")
        if not isinstance(self.one_to_one, bool):
            raise ValueError(f"Matching.one_to_one must be a bool, got {self.one_to_one!r}.")
        matched = p[p >= 0]
        if self.one_to_one and matched.unique().numel() != matched.numel():
            raise ValueError(
                "Matching permutation maps two A features to the same B feature; "
                "pass one_to_one=False for a many-to-one matching."
            )

    @property
    def d_sae_a(self) -> int:
        return self.permutation.shape[0]

    @property
    def matched(self) -> torch.Tensor:
        """``[d_sae_a]`` bool: which A features have a match."""
        return self.permutation >= 0

    @property
    def total_cost(self) -> float:
        """Sum of ``cost`` over matched features."""
        return float(self.cost[self.matched].sum())

    def check_fits(self, sae_a: SAE, sae_b: SAE, what: str = "matching") -> None:
        """Raise ``ValueError`` unless this matching was made from ``sae_a`` to ``sae_b``.

        Widths must agree, and so must every identity the matching recorded and the SAEs carry
        (hook name): a matching of another layer pair, or of the same pair read backwards, is refused.
        """
        for side, desc, sae in (("source", self.source, sae_a), ("target", self.target, sae_b)):
            width = self.d_sae_a if side == "source" else self.d_sae_b
            if width != sae.cfg.d_sae:
                raise ValueError(
                    f"The {what} is {self.d_sae_a} -> {self.d_sae_b} features but the SAEs have "
                    f"{sae_a.cfg.d_sae} -> {sae_b.cfg.d_sae}; was it made for these SAEs, in this direction?"
                )
            key = _same_sae(desc, sae_description(sae))
            if key is not None:
                raise ValueError(
                    f"The {what}'s {side} has {key}={desc[key]!r} but the SAE given for it has "
                    f"{sae_description(sae)[key]!r}; was it made for these SAEs, in this direction?"
                )

    def compose(self, other: "Matching") -> "Matching":
        """A -> B (self) then B -> C (other) gives A -> C; costs add along the path.

        The result is one-to-one only when both matchings are.

        Raises:
            ValueError: ``other`` does not start where this matching ends.
        """
        if other.d_sae_a != self.d_sae_b:
            raise ValueError(f"Cannot compose: this matching ends in {self.d_sae_b} features, the next starts from {other.d_sae_a}.")
        key = _same_sae(self.target, other.source)
        if key is not None:
            raise ValueError(
                f"Cannot compose: this matching ends at {key}={self.target[key]!r} but the next starts at "
                f"{other.source[key]!r}; give the matchings in layer order."
            )
        via = self.permutation.clamp_min(0)
        permutation = torch.where(self.matched, other.permutation[via], -1)
        cost = torch.where(permutation >= 0, self.cost + other.cost[via], float("nan"))
        chance = None if self.random_pair_cost is None or other.random_pair_cost is None else self.random_pair_cost + other.random_pair_cost
        return Matching(
            permutation, cost, other.d_sae_b, self.source, other.target,
            method=self.method if self.method == other.method else f"{self.method}+{other.method}",
            one_to_one=self.one_to_one and other.one_to_one,
            random_pair_cost=chance,
            steps=self.steps + other.steps,
            info={"composed_of": [self.info, other.info]},
        )

    def inverse(self) -> "Matching":
        """The same pairs read from B to A.

        Raises:
            ValueError: for a many-to-one matching (``one_to_one=False``), which has no inverse.
        """
        if not self.one_to_one:
            raise ValueError(
                "A many-to-one matching (one_to_one=False) has no inverse: a B feature may "
                "receive several A features. Match B -> A directly instead."
            )
        rows = self.matched.nonzero().squeeze(1)
        permutation = torch.full((self.d_sae_b,), -1, dtype=torch.long)
        permutation[self.permutation[rows]] = rows

        def flip(values: torch.Tensor | None) -> torch.Tensor | None:
            if values is None:
                return None
            out = torch.full((self.d_sae_b,), float("nan"), dtype=values.dtype)
            out[self.permutation[rows]] = values[rows]
            return out

        return replace(self, permutation=permutation, cost=flip(self.cost), d_sae_b=self.d_sae_a, source=self.target, target=self.source, score=flip(self.score))

    def with_unmatched(self, *, max_cost: float | None = None, quantile: float | None = None, random_ratio: float | None = None) -> "Matching":
        """Declare pairs unmatched (``-1``) whose cost is above a threshold: :class:`UnmatchedRule`.

        SAE Match always returns a bijection; a high per-pair MSE means "no similar feature
        found" (paper Fig. 5, Appendix B). Give exactly one of:

        Args:
            max_cost: pairs with ``cost > max_cost`` become unmatched.
            quantile: in [0, 1]; pairs above this quantile of the matched costs become
                unmatched (``quantile=0.9`` keeps the 90 % cheapest).
            random_ratio: pairs above ``random_ratio * random_pair_cost`` become unmatched.
        """
        rule = UnmatchedRule(max_cost=max_cost, quantile=quantile, random_ratio=random_ratio)
        if rule.keeps_all:
            raise ValueError("Give exactly one of max_cost, quantile or random_ratio.")
        return rule.apply(self)

    def save(self, path: str | Path) -> None:
        """Write a safetensors file (permutation, cost, score) whose header holds the JSON
        metadata and a checksum of the tensors, so a damaged file is noticed when read."""
        tensors = {"permutation": self.permutation.contiguous(), "cost": self.cost.contiguous()}
        if self.score is not None:
            tensors["score"] = self.score.contiguous()
        metadata = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "tensors_sha256": sha256_tensors(tensors),
            "d_sae_b": str(self.d_sae_b),
            "source": json.dumps(self.source),
            "target": json.dumps(self.target),
            "method": self.method,
            "one_to_one": json.dumps(self.one_to_one),
            "random_pair_cost": json.dumps(self.random_pair_cost),
            "score_name": json.dumps(self.score_name),
            "steps": str(self.steps),
            "fit_tokens": json.dumps(self.fit_tokens),
            "info": json.dumps(self.info, default=str),
        }
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> "Matching":
        """Read a file written by :meth:`save` (any earlier format version too).

        Raises:
            MatchingFileError: the file is missing, not a matching file, damaged (its
                checksum fails), incomplete, or written by a newer version of the package.
        """
        path = Path(path)
        if not path.is_file():
            raise MatchingFileError(f"{path} is {'a directory' if path.is_dir() else 'missing'}, not a matching file.")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise MatchingFileError(f"{path} is not a readable safetensors file ({error}); it may be truncated or damaged.") from None
        if metadata.get("format") != FORMAT:
            raise MatchingFileError(f"{path} is not a sae-lens-match matching file.")
        version = int(metadata.get("format_version", "1"))
        if version > FORMAT_VERSION:
            raise MatchingFileError(
                f"{path} has format version {version}, newer than this sae-lens-match reads "
                f"({FORMAT_VERSION}); upgrade sae-lens-match to read it."
            )
        if version >= 3 and sha256_tensors(tensors) != metadata.get("tensors_sha256"):
            raise MatchingFileError(f"{path} is damaged: its tensors do not match the checksum written with them.")
        try:
            return cls._from_file(tensors, metadata, version)
        except KeyError as error:
            raise MatchingFileError(f"{path} lacks {error} (metadata or tensor); it was not written by Matching.save.") from None
        except (ValueError, TypeError) as error:
            raise MatchingFileError(f"{path} holds an invalid matching: {error}") from None

    @classmethod
    def _from_file(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, str], version: int) -> "Matching":
        info = json.loads(metadata["info"])
        if version < 2:  # typed fields lived in info
            typed = {
                "method": info.get("method", "sae_match"),
                "random_pair_cost": info.get("random_pair_median_cost"),
                "steps": int(info.get("steps", 1)),
            }
        else:
            typed = {
                "method": metadata["method"],
                "random_pair_cost": json.loads(metadata["random_pair_cost"]),
                "score_name": json.loads(metadata["score_name"]),
                "steps": int(metadata["steps"]),
                "fit_tokens": json.loads(metadata["fit_tokens"]),
            }
        return cls(
            permutation=tensors["permutation"],
            cost=tensors["cost"],
            d_sae_b=int(metadata["d_sae_b"]),
            source=json.loads(metadata["source"]),
            target=json.loads(metadata["target"]),
            # files written before the field existed hold one-to-one matchings
            one_to_one=json.loads(metadata.get("one_to_one", "true")),
            score=tensors.get("score"),
            info=info,
            **typed,
        )


@dataclass(frozen=True)
class UnmatchedRule:
    """When a pair of a matching counts as "no match": the one definition every part of the package uses.

    Give at most one of the fields; with none, every pair is kept (the bijection as matched).

    Attributes:
        max_cost: pairs with ``cost > max_cost`` are unmatched.
        quantile: in [0, 1]; pairs above this quantile of the matching's costs are unmatched
            (paper Appendix B).
        random_ratio: pairs whose cost is above ``random_ratio`` times the median cost of
            random pairs (:attr:`Matching.random_pair_cost`) are unmatched: closer to a random
            partner than to a real one. Data-free and scale-free.
    """

    max_cost: float | None = None
    quantile: float | None = None
    random_ratio: float | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.max_cost, self.quantile, self.random_ratio) if v is not None]
        if len(given) > 1:
            raise ValueError(f"Give at most one of max_cost, quantile and random_ratio, got {self}.")
        if self.quantile is not None and not 0.0 <= self.quantile <= 1.0:
            raise ValueError(f"quantile must lie in [0, 1], got {self.quantile}.")
        if self.random_ratio is not None and not self.random_ratio > 0:
            raise ValueError(f"random_ratio must be > 0, got {self.random_ratio}.")

    @property
    def keeps_all(self) -> bool:
        return self.max_cost is None and self.quantile is None and self.random_ratio is None

    def threshold(self, m: Matching) -> float:
        """The cost above which a pair of ``m`` is unmatched (``inf`` when every pair is kept)."""
        if self.max_cost is not None:
            return float(self.max_cost)
        if self.quantile is not None:
            costs = m.cost[m.matched & ~torch.isnan(m.cost)]
            return float(torch.quantile(costs, self.quantile)) if costs.numel() else math.inf
        if self.random_ratio is not None:
            if m.random_pair_cost is None:
                raise ValueError(
                    f"This {m.method} matching records no random_pair_cost, which the rule "
                    f"'{self.describe()}' needs; use max_cost or quantile instead."
                )
            return self.random_ratio * m.random_pair_cost
        return math.inf

    def describe(self) -> str:
        """The rule in words, for tables."""
        if self.max_cost is not None:
            return f"cost > {self.max_cost:g}"
        if self.quantile is not None:
            return f"cost above the {self.quantile:g} quantile of costs"
        if self.random_ratio is not None:
            return f"cost > {self.random_ratio:g} x median cost of random pairs"
        return "none (every pair kept)"

    def apply(self, m: Matching) -> Matching:
        """``m`` with the pairs this rule calls unmatched set to ``-1``."""
        if self.keeps_all:
            return m
        limit = self.threshold(m)
        keep = m.matched & (m.cost <= limit)
        return replace(
            m,
            permutation=torch.where(keep, m.permutation, -1),
            cost=torch.where(keep, m.cost, float("nan")),
            score=None if m.score is None else torch.where(keep, m.score, float("nan")),
            info={**m.info, "unmatched_rule": self.describe(), "max_cost": limit},
        )


DEFAULT_UNMATCHED = UnmatchedRule(random_ratio=0.5)
"""The default everywhere (summaries, evaluations, the command line): a pair is unmatched when
its cost is above half the median cost of random pairs. The paper leaves the threshold to the
user (Appendix B uses quantiles); this one needs neither data nor a scale."""


def random_permutation(d_sae_a: int, d_sae_b: int, seed: int = 0) -> torch.Tensor:
    """A random pairing of ``d_sae_a`` A features with ``d_sae_b`` B features, without repeats:
    ``[d_sae_a]`` int64, ``-1`` for the A features left over when ``d_sae_a > d_sae_b``."""
    g = torch.Generator().manual_seed(seed)
    if d_sae_a <= d_sae_b:
        return torch.randperm(d_sae_b, generator=g)[:d_sae_a]
    perm = torch.full((d_sae_a,), -1, dtype=torch.long)
    perm[torch.randperm(d_sae_a, generator=g)[:d_sae_b]] = torch.randperm(d_sae_b, generator=g)
    return perm


def random_matching(matching: Matching, seed: int = 0) -> Matching:
    """A random pairing with the shape and provenance of ``matching`` (the chance level of a
    statistic on data); its cost is unknown (``nan``)."""
    perm = random_permutation(matching.d_sae_a, matching.d_sae_b, seed)
    cost = torch.full((matching.d_sae_a,), float("nan"), dtype=torch.float64)
    return Matching(perm, cost, matching.d_sae_b, matching.source, matching.target, method="random", info={"seed": seed})


def agreement(m: Matching, reference: Matching) -> float:
    """Fraction of the A features ``reference`` matches that ``m`` sends to the same B feature.

    E.g. a composed path ``A -> ... -> C`` against the direct match ``A -> C``, or one matcher
    against another. ``nan`` when ``reference`` matches nothing.
    """
    if m.d_sae_a != reference.d_sae_a or m.d_sae_b != reference.d_sae_b:
        raise ValueError("agreement needs two matchings between the same pair of SAEs.")
    for side in ("source", "target"):
        key = _same_sae(getattr(m, side), getattr(reference, side))
        if key is not None:
            raise ValueError(
                f"agreement needs two matchings between the same pair of SAEs, but their {side}s differ in "
                f"{key}: {getattr(m, side)[key]!r} vs {getattr(reference, side)[key]!r}."
            )
    both = reference.matched
    if not both.any():
        return float("nan")
    return float((m.permutation[both] == reference.permutation[both]).double().mean())
