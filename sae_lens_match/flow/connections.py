"""Sparse linear connections between the features of two SAEs, fitted on data.

The data-driven counterpart of SAE Match and feature flow (the seed posts' "sparse linear
connections", issue #18): for every feature of a downstream SAE B, a sparse linear map from the
feature activations of an upstream SAE A on the same token (residual ``L-1`` -> residual ``L``,
attention or MLP ``L`` -> residual ``L``, residual ``L-1`` -> MLP ``L``)::

    codes_b[:, j]  ~  codes_a @ weights[:, j] + bias[j]

and how much of the feature's variance that map explains on held-out tokens. A feature whose
held-out explained variance passes ``threshold`` counts as *linearly computed* from A.

How it is fitted:

- One pass over the data accumulates float64 sufficient statistics (token count, sums,
  ``X^T X [d_a, d_a]``, ``X^T Y [d_a, d_b]``, ``sum Y^2``) separately for training and
  held-out tokens, so memory does not grow with the number of tokens. Which tokens are held
  out is a seeded hash of each token's position in the stream, so it does not depend on how
  the stream is cut into batches.
- A *shuffled control* is accumulated beside it: each downstream token is paired with the
  upstream codes of another token of the same batch and split (a seeded derangement). The
  same fit on those pairs shows how much a fit explains when the token-level link is broken.
- The fit runs on standardized codes (correlation units), all downstream features at once:
  ``"l1"`` is the lasso ``1/2 w^T R w - r^T w + l1 * |w|_1`` (``R``: correlations among A's
  features, ``r``: their correlations with a B feature) by FISTA with adaptive restart,
  stopped on the KKT conditions; ``"topk"`` is orthogonal matching pursuit on the Gram matrix
  (greedy support of ``k`` features, least squares on it). With ``refit`` (the default) the
  lasso's support is refitted by least squares too, so weights are not shrunk.
- Explained variance is exact on the held-out sums: the residual sum of squares is
  ``||y||^2 - 2 w^T X^T y + w^T X^T X w`` (centred, plus the intercept's error).

Weights are dense ``[d_a, d_b]`` float32 tensors: at the widths this is meant for (a few
thousand features) that is a few tens of MB, and the Gram matrix ``[d_a, d_a]`` float64 is the
larger cost anyway.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, NamedTuple, Sequence

import numpy as np
import torch
from sae_lens import SAE
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from sae_lens_match.atomic import atomic_path, write_json
from sae_lens_match.fingerprints import sha256_tensors
from sae_lens_match.flow.graph import FlowGraph
from sae_lens_match.flow.stack import MODULES, FlowStack, Module
from sae_lens_match.matching.matching import Matching, sae_description
from sae_lens_match.sources.activations import feature_activations
from sae_lens_match.sources.tokens import TokenSet

logger = logging.getLogger(__name__)

FORMAT = "sae_lens_match.connections"
VERSION = 1
Sparsity = Literal["l1", "topk"]
SPARSITIES: tuple[Sparsity, ...] = ("l1", "topk")
# A variance below this fraction of the mean square is a constant feature (rounding, not signal).
_DEAD = 1e-10
_RIDGE = 1e-10  # keeps least squares on a support with duplicate features solvable
_CHUNK = 8192  # tokens per update when fitting on tensors


@dataclass(frozen=True)
class ConnectionsConfig:
    """How connections are fitted.

    Attributes:
        sparsity: ``"l1"`` (lasso) or ``"topk"`` (orthogonal matching pursuit, ``k`` features).
        l1: the lasso penalty on standardized codes, in correlation units, in ``(0, 1)``: an
            upstream feature whose correlation with what the other weights leave unexplained
            of a downstream feature stays below ``l1`` gets no weight, and a downstream feature
            correlated with no upstream feature above ``l1`` gets no connection at all. Keep it above the largest
            correlation chance alone gives, about ``sqrt(2 ln(d_a) / n_train)`` (a warning says
            when it is not): 0.028 for 512 features and 16k tokens. The default 0.1 keeps
            about 10 weights per feature on the embedded world and most of the explained
            variance of weaker penalties (``benchmarks/connections_world.py --sweep``), and stays
            above that level down to about 1,200 training tokens at 512 features.
        k: upstream features per downstream feature for ``"topk"`` (at most ``d_a``); the
            default 8 fits about as well as the default ``l1`` on the embedded world.
        refit: refit the lasso's support by least squares (unshrunk weights); ``"topk"``
            always fits by least squares.
        max_iter: FISTA iterations at most.
        tol: the lasso stops when every KKT condition holds to ``tol`` (correlation units).
        threshold: held-out explained variance above which a downstream feature counts as
            linearly computed.
        test_fraction: share of tokens held out to measure explained variance, in ``(0, 1)``.
        seed: which tokens are held out and the shuffled control's pairing.

    Raises:
        ValueError: any field out of range.
    """

    sparsity: Sparsity = "l1"
    l1: float = 0.1
    k: int = 8
    refit: bool = True
    max_iter: int = 2000
    tol: float = 1e-6
    threshold: float = 0.5
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sparsity not in SPARSITIES:
            raise ValueError(f"sparsity must be one of {list(SPARSITIES)}, got {self.sparsity!r}.")
        if not 0.0 < self.l1 < 1.0:
            raise ValueError(f"l1 is a penalty in correlation units and must lie in (0, 1), got {self.l1}.")
        for name in ("k", "max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if not isinstance(self.refit, bool):
            raise ValueError(f"refit must be a bool, got {self.refit!r}.")
        if not self.tol > 0:
            raise ValueError(f"tol must be > 0, got {self.tol}.")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is an explained variance and must lie in [0, 1], got {self.threshold}.")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Agreement:
    """How often the strongest learned upstream feature of a downstream feature is its data-free partner.

    Attributes:
        fraction: ``n_agree / n_compared`` (NaN when nothing was compared).
        n_compared: downstream features that have a partner (and are alive, and linear if asked).
        n_agree: those whose strongest upstream feature is the partner.
        chance: ``1 / d_a``, the agreement of a random choice.
    """

    fraction: float
    n_compared: int
    n_agree: int
    chance: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Connections:
    """Sparse linear connections from SAE A's features to SAE B's (see the module docstring).

    Attributes:
        weights: ``[d_a, d_b]`` float32, in the codes' own units: ``codes_b ~ codes_a @ weights + bias``.
        bias: ``[d_b]`` float32.
        explained_variance: ``[d_b]`` float32, on held-out tokens; NaN for a downstream feature
            that does not vary on the training or the held-out tokens (dead).
        control_explained_variance: ``[d_b]`` float32, the same for the fit on shuffled pairs.
        upstream_std: ``[d_a]`` float32, each upstream feature's standard deviation on the
            training tokens; ``|weights[i, j]| * upstream_std[i]`` is feature ``i``'s contribution to ``j``.
        n_train, n_test: training and held-out tokens.
        config: the :class:`ConnectionsConfig` as a dict.
        source, target: descriptions of A and B (hook name, widths, layer and module).
        info: how the fit went, for the record (iterations, unconverged targets, alive counts).
    """

    weights: torch.Tensor
    bias: torch.Tensor
    explained_variance: torch.Tensor
    control_explained_variance: torch.Tensor
    upstream_std: torch.Tensor
    n_train: int
    n_test: int
    config: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.weights.ndim != 2:
            raise ValueError(f"weights must be [d_a, d_b], got shape {tuple(self.weights.shape)}.")
        d_a, d_b = self.weights.shape
        for name, size in (("bias", d_b), ("explained_variance", d_b), ("control_explained_variance", d_b), ("upstream_std", d_a)):
            if tuple(getattr(self, name).shape) != (size,):
                raise ValueError(f"{name} must have shape ({size},), got {tuple(getattr(self, name).shape)}.")

    @property
    def d_a(self) -> int:
        return self.weights.shape[0]

    @property
    def d_b(self) -> int:
        return self.weights.shape[1]

    @property
    def threshold(self) -> float:
        return float(self.config["threshold"])

    @property
    def alive(self) -> torch.Tensor:
        """``[d_b]`` bool: downstream features that vary on both training and held-out tokens."""
        return ~self.explained_variance.isnan()

    def n_upstream(self) -> torch.Tensor:
        """``[d_b]`` int64: nonzero upstream weights of each downstream feature."""
        return (self.weights != 0).sum(0)

    def top_upstream(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``n`` upstream features that contribute most to each downstream feature.

        Ranked by contribution ``|weights[i, j]| * upstream_std[i]``.

        Returns:
            ``(indices [d_b, n] int64, weights [d_b, n] float32)``; ``-1`` and ``0`` past a
            feature's nonzero weights.
        """
        if not 1 <= n <= self.d_a:
            raise ValueError(f"n must lie in [1, d_a={self.d_a}], got {n}.")
        contribution = (self.weights.abs() * self.upstream_std[:, None]).T
        values, indices = contribution.topk(n, dim=1)
        weights = self.weights.T.gather(1, indices)
        none = values <= 0
        return indices.masked_fill(none, -1), weights.masked_fill(none, 0.0)

    def strongest_upstream(self) -> torch.Tensor:
        """``[d_b]`` int64: the upstream feature contributing most to each downstream one (``-1``: none)."""
        return self.top_upstream(1)[0][:, 0]

    def linear(self, threshold: float | None = None) -> torch.Tensor:
        """``[d_b]`` bool: held-out explained variance above ``threshold`` (default: the config's)."""
        return self.explained_variance > (self.threshold if threshold is None else threshold)

    def fraction_linear(self, threshold: float | None = None, control: bool = False) -> float:
        """Share of alive downstream features whose held-out explained variance passes ``threshold``
        (default: the config's); ``control`` reads the shuffled control's instead. NaN when none is alive."""
        ev = self.control_explained_variance if control else self.explained_variance
        threshold = self.threshold if threshold is None else threshold
        alive = self.alive
        n = int(alive.sum())
        return float((ev[alive] > threshold).sum()) / n if n else float("nan")

    def agreement(self, partner: torch.Tensor, linear_only: bool = False) -> Agreement:
        """How often the strongest learned upstream feature is ``partner`` (data-free, e.g. SAE Match).

        Args:
            partner: ``[d_b]`` int64, the upstream partner of each downstream feature, ``-1`` for none.
            linear_only: compare only downstream features that count as linearly computed.

        Returns:
            :class:`Agreement` over the alive downstream features that have a partner; a feature
            without any learned weight counts as disagreeing.
        """
        partner = torch.as_tensor(partner)
        if partner.shape != (self.d_b,) or partner.dtype.is_floating_point or partner.dtype == torch.bool:
            raise ValueError(f"partner must be an integer tensor of shape ({self.d_b},), got {partner.dtype} {tuple(partner.shape)}.")
        partner = partner.long().cpu()
        if (partner < -1).any() or (partner >= self.d_a).any():
            raise ValueError(f"partner entries must lie in [-1, d_a={self.d_a}).")
        keep = (partner >= 0) & self.alive
        if linear_only:
            keep &= self.linear()
        n = int(keep.sum())
        agree = int((self.strongest_upstream()[keep] == partner[keep]).sum())
        return Agreement(agree / n if n else float("nan"), n, agree, 1.0 / self.d_a)

    def summary(self) -> dict[str, Any]:
        """Scalar figures: alive and linear features, against the control; median EV; weights per feature."""
        alive = self.alive
        ev, control = self.explained_variance[alive], self.control_explained_variance[alive]
        nonzero = self.n_upstream()[alive].double()
        return {
            "d_a": self.d_a,
            "d_b": self.d_b,
            "n_alive": int(alive.sum()),
            "fraction_linear": self.fraction_linear(),
            "control_fraction_linear": self.fraction_linear(control=True),
            "median_explained_variance": float(ev.median()) if ev.numel() else float("nan"),
            "control_median_explained_variance": float(control.median()) if control.numel() else float("nan"),
            "mean_nonzero": float(nonzero.mean()) if nonzero.numel() else float("nan"),
            "n_train": self.n_train,
            "n_test": self.n_test,
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: the figures of :meth:`summary`, the config, both SAEs and the fit's info (no tensors)."""
        return {"format": FORMAT, "version": VERSION, **self.summary(), "config": self.config, "source": self.source, "target": self.target, "info": self.info}

    def save(self, path: str | Path) -> Path:
        """Write the tensors to ``path`` (safetensors, with the metadata and a checksum in its
        header) and the summary of :meth:`to_dict` beside it (``path`` with suffix ``.json``), atomically.

        Weights are stored as their nonzero entries (``weight_indices [2, nnz]``: upstream and
        downstream feature; ``weight_values [nnz]``): a sparse fit keeps a few per feature, and
        dense they are 1 MB a pair at 512 x 512 features."""
        path = Path(path)
        index = self.weights.nonzero().T
        tensors = {
            "weight_indices": index.to(torch.int32).contiguous(),
            "weight_values": self.weights[index[0], index[1]].contiguous(),
            **{name: getattr(self, name).contiguous() for name in _VECTORS},
        }
        metadata = {
            "format": FORMAT,
            "version": str(VERSION),
            "tensors_sha256": sha256_tensors(tensors),
            "shape": json.dumps([self.d_a, self.d_b]),
            "n_train": str(self.n_train),
            "n_test": str(self.n_test),
            **{name: json.dumps(getattr(self, name), default=str) for name in ("config", "source", "target", "info")},
        }
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        write_json(path.with_suffix(".json"), self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Connections":
        """Read a file written by :meth:`save` (``ValueError`` for a missing, damaged or foreign file)."""
        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{path} is not a readable safetensors file ({error}).") from None
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path} is not a connections file (format {metadata.get('format')!r}).")
        if int(metadata.get("version", "0")) > VERSION:
            raise ValueError(f"{path} has version {metadata['version']}, newer than this sae-lens-match reads ({VERSION}).")
        if sha256_tensors(tensors) != metadata.get("tensors_sha256"):
            raise ValueError(f"{path} is damaged: its tensors do not match the checksum written with them.")
        index = tensors["weight_indices"].long()
        weights = torch.zeros(json.loads(metadata["shape"]), dtype=tensors["weight_values"].dtype)
        weights[index[0], index[1]] = tensors["weight_values"]
        return cls(weights=weights, **{name: tensors[name] for name in _VECTORS}, n_train=int(metadata["n_train"]), n_test=int(metadata["n_test"]),
                   **{name: json.loads(metadata[name]) for name in ("config", "source", "target", "info")})


_VECTORS = ("bias", "explained_variance", "control_explained_variance", "upstream_std")


# --- streaming statistics --------------------------------------------------------------


def held_out_mask(start: int, n: int, fraction: float, seed: int) -> torch.Tensor:
    """``[n]`` bool: which of the tokens ``start .. start+n-1`` of a stream are held out.

    A seeded hash (splitmix64) of each token's index, so the split of a token does not depend
    on the batch it arrives in.
    """
    with np.errstate(over="ignore"):
        z = np.arange(start, start + n, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return torch.from_numpy((z >> np.uint64(11)).astype(np.float64) / 2.0**53 < fraction)


def _derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """``[n]`` a random permutation without fixed points (for ``n > 1``): a random cycle."""
    order = torch.randperm(n, generator=generator)
    partner = torch.empty(n, dtype=torch.long)
    partner[order] = order.roll(1)
    return partner


class ConnectionStatistics:
    """Float64 sums over a stream of token batches, from which connections are fitted.

    Holds, per split (training, held-out): the token count; per SAE, the sums of its codes and of
    their squares; per upstream SAE, ``X^T X``; per pair, ``X^T Y`` and the shuffled control's
    ``X_shuffled^T Y``. Memory is independent of the number of tokens.

    Args:
        widths: ``d_sae`` of every SAE, in the order their codes are given to :meth:`update`.
        pairs: ``(upstream, downstream)`` indices into ``widths``.
        config: for ``test_fraction`` and ``seed``.

    Raises:
        ValueError: a pair names an SAE that is not in ``widths``.
    """

    def __init__(self, widths: Sequence[int], pairs: Sequence[tuple[int, int]], config: ConnectionsConfig | None = None):
        self.config = config or ConnectionsConfig()
        self.widths = [int(w) for w in widths]
        self.pairs = [(int(a), int(b)) for a, b in pairs]
        if not self.pairs:
            raise ValueError("Give at least one (upstream, downstream) pair.")
        for a, b in self.pairs:
            if not (0 <= a < len(self.widths) and 0 <= b < len(self.widths)):
                raise ValueError(f"Pair {(a, b)} names an SAE outside the {len(self.widths)} given.")
        self.upstream = sorted({a for a, _ in self.pairs})
        self.n_tokens = 0
        self.n = [0, 0]  # training, held-out
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self._sums: dict[str, Any] | None = None

    def _allocate(self, device: torch.device) -> dict[str, Any]:
        z = lambda *shape: torch.zeros(2, *shape, dtype=torch.float64, device=device)  # noqa: E731 (a local shorthand)
        return {
            "sum": {i: z(w) for i, w in enumerate(self.widths)},
            "sq": {i: z(w) for i, w in enumerate(self.widths)},
            "gram": {a: z(self.widths[a], self.widths[a]) for a in self.upstream},
            "cross": {p: z(self.widths[p[0]], self.widths[p[1]]) for p in self.pairs},
            "control": {p: z(self.widths[p[0]], self.widths[p[1]]) for p in self.pairs},
        }

    def update(self, codes: Sequence[torch.Tensor]) -> None:
        """Add one batch: ``codes[k]`` is ``[n_tokens, widths[k]]``, row ``t`` the same token in every tensor.

        Raises:
            ValueError: the wrong number of tensors, a wrong width, or different token counts.
        """
        if len(codes) != len(self.widths):
            raise ValueError(f"update needs one code tensor per SAE ({len(self.widths)}), got {len(codes)}.")
        n = codes[0].shape[0] if codes[0].ndim == 2 else -1
        for k, (c, w) in enumerate(zip(codes, self.widths)):
            if c.ndim != 2 or c.shape[1] != w:
                raise ValueError(f"codes[{k}] must be [n_tokens, {w}], got shape {tuple(c.shape)}.")
            if c.shape[0] != n:
                raise ValueError(f"All code tensors must cover the same tokens; codes[0] has {n} rows, codes[{k}] has {c.shape[0]}.")
        if n == 0:
            return
        if self._sums is None:
            self._sums = self._allocate(codes[0].device)
        sums = self._sums
        test = held_out_mask(self.n_tokens, n, self.config.test_fraction, self.config.seed)
        self.n_tokens += n
        for split, mask in enumerate((~test, test)):
            rows = mask.nonzero().squeeze(1)
            if not rows.numel():
                continue
            self.n[split] += rows.numel()
            shuffled = rows[_derangement(rows.numel(), self._generator)]
            rows, shuffled = rows.to(codes[0].device), shuffled.to(codes[0].device)
            x = {i: codes[i].detach()[rows].double() for i in range(len(self.widths))}
            for i, v in x.items():
                sums["sum"][i][split] += v.sum(0)
                sums["sq"][i][split] += v.square().sum(0)
            other = {a: codes[a].detach()[shuffled].double() for a in self.upstream}  # the control's upstream codes
            for a in self.upstream:
                sums["gram"][a][split] += x[a].T @ x[a]
            for a, b in self.pairs:
                sums["cross"][a, b][split] += x[a].T @ x[b]
                sums["control"][a, b][split] += other[a].T @ x[b]

    def fit(self, pair: tuple[int, int] | None = None, config: ConnectionsConfig | None = None, source: dict[str, Any] | None = None,
            target: dict[str, Any] | None = None) -> Connections:
        """The connections of one pair (the only one by default) from the sums so far.

        ``config`` may change how the fit is done, but not ``test_fraction`` or ``seed``: the sums were split by them.

        Raises:
            ValueError: an unknown pair, too few tokens in a split, ``k > d_a``, or a config split differently.
        """
        config = config or self.config
        if (config.test_fraction, config.seed) != (self.config.test_fraction, self.config.seed):
            raise ValueError("The sums were split with another test_fraction or seed; fit with the config they were collected with.")
        if pair is None:
            if len(self.pairs) != 1:
                raise ValueError(f"These statistics hold {len(self.pairs)} pairs; say which one to fit.")
            pair = self.pairs[0]
        if tuple(pair) not in self.pairs:
            raise ValueError(f"No statistics for pair {pair}; they hold {self.pairs}.")
        if self.n[0] < 2 or self.n[1] < 2:
            raise ValueError(f"Too few tokens to fit and test: {self.n[0]} training and {self.n[1]} held-out; give more data (or another test_fraction).")
        a, b = pair
        if config.sparsity == "topk" and config.k > self.widths[a]:
            raise ValueError(f"k={config.k} is more than the {self.widths[a]} upstream features (d_a).")
        s = self._sums
        return _fit(
            n=self.n,
            x=(s["sum"][a], s["sq"][a], s["gram"][a]),
            y=(s["sum"][b], s["sq"][b]),
            cross=s["cross"][a, b],
            control=s["control"][a, b],
            config=config,
            source=source or {},
            target=target or {},
        )


# --- the fit -------------------------------------------------------------------------------


def _fit(n: list[int], x: tuple, y: tuple, cross: torch.Tensor, control: torch.Tensor, config: ConnectionsConfig,
         source: dict[str, Any], target: dict[str, Any]) -> Connections:
    (sx, sqx, gram), (sy, sqy) = x, y
    d_a, d_b = cross.shape[1:]
    # training moments, centred
    nt = n[0]
    mx, my = sx[0] / nt, sy[0] / nt
    cov = gram[0] / nt - torch.outer(mx, mx)
    var_y = sqy[0] / nt - my.square()
    var_x = cov.diagonal().clone()
    live_x = var_x > _DEAD * (sqx[0] / nt)
    live_y = (var_y > _DEAD * (sqy[0] / nt)) & (_held_out_sst(n[1], sy[1], sqy[1]) > _DEAD * sqy[1])
    std_x, std_y = var_x.clamp_min(0).sqrt(), var_y.clamp_min(0).sqrt()
    ix, iy = live_x.nonzero().squeeze(1), live_y.nonzero().squeeze(1)
    R = cov[ix][:, ix] / torch.outer(std_x[ix], std_x[ix])
    noise = math.sqrt(2 * math.log(max(int(ix.numel()), 2)) / nt)  # the largest correlation chance alone gives
    if config.sparsity == "l1" and config.l1 < noise:
        logger.warning("connections: l1=%g is below the largest correlation that %d training tokens give by chance "
                       "(about %.3g); expect spurious weights. Give more tokens or a larger l1.", config.l1, nt, noise)
    weights, evs, info = {}, {}, {"alive_upstream": int(ix.numel()), "alive_downstream": int(iy.numel())}
    for name, xy in (("real", cross), ("control", control)):
        r = (xy[0][ix][:, iy] / nt - torch.outer(mx[ix], my[iy])) / torch.outer(std_x[ix], std_y[iy])
        w_std, fit_info = _solve(R, r, config)
        w = torch.zeros(d_a, d_b, dtype=torch.float64, device=cross.device)
        w[ix[:, None], iy[None, :]] = w_std * std_y[iy] / std_x[ix, None]
        bias = my - mx @ w
        weights[name] = (w, bias)
        evs[name] = _held_out_ev(n[1], sx[1], gram[1], sy[1], sqy[1], xy[1], w, bias)
        evs[name][~live_y] = float("nan")
        info[name] = fit_info
    if info["real"].get("unconverged"):
        logger.warning("connections: the lasso did not converge to tol=%g for %d of %d downstream features within %d iterations",
                       config.tol, info["real"]["unconverged"], int(iy.numel()), config.max_iter)
    w, bias = weights["real"]
    out = Connections(
        weights=w.float().cpu(),
        bias=bias.float().cpu(),
        explained_variance=evs["real"].float().cpu(),
        control_explained_variance=evs["control"].float().cpu(),
        upstream_std=std_x.float().cpu(),
        n_train=n[0],
        n_test=n[1],
        config=config.to_dict(),
        source=source,
        target=target,
        info=info,
    )
    logger.info("connections %s -> %s: %.3f linear (control %.3f), %.1f weights per feature", source.get("hook_name", "A"),
                target.get("hook_name", "B"), out.fraction_linear(), out.fraction_linear(control=True), float(out.n_upstream().double().mean()))
    return out


def _held_out_sst(n: int, s: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    return sq - s.square() / max(n, 1)


def _held_out_ev(n: int, sx: torch.Tensor, gram: torch.Tensor, sy: torch.Tensor, sqy: torch.Tensor, xy: torch.Tensor,
                 w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``[d_b]`` explained variance of ``x @ w + bias`` on held-out sums, exactly: with the
    held-out means ``mx, my``, ``SSR = SST - 2 w^T C + w^T G w + n d^2`` (``G, C``: centred
    sums, ``d = my - w^T mx - bias``, the intercept's error)."""
    mx, my = sx / n, sy / n
    g = gram - n * torch.outer(mx, mx)
    c = xy - n * torch.outer(mx, my)
    sst = _held_out_sst(n, sy, sqy)
    d = my - mx @ w - bias
    ssr = sst - 2 * (w * c).sum(0) + (w * (g @ w)).sum(0) + n * d.square()
    return 1 - ssr / sst


def _solve(R: torch.Tensor, r: torch.Tensor, config: ConnectionsConfig) -> tuple[torch.Tensor, dict[str, Any]]:
    """Standardized weights ``[p, m]`` for correlations ``R [p, p]`` and ``r [p, m]``."""
    if not r.numel():
        return torch.zeros_like(r), {}
    if config.sparsity == "topk":
        return _omp(R, r, config.k), {}
    w, info = _lasso(R, r, config.l1, config.max_iter, config.tol)
    if config.refit:
        w = _least_squares(R, r, _support(w))
    return w, info


def _lasso(R: torch.Tensor, r: torch.Tensor, lam: float, max_iter: int, tol: float) -> tuple[torch.Tensor, dict[str, Any]]:
    """FISTA with gradient-based adaptive restart (O'Donoghue and Candes 2015) on
    ``1/2 w^T R w - r^T w + lam |w|_1``, one column per target; a column stops once its KKT
    conditions hold to ``tol``."""
    step = 1.0 / float(torch.linalg.eigvalsh(R)[-1].clamp_min(1e-12))
    w = torch.zeros_like(r)
    z = w.clone()
    t = torch.ones(r.shape[1], dtype=r.dtype, device=r.device)
    active = torch.arange(r.shape[1], device=r.device)
    iterations = 0
    for iterations in range(1, max_iter + 1):
        za, wa, ta = z[:, active], w[:, active], t[active]
        u = za - step * (R @ za - r[:, active])
        new = u.sign() * (u.abs() - step * lam).clamp_min(0)
        restart = ((za - new) * (new - wa)).sum(0) > 0  # momentum points uphill: drop it
        t_next = (1 + (1 + 4 * ta.square()).sqrt()) / 2
        beta = torch.where(restart, 0.0, (ta - 1) / t_next)
        z[:, active] = new + beta * (new - wa)
        w[:, active] = new
        t[active] = torch.where(restart, 1.0, t_next)
        if iterations % 10 == 0 or iterations == max_iter:
            active = active[_kkt_violation(R, r[:, active], w[:, active], lam) > tol]
            if not active.numel():
                break
    return w, {"iterations": iterations, "unconverged": int(active.numel())}


def _kkt_violation(R: torch.Tensor, r: torch.Tensor, w: torch.Tensor, lam: float) -> torch.Tensor:
    """``[m]`` the largest violation of the lasso's optimality conditions per column: ``g = r - R w``
    equals ``lam * sign(w)`` on the support and lies in ``[-lam, lam]`` off it."""
    g = r - R @ w
    on = (g - lam * w.sign()).abs()
    off = (g.abs() - lam).clamp_min(0)
    return torch.where(w != 0, on, off).amax(0)


def _support(w: torch.Tensor) -> torch.Tensor:
    """``[m, s]`` int64, the nonzero rows of each column of ``w`` (``-1`` padding)."""
    nonzero = w != 0
    s = int(nonzero.sum(0).max()) if w.numel() else 0
    if s == 0:
        return torch.full((w.shape[1], 0), -1, dtype=torch.long, device=w.device)
    order = nonzero.to(torch.int8).argsort(dim=0, descending=True, stable=True)[:s].T
    return order.masked_fill(~nonzero.T.gather(1, order), -1)


def _least_squares(R: torch.Tensor, r: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """``[p, m]``: each column the least-squares weights on its ``support`` row (``-1``: padding), zero elsewhere."""
    m = r.shape[1]
    w = torch.zeros_like(r)
    s = support.shape[1]
    if s == 0:
        return w
    chunk = max(1, 2**24 // (s * s))  # targets per batched solve: bounded memory
    eye = torch.eye(s, dtype=r.dtype, device=r.device)
    for start in range(0, m, chunk):
        idx = support[start : start + chunk]
        cols = torch.arange(start, start + idx.shape[0], device=r.device)
        pad = idx < 0
        safe = idx.clamp_min(0)
        a = R[safe[:, :, None], safe[:, None, :]]
        keep = (~pad).to(r.dtype)
        a = a * keep[:, :, None] * keep[:, None, :] + eye * (1 - keep)[:, None, :] + _RIDGE * eye  # padding solves to 0
        rhs = r[safe, cols[:, None]] * keep
        sol = torch.linalg.solve(a, rhs)
        rows = safe[~pad]
        w[rows, cols[:, None].expand_as(idx)[~pad]] = sol[~pad]
    return w


def _omp(R: torch.Tensor, r: torch.Tensor, k: int) -> torch.Tensor:
    """Orthogonal matching pursuit on the Gram matrix, all targets at once: ``k`` times, add the
    feature most correlated with the residual, refit least squares on the support."""
    p, m = r.shape
    cols = torch.arange(m, device=r.device)
    support = torch.full((m, min(k, p)), -1, dtype=torch.long, device=r.device)
    chosen = torch.zeros(p, m, dtype=torch.bool, device=r.device)
    w = torch.zeros_like(r)
    for step in range(support.shape[1]):
        residual = (r - R @ w).abs().masked_fill(chosen, -1.0)
        value, best = residual.max(0)
        ok = value > 1e-12  # nothing left to explain: stop this target
        support[ok, step] = best[ok]
        chosen[best[ok], cols[ok]] = True
        w = _least_squares(R, r, support)
    return w


# --- on SAEs and data ------------------------------------------------------------------------


def fit_connections(codes_a: torch.Tensor, codes_b: torch.Tensor, config: ConnectionsConfig | None = None) -> Connections:
    """Connections from feature activations already in memory.

    Args:
        codes_a: ``[n_tokens, d_a]`` upstream feature activations.
        codes_b: ``[n_tokens, d_b]`` downstream feature activations of the same tokens.
        config: :class:`ConnectionsConfig`.

    Returns:
        :class:`Connections`. The same as streaming the rows through :class:`ConnectionStatistics`
        (the shuffled control pairs tokens within chunks of 8192 rows).

    Raises:
        ValueError: not two 2-D tensors of the same number of rows, too few tokens, ``k > d_a``.
    """
    if codes_a.ndim != 2 or codes_b.ndim != 2:
        raise ValueError(f"codes_a and codes_b must be [n_tokens, d_sae], got shapes {tuple(codes_a.shape)} and {tuple(codes_b.shape)}.")
    if codes_a.shape[0] != codes_b.shape[0]:
        raise ValueError(f"codes_a and codes_b must cover the same tokens: {codes_a.shape[0]} != {codes_b.shape[0]} rows.")
    stats = ConnectionStatistics([codes_a.shape[1], codes_b.shape[1]], [(0, 1)], config)
    for start in range(0, codes_a.shape[0], _CHUNK):
        stats.update([codes_a[start : start + _CHUNK], codes_b[start : start + _CHUNK]])
    return stats.fit()


class ConnectionKey(NamedTuple):
    """A module pair of a :class:`FlowStack`: ``source_module`` of ``source_layer`` -> ``target_module`` of ``target_layer``."""

    source_module: Module
    source_layer: int
    target_module: Module
    target_layer: int

    def __str__(self) -> str:
        return f"{self.source_module} {self.source_layer} -> {self.target_module} {self.target_layer}"

    @property
    def stem(self) -> str:
        """The file stem of the pair's connections: ``residual0_to_mlp1``."""
        return f"{self.source_module}{self.source_layer}_to_{self.target_module}{self.target_layer}"


def stack_pairs(stack: FlowStack) -> list[ConnectionKey]:
    """The module pairs of ``stack`` whose connections :func:`stack_connections` fits, by layer:
    residual ``L-1``, attention ``L`` and MLP ``L`` -> residual ``L`` (feature flow's
    predecessors), and residual ``L-1`` -> MLP ``L`` (the posts' residual -> MLP case; the MLP
    reads the stream after attention, so this link goes through the attention of ``L``)."""
    out = []
    for layer in range(stack.n_layers):
        out += [ConnectionKey(module, at, "residual", layer) for module, (at, _) in stack.sources(layer).items()]
        if stack.sae("residual", layer - 1) is not None and stack.sae("mlp", layer) is not None:
            out.append(ConnectionKey("residual", layer - 1, "mlp", layer))
    return out


def _describe(sae: SAE, module: str | None = None, layer: int | None = None) -> dict[str, Any]:
    out = sae_description(sae)
    if module is not None:
        out.update(module=module, layer=layer)
    return out


def sae_connections(sae_a: SAE, sae_b: SAE, data: TokenSet, config: ConnectionsConfig | None = None) -> Connections:
    """Connections from ``sae_a``'s features to ``sae_b``'s, each SAE at its own hook, in one pass over ``data``.

    (Not named ``connections``: that would hide this module behind a function in ``sae_lens_match.flow``.)

    Returns:
        :class:`Connections` with ``source``/``target`` describing the two SAEs.
    """
    stats = ConnectionStatistics([sae_a.cfg.d_sae, sae_b.cfg.d_sae], [(0, 1)], config)
    for codes in feature_activations(data, [sae_a, sae_b], desc="connections"):
        stats.update(codes)
    return stats.fit(source=_describe(sae_a), target=_describe(sae_b))


@dataclass
class StackStatistics:
    """The sums of :class:`ConnectionStatistics` for module pairs of a :class:`FlowStack`, to fit
    once or with several configs (:meth:`fit`) without another pass over the data.

    Attributes:
        statistics: the sums, one entry of ``statistics.widths`` per SAE involved.
        pairs: pair -> ``(upstream, downstream)`` indices into ``statistics.widths``.
        descriptions: per SAE, its description (hook, widths, module, layer).
    """

    statistics: ConnectionStatistics
    pairs: dict[ConnectionKey, tuple[int, int]]
    descriptions: list[dict[str, Any]]

    def fit(self, config: ConnectionsConfig | None = None) -> dict[ConnectionKey, Connections]:
        """Pair -> :class:`Connections`; ``config`` must split tokens as the sums were (same ``test_fraction`` and ``seed``)."""
        return {key: self.statistics.fit(p, config, self.descriptions[p[0]], self.descriptions[p[1]]) for key, p in self.pairs.items()}


def stack_statistics(stack: FlowStack, data: TokenSet, config: ConnectionsConfig | None = None,
                     pairs: Iterable[ConnectionKey] | None = None) -> StackStatistics:
    """The sums for every module pair of ``stack`` (:func:`stack_pairs`, or ``pairs``), from ONE
    forward pass per batch of ``data`` (every SAE at its own hook).

    Raises:
        ValueError: a pair whose SAEs the stack lacks.
    """
    keys = [ConnectionKey(*k) for k in (stack_pairs(stack) if pairs is None else pairs)]
    nodes: list[tuple[Module, int]] = []
    for key in keys:
        for module, layer in ((key.source_module, key.source_layer), (key.target_module, key.target_layer)):
            if module not in MODULES or stack.sae(module, layer) is None:
                raise ValueError(f"The stack has no {module} SAE at layer {layer} (pair {key}).")
            if (module, layer) not in nodes:
                nodes.append((module, layer))
    saes = [stack.sae(m, at) for m, at in nodes]
    index = {node: i for i, node in enumerate(nodes)}
    pair_index = {k: (index[k.source_module, k.source_layer], index[k.target_module, k.target_layer]) for k in keys}
    stats = ConnectionStatistics([s.cfg.d_sae for s in saes], list(pair_index.values()), config)
    for codes in feature_activations(data, saes, desc="connections"):
        stats.update(codes)
    return StackStatistics(stats, pair_index, [_describe(s, *node) for s, node in zip(saes, nodes)])


def stack_connections(stack: FlowStack, data: TokenSet, config: ConnectionsConfig | None = None,
                      pairs: Iterable[ConnectionKey] | None = None) -> dict[ConnectionKey, Connections]:
    """Connections of every module pair of ``stack`` (:func:`stack_pairs`, or ``pairs``), all from
    ONE pass over ``data``: :func:`stack_statistics` then its ``fit``.

    Returns:
        pair -> :class:`Connections`, in the order of the pairs.
    """
    return stack_statistics(stack, data, config, pairs).fit(config)


# --- data-free partners ----------------------------------------------------------------------


def matching_partners(matching: Matching) -> torch.Tensor:
    """``[d_sae_b]`` int64: each B feature's A partner in a one-to-one ``matching`` (A -> B; ``-1``: none).

    A :class:`~sae_lens_match.matching.Matching` maps each A (upstream) feature to a B feature;
    connections ask the other way round, so this is its inverse.

    Raises:
        ValueError: a many-to-one matching (a B feature may have several partners).
    """
    return matching.inverse().permutation


def graph_partners(graph: FlowGraph, layer: int, module: Module) -> torch.Tensor:
    """``[d_sae]`` int64: for each residual feature of ``layer``, its best (rank-0) predecessor in
    ``module`` by the flow graph, ``-1`` where none passes the threshold.

    Raises:
        ValueError: a layer outside the graph, or a module the layer had no SAE for.
    """
    if not 0 <= layer < graph.n_layers:
        raise ValueError(f"layer must lie in [0, {graph.n_layers}), got {layer}.")
    info = graph.layers[layer]
    if module not in info.thresholds:
        raise ValueError(f"The flow graph has no {module} predecessors at layer {layer}; it has {sorted(info.thresholds)}.")
    out = torch.full((len(info.classes),), -1, dtype=torch.long)
    for edge in graph.edges:
        t = edge.target
        if edge.rank == 0 and t.layer == layer and edge.source.module == module:
            out[t.feature] = edge.source.feature
    return out


def stack_agreement(found: Mapping[ConnectionKey, Connections], matchings: Sequence[Matching] | None = None,
                    graph: FlowGraph | None = None, linear_only: bool = False) -> list[dict[str, Any]]:
    """Agreement of the strongest learned connection with the data-free partners, pair by pair.

    Args:
        found: the result of :func:`stack_connections`.
        matchings: SAE Match's ``matchings[L-1]`` from residual ``L-1`` to residual ``L`` (as
            :func:`~sae_lens_match.matching.match_layers` returns them); compared on residual -> residual pairs.
        graph: a :class:`FlowGraph` of the same stack; compared on every pair into a residual SAE.
        linear_only: compare only linearly computed downstream features.

    Returns:
        one row per pair and reference: ``pair``, ``reference`` (``"sae_match"`` or
        ``"flow_graph"``), and the fields of :class:`Agreement`.

    Raises:
        ValueError: a matching whose widths or hooks do not fit its pair.
    """
    rows = []
    for key, conn in found.items():
        refs = []
        if matchings is not None and key.source_module == key.target_module == "residual" and key.source_layer < len(matchings):
            m = matchings[key.source_layer]
            if (m.d_sae_a, m.d_sae_b) != (conn.d_a, conn.d_b):
                raise ValueError(f"matchings[{key.source_layer}] is {m.d_sae_a} -> {m.d_sae_b} features but pair {key} is {conn.d_a} -> {conn.d_b}.")
            for side, desc in (("source", conn.source), ("target", conn.target)):
                hook, recorded = desc.get("hook_name"), getattr(m, side).get("hook_name")
                if hook and recorded and hook != recorded:
                    raise ValueError(f"matchings[{key.source_layer}]'s {side} is {recorded!r} but pair {key} has {hook!r}; give the matchings in layer order.")
            refs.append(("sae_match", matching_partners(m)))
        if graph is not None and key.target_module == "residual" and key.source_module in graph.layers[key.target_layer].thresholds:
            refs.append(("flow_graph", graph_partners(graph, key.target_layer, key.source_module)))
        for name, partner in refs:
            rows.append({"pair": str(key), "reference": name, **conn.agreement(partner, linear_only).to_dict()})
    return rows


def connection_rows(found: Mapping[ConnectionKey, Connections]) -> list[dict[str, Any]]:
    """One row per pair: ``pair``, the module and layer of each side, and :meth:`Connections.summary`."""
    return [{"pair": str(k), **k._asdict(), **conn.summary()} for k, conn in found.items()]


def connection_tables(found: Mapping[ConnectionKey, Connections], matchings: Sequence[Matching] | None, graph: FlowGraph | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The connections' tables: one summary row per pair (:func:`connection_rows`
    with its agreement over alive features with SAE Match and with the flow graph, and the chance
    level), and the agreement rows themselves (:func:`stack_agreement`), over
    all alive features and over the linearly computed ones (``linear_only``)."""
    rows = {r["pair"]: r for r in connection_rows(found)}
    agreement = []
    for linear_only in (False, True):
        for a in stack_agreement(found, matchings, graph, linear_only=linear_only):
            agreement.append({**a, "linear_only": linear_only})
            if not linear_only:  # reference is "sae_match" or "flow_graph"
                rows[a["pair"]].update({f"{a['reference']}_agreement": a["fraction"], f"{a['reference']}_compared": a["n_compared"], "chance": a["chance"]})
    return list(rows.values()), agreement
