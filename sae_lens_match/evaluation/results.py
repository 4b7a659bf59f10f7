"""What every evaluation returns: its type, its config and a table of typed rows (SAEBench's shape).

Each evaluation module defines a config dataclass, a row dataclass (its columns, typed and
documented in one place) and a ``run_...`` function returning an :class:`EvalResult`;
``result.rows()`` gives plain dicts for tables and plots, ``result.save(path)`` a
self-describing JSON file (type, config, package version, rows).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from sae_lens_match.atomic import jsonable, write_json
from sae_lens_match.version import __version__

Row = TypeVar("Row")


@dataclass(frozen=True)
class EvalResult(Generic[Row]):
    """An evaluation's output.

    Attributes:
        eval_type: which evaluation (``"layer_pruning"``, ``"parameter_curves"``, ...).
        config: the config it ran with (a dataclass).
        table: one typed row per (layer pair, method, ...).
    """

    eval_type: str
    config: Any
    table: tuple[Row, ...]

    def rows(self) -> list[dict[str, Any]]:
        """The table as plain dicts, columns in the row type's order."""
        return [asdict(r) for r in self.table]

    def to_json(self) -> dict[str, Any]:
        """Type, config, package version and rows, ready for JSON (NaN as ``None``)."""
        config = asdict(self.config) if is_dataclass(self.config) else self.config
        return jsonable(
            {"eval_type": self.eval_type, "sae_lens_match_version": __version__, "config": config, "rows": self.rows()}
        )

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` atomically to ``path``."""
        write_json(path, self.to_json())
        return Path(path)
