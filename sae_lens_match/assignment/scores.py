"""Approximate dot products from one fast matmul, with rigorous per-pair error bounds.

A :class:`Scorer` returns, chunk by chunk of rows of A, ``d^_ij ~ a_i . b_j`` against all of B,
and :attr:`Scorer.bound` bounds ``|d^_ij - a_i . b_j|`` for every pair. Two precisions:

- ``"int8"``: every row is scaled to ``[-127, 127]`` and rounded (``x = s q + dx``); ``q_a . q_b``
  is exact in int32 (``torch._int_mm``), so the only error is the rounding of the inputs:
  ``|a.b - a^.b^| <= |da||b^| + |a^||db| + |da||db|`` (Cauchy-Schwarz), from four norms per
  pair. Rows are first mixed by a random orthogonal map (:class:`Mixer`, which leaves dot
  products unchanged) so that no coordinate dominates a row's scale; SAE rows mix decoder and
  encoder parts whose magnitudes differ by the threshold squared, and unmixed they would
  round several times more coarsely. About 2.5x faster than float32 on CPUs with VNNI. On CPUs
  with AMX the matmul goes through oneDNN's int8 linear (:func:`onednn_int8`): the same
  integers and the same scaling, about 1.3x faster than ``torch._int_mm`` on Sapphire Rapids.
- ``"fp32"``: plain float32, bounded by ``gamma_n |a||b|`` with ``gamma_n = n u / (1 - n u)``
  (any summation order).

bfloat16 matmuls are not offered: their output is rounded to bfloat16, on CPU even partial
sums are, and no bound on that holds for every library and device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

_U32 = 2.0**-24
# Allowance for the handful of float32 operations after the matmul, relative to |a||b|.
_SLOP = 2.0**-20
PRECISIONS = ("int8", "fp32")


@dataclass(frozen=True)
class ErrorBound:
    """``|d^_ij - a_i . b_j| <= p1_i q1_j + p2_i q2_j`` (all float64, CPU)."""

    p1: torch.Tensor
    p2: torch.Tensor
    q1: torch.Tensor
    q2: torch.Tensor


class Mixer:
    """A random orthogonal map of the feature dimension: signed permutation, then a
    block-diagonal orthogonal matrix (``block`` x ``block`` blocks from a float64 QR).

    ``fl(x) . fl(y)`` differs from ``x . y`` by at most ``2 delta |x||y|`` plus second order,
    where ``delta`` bounds the relative error of one mapped row (float32 rounding of the
    blocks and of the products, each below ``block u`` per coordinate).
    """

    def __init__(self, dim: int, block: int = 128, seed: int = 0, device: torch.device | str = "cpu"):
        g = torch.Generator().manual_seed(seed)
        self.dim, self.block = dim, block
        self.width = -(-dim // block) * block
        self.perm = torch.randperm(dim, generator=g).to(device)
        self.sign = (torch.randint(0, 2, (dim,), generator=g) * 2 - 1).float().to(device)
        q = torch.linalg.qr(torch.randn(self.width // block, block, block, generator=g, dtype=torch.float64))[0]
        self.q = q.float().to(device)
        self.delta = 4.0 * block * block**0.5 * _U32

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, dim]`` -> ``[n, width]`` float32."""
        n = x.shape[0]
        y = torch.zeros((n, self.width), dtype=torch.float32, device=x.device)
        y[:, : self.dim] = x[:, self.perm].float() * self.sign
        return torch.bmm(y.view(n, -1, self.block).transpose(0, 1), self.q).transpose(0, 1).reshape(n, self.width)


def _quantize(x: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of ``x`` to int8, zero-padded to ``width`` columns.

    Returns ``(q [n, width] int8, scale [n] float32, |x^| [n] float64, |x - x^| [n] float64)``.
    """
    scale = x.abs().amax(1) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(x / scale[:, None]).clamp_(-127, 127)
    rounded = q.double() * scale.double()[:, None]
    err = (x.double() - rounded).norm(dim=1)
    padded = torch.zeros((x.shape[0], width), dtype=torch.int8, device=x.device)
    padded[:, : x.shape[1]] = q.to(torch.int8)
    return padded, scale, rounded.norm(dim=1), err


def cuda_int_mm_rules(device: torch.device) -> bool:
    """Whether ``torch._int_mm`` on ``device`` has CUDA's shape rules: more than 16 rows, inner
    and output widths in multiples of 8."""
    return device.type == "cuda"


def has_onednn_int8() -> bool:
    """Whether this PyTorch has oneDNN's int8 linear (the kernel behind its x86 quantization)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")


def onednn_int8() -> bool:
    """Whether to score int8 on CPU through oneDNN's int8 linear: where PyTorch has it and the
    CPU has AMX. Without AMX, oneDNN may take a reference kernel for it (with AVX-512 VNNI
    alone: over 100x slower than ``torch._int_mm``)."""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return has_onednn_int8() and amx()


def _onednn_scaled_mm(a: torch.Tensor, b_packed: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """``float32(a @ b.T) * col`` for int8 ``a [m, w]`` and ``b_packed``
    (``torch.ops.onednn.qlinear_prepack`` of int8 ``b [n, w]``), with ``col [n]``: the int32
    sums converted and scaled once, as ``_int_mm(...).float() * col`` does."""
    zeros = torch.zeros(len(col), dtype=torch.long)
    return torch.ops.onednn.qlinear_pointwise(a, 1.0, 0, b_packed, col, zeros, None, 1.0, 0, torch.float32, "none", [], "")


def _int_mm(a: torch.Tensor, b_t: torch.Tensor, cuda_rules: bool) -> torch.Tensor:
    """Exact int32 ``a @ b_t``. Under CUDA's rules (:func:`cuda_int_mm_rules`) few rows are
    padded with zeros; the widths must come padded by the callers, and are checked here so that
    a CPU run with the rules forced on fails where a GPU run would."""
    if cuda_rules:
        if a.shape[1] % 8 or b_t.shape[1] % 8:
            raise ValueError(f"int8 matmul widths must be multiples of 8 on CUDA, got {a.shape[1]} and {b_t.shape[1]}.")
        if a.shape[0] <= 16:
            pad = torch.zeros((17 - a.shape[0], a.shape[1]), dtype=a.dtype, device=a.device)
            return torch._int_mm(torch.cat([a, pad]), b_t)[: a.shape[0]]
    return torch._int_mm(a, b_t)


def sq_norms(x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """``[n]`` float64 squared row norms (on ``x``'s device), a chunk at a time (small chunks
    keep the float64 copy in cache: several times faster than large ones on CPU)."""
    out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    for s in range(0, x.shape[0], chunk):
        out[s : s + chunk] = (x[s : s + chunk].double() ** 2).sum(1)
    return out


class Scorer:
    """Chunked ``d^_ij ~ a_i . b_j`` with error bound ``|d^_ij - a_i . b_j| <= e_ij``.

    Args:
        a: ``[n_a, D]`` float points; rows are mixed and quantized chunk by chunk as scored.
        b: ``[n_b, D]`` float points, prepared once (int8: a quarter of B's float32 size).
        precision: ``"int8"`` or ``"fp32"``.
        seed: seed of the int8 path's :class:`Mixer`.
        sq_a, sq_b: the squared row norms (float64), when the caller has them.
        a_rows: score only these rows of ``a`` (gathered a chunk at a time, never copied whole);
            ``sq_a`` and chunk positions then refer to them.
        chunk: rows of B prepared at once (small chunks keep the temporaries in cache).
        cuda_rules: follow CUDA's int8 matmul shape rules (default: where ``a`` lives on CUDA);
            forcing them on a CPU runs the GPU's code path (see :func:`cuda_int_mm_rules`).
        onednn: int8 matmuls through oneDNN (default: on CPU where :func:`onednn_int8`);
            ``False`` uses ``torch._int_mm``. Both give the same scores, bit for bit.
    """

    def __init__(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        precision: str,
        seed: int = 0,
        sq_a: torch.Tensor | None = None,
        sq_b: torch.Tensor | None = None,
        a_rows: torch.Tensor | None = None,
        chunk: int = 256,
        cuda_rules: bool | None = None,
        onednn: bool | None = None,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if a_rows is not None and precision != "fp32":
            raise ValueError("a_rows is only supported in fp32")
        self.a, self.precision = a, precision
        self.cuda_rules = cuda_int_mm_rules(a.device) if cuda_rules is None else cuda_rules
        on_cpu = a.device.type == "cpu" and not self.cuda_rules
        self.onednn = on_cpu and onednn_int8() if onednn is None else onednn
        if self.onednn and not (on_cpu and has_onednn_int8()):
            raise ValueError("onednn=True needs points on the CPU, no CUDA rules, and a PyTorch with oneDNN's int8 linear.")
        self._packed: dict[tuple[int, int], torch.Tensor] = {}  # oneDNN's layout of B's column blocks
        self.a_rows = None if a_rows is None else a_rows.to(a.device)
        a_norm = (sq_norms(a) if sq_a is None else sq_a.to(a.device)).sqrt()
        b_norm = (sq_norms(b) if sq_b is None else sq_b.to(b.device)).sqrt()
        if precision == "int8":
            self.mixer = Mixer(a.shape[1], seed=seed, device=a.device)
            self.width = -(-self.mixer.width // 8) * 8
            n_b = b.shape[0]
            # CUDA's int8 matmul wants both output dimensions in multiples of 8: pad B with zeros.
            self.b_t = torch.zeros((-(-n_b // 8) * 8, self.width), dtype=torch.int8, device=b.device)
            self.b_scale = torch.empty(n_b, dtype=torch.float32, device=b.device)
            b_hat, b_err = torch.empty_like(b_norm), torch.empty_like(b_norm)
            for s in range(0, n_b, chunk):
                e = min(s + chunk, n_b)
                self.b_t[s:e], self.b_scale[s:e], b_hat[s:e], b_err[s:e] = _quantize(self.mixer(b[s:e]), self.width)
            self.b_t = self.b_t.T
            # A's rounding is measured as its chunks are scored (see :attr:`bound`).
            a_hat, a_err = torch.full_like(a_norm, float("nan")), torch.full_like(a_norm, float("nan"))
            # The mixing itself moves each row by at most delta |x|.
            b_err += self.mixer.delta * b_norm
            gamma = 0.0
        else:
            self.b_t = b.float().T
            a_hat, b_hat = a_norm, b_norm
            a_err, b_err = torch.zeros_like(a_norm), torch.zeros_like(b_norm)
            gamma = a.shape[1] * _U32 / (1 - a.shape[1] * _U32)
        self._a_norm, self._a_hat, self._a_err = a_norm, a_hat, a_err
        self._b_hat, self._b_err, self._gamma = b_hat, b_err, gamma

    @property
    def bound(self) -> ErrorBound:
        """The error bound of every pair; with int8, valid once every row of A was scored."""
        if torch.isnan(self._a_hat).any():
            raise RuntimeError("Score every row of A before asking for the int8 error bound.")
        cpu = lambda t: t.double().cpu()  # noqa: E731
        x, big_x, y, big_y = cpu(self._a_err), cpu(self._a_hat), cpu(self._b_err), cpu(self._b_hat)
        # e = x Y + X y + x y + (gamma + slop) X Y = x (Y + y) + X (y + (gamma + slop) Y).
        return ErrorBound(p1=x, q1=big_y + y, p2=big_x, q2=y + (self._gamma + _SLOP) * big_y)

    def _pack(self, c0: int, c1: int) -> torch.Tensor:
        """B's columns ``c0:c1`` in oneDNN's layout, packed on first use (B's int8 size in all)."""
        if (c0, c1) not in self._packed:
            self._packed[c0, c1] = torch.ops.onednn.qlinear_prepack(self.b_t[:, c0:c1].T.contiguous(), None)
        return self._packed[c0, c1]

    def chunk(
        self, start: int, stop: int, row_scale: torch.Tensor | None = None, col_scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[stop - start, n_b]`` float32 ``d^`` for rows ``start:stop`` of A, times
        ``row_scale [stop - start]`` and ``col_scale [n_b]`` when given."""
        return next(self.column_blocks(start, stop, row_scale, col_scale))[1]

    def column_blocks(
        self,
        start: int,
        stop: int,
        row_scale: torch.Tensor | None = None,
        col_scale: torch.Tensor | None = None,
        width: int | None = None,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """:meth:`chunk` a block of ``width`` columns at a time (default: all): yields
        ``(first column, [stop - start, width] float32)``. A block small enough to stay in
        cache makes the caller's passes over it several times cheaper."""
        n_b = len(self._b_hat)
        width = n_b if width is None else width
        a = self.a[start:stop] if self.a_rows is None else self.a[self.a_rows[start:stop]]
        if self.precision == "int8":
            q, scale, self._a_hat[start:stop], err = _quantize(self.mixer(a), self.width)
            self._a_err[start:stop] = err + self.mixer.delta * self._a_norm[start:stop]
            row = scale if row_scale is None else scale * row_scale
            width = -(-width // 8) * 8
            col = self.b_scale if col_scale is None else self.b_scale * col_scale
            for c0 in range(0, n_b, width):
                c1 = min(c0 + width, n_b)
                if self.onednn:
                    yield c0, _onednn_scaled_mm(q, self._pack(c0, c1), col[c0:c1]).mul_(row[:, None])
                    continue
                # B's padding keeps each block's width a multiple of 8 (CUDA's int8 matmul).
                dots = _int_mm(q, self.b_t[:, c0 : min(c0 + width, self.b_t.shape[1])], self.cuda_rules)[:, : c1 - c0]
                # Converted first: a mixed int32 x float32 product takes a slow path on CPU.
                yield c0, dots.float().mul_(col[None, c0:c1]).mul_(row[:, None])
            return
        a = a.float()
        for c0 in range(0, n_b, width):
            c1 = min(c0 + width, n_b)
            dots = a @ self.b_t[:, c0:c1]
            if col_scale is not None:
                dots.mul_(col_scale[None, c0:c1])
            yield c0, dots if row_scale is None else dots.mul_(row_scale[:, None])
