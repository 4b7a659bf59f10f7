"""The project's own promises: one version, and tests that run however pytest is started."""

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import sae_lens_match

ROOT = Path(__file__).parent.parent


def test_the_version_is_defined_once():
    assert version("sae-lens-match") == sae_lens_match.__version__
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()


def test_plain_pytest_imports_the_test_helpers():
    """``pytest tests/...`` (not only ``python -m pytest``) finds ``tests.helpers``."""
    pytest_exe = Path(sys.executable).parent / "pytest"
    done = subprocess.run(
        [str(pytest_exe), "-q", "-p", "no:cacheprovider", "tests/matching/test_folding.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
