"""Minimum-cost one-to-one assignment between two point sets under squared Euclidean distance.

Everything SAE Match (and the LFP dictionary overlap) needs from an assignment solver goes
through :func:`assign`: each SAE is first turned into one row per feature, then rows of A
are paired with rows of B so that the summed squared distance is minimal.
"""

from sae_lens_match.assignment.core import SOLVERS, Assignment, assign, pick_solver, register_solver
from sae_lens_match.assignment.memory import DenseTooLargeError
from sae_lens_match.assignment import dense as _dense  # noqa: F401  (registers "dense")
from sae_lens_match.assignment import sparse as _sparse  # noqa: F401  (registers "sparse")

__all__ = ["Assignment", "DenseTooLargeError", "SOLVERS", "assign", "pick_solver", "register_solver"]
