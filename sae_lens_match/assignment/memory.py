"""How much host memory the dense solver needs, and whether it is there."""

from __future__ import annotations

import os

# The dense path holds the float64 cost matrix while scipy runs; scipy may take a private
# contiguous copy of it, and the row chunks being filled add a little more.
DENSE_COPIES = 2


class DenseTooLargeError(MemoryError):
    """The dense cost matrix would not fit in the memory available."""


def available_bytes() -> int:
    """Host memory available to this process now (``MemAvailable`` on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown platform: do not refuse on a guess


def dense_bytes(n_a: int, n_b: int) -> int:
    """Bytes the dense solver needs for an ``n_a x n_b`` problem."""
    return DENSE_COPIES * 8 * n_a * n_b


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_dense_fits(n_a: int, n_b: int) -> None:
    """Raise :class:`DenseTooLargeError` if the dense solver would run out of memory."""
    need, have = dense_bytes(n_a, n_b), available_bytes()
    if need > have:
        raise DenseTooLargeError(
            f"solver='dense' needs about {_gib(need)} for the {n_a} x {n_b} float64 cost matrix "
            f"(and scipy's copy), but only {_gib(have)} is available. Use solver='sparse' "
            "(exact, never builds the dense matrix) or solver='auto'."
        )
