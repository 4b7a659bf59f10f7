"""Result tables: JSON and CSV files (also of an evaluation's result), aligned text for the terminal, Markdown for READMEs."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

from sae_lens_match.atomic import write_json, write_text
from sae_lens_match.evaluation.results import EvalResult


def write_table(out_dir: str | Path, name: str, rows: Sequence[dict[str, Any]]) -> list[Path]:
    """Write ``rows`` to ``out_dir/name.json`` and ``out_dir/name.csv`` atomically; return the paths.

    JSON has no NaN: it is written as ``null``; CSV columns are the union of the rows' keys.
    """
    if not rows:
        raise ValueError(f"No rows to write for {name!r}.")
    out_dir = Path(out_dir)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.csv"]
    write_json(paths[0], list(rows))
    write_text(paths[1], buffer.getvalue())
    return paths


def write_result(out_dir: str | Path, name: str, result: EvalResult) -> list[Path]:
    """An evaluation's result as ``name.json`` (self-describing: type, config, version, rows) and ``name.csv``."""
    paths = write_table(out_dir, name, result.rows())
    result.save(paths[0])
    return paths


def _cell(v: Any, digits: int) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}g}"
    return "" if v is None else str(v)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, digits: int = 4) -> str:
    """An aligned plain-text table of ``columns`` (floats to ``digits`` significant digits)."""
    body = [[_cell(r.get(c), digits) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[k]) for b in body)) if body else len(c) for k, c in enumerate(columns)]
    line = lambda cells: "  ".join(x.rjust(w) for x, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(list(columns)), line(["-" * w for w in widths]), *(line(b) for b in body)])


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, digits: int = 4) -> str:
    """The same as :func:`format_table`, as a Markdown table."""
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_cell(r.get(c), digits) for c in columns) + " |" for r in rows]
    return "\n".join(out)
