"""Atomic file writes: a crash never leaves a half-written result behind.

(Named so as not to shadow the standard library's ``io``.)
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary file :func:`atomic_path` made (left behind by a killed write)."""
    return path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file()


def prepare_out_dir(path: str | Path, *, clean: bool = True) -> Path:
    """Make sure results can be written to the folder ``path`` before any work is done.

    Creates it if needed and tries a write. With ``clean``, removes the temporary files that
    writes killed mid-way (SIGKILL, power loss) left under it; only do that where no other
    process is writing into the same folder.

    Raises:
        ValueError: ``path`` is a file, cannot be created, or is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"The output folder {path} is a file; give a folder.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"Cannot write results to {path}: {error.strerror or error}.") from None
    if clean:
        for stale in [p for p in path.rglob(".*.tmp") if is_temporary(p)]:
            stale.unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (JSON has neither), tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def write_json(path: str | Path, data: Any, *, compact: bool = False) -> None:
    """Write ``data`` as valid JSON (NaN as null), atomically: indented with sorted keys, or
    ``compact`` (no whitespace, keys in their order) for large data files."""
    layout = {"separators": (",", ":")} if compact else {"indent": 2, "sort_keys": True}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(jsonable(data), allow_nan=False, default=str, **layout) + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
