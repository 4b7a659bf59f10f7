"""HTML pages that open from disk with no server and no network: a title and blocks of HTML."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Sequence

from sae_lens_match.atomic import write_text


def html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, digits: int = 4) -> str:
    """``rows`` as an HTML table of ``columns`` (floats to ``digits`` significant digits, text escaped)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.{digits}g}"
        return "" if v is None else html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table border='1' cellpadding='4'><tr>{head}</tr>{body}</table>"


def write_page(path: str | Path, title: str, blocks: Sequence[str]) -> Path:
    """Write a self-contained HTML page (title, then ``blocks`` of HTML in order), atomically."""
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
        + "".join(blocks)
        + "</body></html>"
    )
    write_text(path, text)
    return Path(path)
