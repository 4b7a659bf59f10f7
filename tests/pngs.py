"""Check that a plot was written as a real PNG image."""

import struct
from pathlib import Path


def assert_png(path: Path, *, min_width: int = 400, min_height: int = 300) -> tuple[int, int]:
    """``path`` is a PNG (signature and IHDR chunk) of at least the given size; return its width and height."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= min_width and height >= min_height, (width, height)
    assert len(data) > 5000  # something was drawn, not an empty canvas
    return width, height
